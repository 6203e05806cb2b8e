"""The pieces of the GRPO objective, as pure functions (PrismAudio section 3.3.2, REFERENCE "Fast-GRPO").

- `draw_window`: the SDE window ``[l, l + w)`` of an iteration, ``l`` uniform in ``{0 .. T - w}``, drawn
  from (seed, iteration, process) so that it moves every iteration and differs between processes (the
  official release seeded it once per process, so it never moved);
- `group_advantages`: the weighted multi-reward and its group-relative advantage ``(R - mean) / (std +
  1e-6)`` over the N samples of one prompt, using the group's own std (not the std over all gathered
  samples, which the official code uses); optionally each reward is first normalised within the group
  (so a reward with a large spread does not drown the others), then weighted; clipped to +-``clip``;
- `clipped_surrogate`: PPO's ``min(r A, clip(r, 1 - eps, 1 + eps) A)`` with ``r = exp(log pi - log pi_old)``,
  returned as a loss to minimise, with the fraction of clipped ratios;
- `gaussian_kl`: KL between the policy's and the reference's step Gaussians, which share their
  covariance ``std^2 I``: ``||mean - mean_ref||^2 / (2 std^2)`` per element, averaged over the elements
  like the log-probabilities (``reduce="mean"``, as the official code) or summed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch


def draw_window(steps: int, width: int, seed: int, iteration: int, process: int) -> tuple[int, int]:
    """(start, width) of iteration ``iteration`` on process ``process``; width >= steps is the full range."""
    if steps < 1 or width < 1:
        raise ValueError(f"need steps >= 1 and width >= 1, got {steps=} {width=}")
    width = min(width, steps)
    rng = np.random.default_rng([seed, iteration, process, 0x5DE])  # one stream per (run, iteration, process)
    return int(rng.integers(0, steps - width + 1)), width


def group_advantages(
    rewards: Mapping[str, torch.Tensor],
    weights: Mapping[str, float],
    per_reward_norm: bool = False,
    clip: float = 5.0,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages (N,) and weighted totals (N,) of one group from per-dimension rewards {dim: (N,)}.

    The total is ``sum_k w_k R_k / sum_k w_k`` over the dimensions with a positive weight. Advantage:
    ``(total - mean) / (std + eps)`` (population std over the group); with ``per_reward_norm`` each
    ``R_k`` is replaced by ``(R_k - mean_k) / (std_k + eps)`` before weighting and the weighted sum is
    normalised again. A group whose rewards are all equal gets zero advantages.
    """
    active = {k: float(w) for k, w in weights.items() if w > 0}
    if not active or any(k not in rewards for k in active):
        raise ValueError(
            f"need a reward for every positively weighted dimension: {sorted(active)} vs {sorted(rewards)}"
        )
    total_w = sum(active.values())
    stacked = {k: rewards[k].double() for k in active}
    total = sum(w * stacked[k] for k, w in active.items()) / total_w  # (N,)
    if per_reward_norm:
        mixed = sum(w * _standardise(stacked[k], eps) for k, w in active.items()) / total_w
        adv = _standardise(mixed, eps)
    else:
        adv = _standardise(total, eps)
    return adv.clamp(-clip, clip).float(), total.float()


def _standardise(x: torch.Tensor, eps: float) -> torch.Tensor:
    """(x - mean) / (std + eps) over the group (population std: a group of 1 gets 0)."""
    return (x - x.mean()) / (x.std(unbiased=False) + eps)


def clipped_surrogate(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip_range: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, clip fraction, mean ratio) of the clipped surrogate over a batch (B,) of one step.

    loss = -mean(min(r A, clip(r, 1 - eps, 1 + eps) A)), so minimising it maximises the objective.
    """
    ratio = torch.exp(log_prob - old_log_prob)  # (B,)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range) * advantages
    loss = -torch.minimum(unclipped, clipped).mean()
    frac = ((ratio - 1.0).abs() > clip_range).float().mean()
    return loss, frac.detach(), ratio.detach().mean()


def gaussian_kl(mean: torch.Tensor, mean_ref: torch.Tensor, std: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
    """(B,) KL(N(mean, std^2 I) || N(mean_ref, std^2 I)) for means (B, ...) and a std (B,) or scalar."""
    std = torch.as_tensor(std, dtype=torch.float32, device=mean.device)
    std = std.reshape(-1, *([1] * (mean.ndim - 1))) if std.ndim == 1 else std
    per_elem = ((mean.float() - mean_ref.float()) ** 2 / (2.0 * std**2)).flatten(1)  # (B, E)
    if reduce == "mean":
        return per_elem.mean(1)
    if reduce == "sum":
        return per_elem.sum(1)
    raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
