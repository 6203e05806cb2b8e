"""Training losses.

- `codec_feature_loss`: the stereo codec's reconstruction loss on its time-frequency features.
- `logit_normal_times`, `flow_matching_loss` (with `interpolate`, `velocity_error`): the generator's
  rectified-flow objective.
- `flow_dpo_loss`: Flow-DPO on preference pairs against a frozen reference.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def codec_feature_loss(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """The codec's reconstruction loss on normalised log-magnitudes (`engine.codec.Codec.analyse` features).

    pred, target: (B, F, K) features ``(log(P + floor) - centre) / scale``. Parts: ``log_mag``, the L1 of
    the log-magnitudes (natural log; every bin counts, quiet ones too) and ``convergence``, the spectral
    convergence ``||P - P'||_F / ||P||_F`` per item (Arik et al., 2019), led by the loud bins.
    """
    from engine.codec import LOG_MAG_CENTRE, LOG_MAG_SCALE

    p_log, t_log = pred * LOG_MAG_SCALE + LOG_MAG_CENTRE, target * LOG_MAG_SCALE + LOG_MAG_CENTRE
    parts = {"log_mag": (p_log - t_log).abs().mean()}
    p_mag, t_mag = p_log.exp(), t_log.exp()
    num = torch.linalg.vector_norm((p_mag - t_mag).flatten(1), dim=1)
    parts["convergence"] = (num / (torch.linalg.vector_norm(t_mag.flatten(1), dim=1) + 1e-3)).mean()
    loss = parts["log_mag"] + parts["convergence"]
    logged = {k: float(v.detach()) for k, v in parts.items()}
    logged["total"] = float(loss.detach())
    return loss, logged


def logit_normal_times(
    n: int, mean: float = 0.0, std: float = 1.0, eps: float = 1e-4, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Training times t (n,) = sigmoid(mean + std * N(0, 1)), clamped to [eps, 1 - eps].

    The logit-normal density (Esser et al., SD3, 2024, section 3.1) spends most samples at intermediate t,
    where the velocity is hardest to predict; ``mean`` > 0 shifts them towards the noise end (t = 1).
    Drawn on the generator's device (CPU by default).
    """
    device = generator.device if generator is not None else "cpu"
    u = torch.randn(n, generator=generator, device=device)
    return torch.sigmoid(mean + std * u).clamp(eps, 1.0 - eps)


def flow_matching_loss(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    x1: torch.Tensor,
    t: torch.Tensor,
    reduction: str = "mean",
) -> torch.Tensor:
    """Rectified-flow loss ``|| v_theta(x_t, t) - (x1 - x0) ||^2`` (REFERENCE "Flow matching").

    Convention of `engine.sampling`: ``x_t = (1 - t) x0 + t x1`` with data ``x0`` (B, ...), noise ``x1``
    (B, ...) and times ``t`` (B,) in [0, 1]; ``velocity(x_t, t)`` returns a tensor like ``x0``.
    reduction: "mean" -> a scalar (mean squared error over all elements); "none" -> (B,) per-sample means
    (for weighted objectives such as reward-weighted regression).
    """
    if x0.shape != x1.shape or t.shape != (x0.shape[0],):
        raise ValueError(f"need x0, x1 (B, ...) of one shape and t (B,), got {x0.shape=} {x1.shape=} {t.shape=}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    x_t = interpolate(x0, x1, t)
    return velocity_error(velocity(x_t, t), x1 - x0, reduction)


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The rectified-flow path ``x_t = (1 - t) x0 + t x1``: data x0 and noise x1 (B, ...), times t (B,)."""
    tb = t.reshape(-1, *([1] * (x0.ndim - 1))).to(x0.dtype)  # (B, 1, ...) broadcast over the non-batch dims
    return (1.0 - tb) * x0 + tb * x1


def velocity_error(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean squared error of a predicted velocity against a target (B, ...): a scalar or (B,) per sample."""
    per_sample = (pred.float() - target.float()).square().flatten(1).mean(1)  # (B,)
    return per_sample.mean() if reduction == "mean" else per_sample


def flow_dpo_loss(
    err_w: torch.Tensor, err_l: torch.Tensor, ref_err_w: torch.Tensor, ref_err_l: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flow-DPO (REFERENCE "Preference post-training", ReasonAudio; Diffusion-DPO, Wallace et al. 2024, eq. 14
    in its flow form): per pair (B,) the flow-matching errors ``||v* - v_theta||^2`` of the winner and the
    loser under the policy (``err_w``, ``err_l``) and the frozen reference (``ref_err_*``), every pair noised
    with one t and one noise for both takes. With ``Delta = err - ref_err``:

        loss = -log sigmoid(-(beta / 2) (Delta_w - Delta_l))        (mean over the pairs)

    Returns (loss, margin (B,)) with ``margin = -(Delta_w - Delta_l)``: positive when the policy, relative
    to the reference, fits the winner better than the loser. Equal takes or policy == reference give
    margin 0 and loss log 2.
    """
    if not err_w.shape == err_l.shape == ref_err_w.shape == ref_err_l.shape or err_w.ndim != 1:
        raise ValueError(f"need four (B,) errors, got {err_w.shape=} {err_l.shape=} {ref_err_w.shape=}")
    margin = -((err_w - ref_err_w) - (err_l - ref_err_l))  # (B,)
    loss = -torch.nn.functional.logsigmoid(0.5 * beta * margin).mean()
    return loss, margin.detach()
