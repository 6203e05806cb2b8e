"""Samplers of the rectified flow: pure step functions and the loops that chain them.

Convention (REFERENCE "Flow matching", PrismAudio appendix B, Flow-GRPO): ``x_t = (1 - t) x0 + t x1``
with data ``x0`` and noise ``x1``; the network predicts ``v ~ x1 - x0``; sampling walks from t = 1
(noise) to t = 0 (data), so every step has ``dt = t_next - t < 0``. This module is the only place
that knows the convention.

Every step is a pure function ``(x, t, t_next, v, noise) -> StepOut`` computed in float32, so RL can
recompute log-probabilities on stored trajectories. Loops receive only a velocity callable
``velocity(x, t) -> v``; guidance and conditioning live in that callable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x (B, ...), t (B,)) -> v like x


@dataclass
class StepOut:
    """Result of one sampler step. ``std`` is 0 and ``log_prob`` None for deterministic steps."""

    x_next: torch.Tensor  # (B, ...) the new state
    mean: torch.Tensor  # (B, ...) mean of the step's Gaussian (the ODE step for Euler)
    std: torch.Tensor  # (B,) or scalar standard deviation of the step's Gaussian
    log_prob: torch.Tensor | None  # (B,) log-density of x_next under the step's Gaussian


def timesteps(steps: int, shift: float = 1.0, device: torch.device | str = "cpu") -> torch.Tensor:
    """(steps + 1,) times from 1 to 0. ``shift`` > 1 spends more steps near the noise end
    (t' = s t / (1 + (s - 1) t), the resolution-dependent shift of rectified-flow samplers)."""
    if steps < 1:
        raise ValueError(f"need at least one step, got {steps=}")
    t = torch.linspace(1.0, 0.0, steps + 1, device=device, dtype=torch.float64)
    return (shift * t / (1 + (shift - 1) * t)).float()


def _bcast(t: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """A per-sample time (B,) or scalar reshaped to broadcast against ``like`` (B, ...)."""
    t = torch.as_tensor(t, dtype=torch.float32, device=like.device)
    return t.reshape(-1, *([1] * (like.ndim - 1))) if t.ndim == 1 else t


def euler_step(x: torch.Tensor, t: torch.Tensor | float, t_next: torch.Tensor | float, v: torch.Tensor) -> StepOut:
    """Deterministic ODE step ``x + v dt``."""
    x, v = x.float(), v.float()
    dt = _bcast(t_next, x) - _bcast(t, x)
    mean = x + v * dt
    return StepOut(mean, mean, torch.zeros((), device=x.device), None)


def sde_sigma(t: torch.Tensor | float, t_next: torch.Tensor | float, noise_level: float) -> torch.Tensor:
    """sigma_t = a * sqrt(t / (1 - t)); at t = 1 (singular) the next grid time is used, as in the
    official code."""
    t = torch.as_tensor(t, dtype=torch.float32)
    t_next = torch.as_tensor(t_next, dtype=torch.float32)
    t_eff = torch.where(t >= 1.0, t_next, t)
    return noise_level * torch.sqrt(t_eff / (1.0 - t_eff).clamp_min(1e-6))


def sde_step(
    x: torch.Tensor,
    t: torch.Tensor | float,
    t_next: torch.Tensor | float,
    v: torch.Tensor,
    noise: torch.Tensor | None,
    noise_level: float = 0.7,
    reduce: str = "mean",
) -> StepOut:
    """Euler-Maruyama step of the SDE with the flow's marginals (PrismAudio appendix B).

    drift ``mu = v + sigma^2 / (2 t) (x + (1 - t) v)``; ``x_next = x + mu dt + sigma sqrt(-dt) eps``.
    With ``noise=None`` the step returns its mean (no sample) and the log-prob of that mean. The
    log-prob is of ``x_next`` under ``N(mean, sigma^2 |dt| I)``, reduced over the non-batch elements by
    ``reduce`` ("mean" as in the official code, which keeps ratios small; "sum" for the true density).
    """
    x, v = x.float(), v.float()
    tb, tnb = _bcast(t, x), _bcast(t_next, x)
    dt = tnb - tb
    sigma = _bcast(sde_sigma(t, t_next, noise_level).to(x.device), x)
    mean = x + (v + sigma**2 / (2.0 * tb.clamp_min(1e-6)) * (x + (1.0 - tb) * v)) * dt
    std = sigma * torch.sqrt(-dt)
    x_next = mean if noise is None else mean + std * noise.float()
    return StepOut(x_next, mean, std.reshape(-1) if std.ndim else std, gaussian_log_prob(x_next, mean, std, reduce))


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
    """log N(x; mean, std^2) per element, reduced over all but the batch dimension: (B,). float32."""
    x, mean = x.float(), mean.float()
    std = torch.as_tensor(std, dtype=torch.float32, device=x.device)
    std = std.reshape(-1, *([1] * (x.ndim - 1))) if std.ndim == 1 else std
    lp = -((x - mean) ** 2) / (2 * std**2) - torch.log(std) - 0.5 * torch.log(torch.tensor(2 * torch.pi))
    lp = lp.flatten(1)
    if reduce == "mean":
        return lp.mean(1)
    if reduce == "sum":
        return lp.sum(1)
    raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")


def sample_ode(
    velocity: Velocity,
    x1: torch.Tensor,
    steps: int,
    shift: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Euler integration from noise ``x1`` (t = 1) to data (t = 0) in ``steps`` steps."""
    ts = timesteps(steps, shift, x1.device)
    x = x1.float()
    for i in range(steps):
        t = ts[i].expand(x.shape[0])
        x = euler_step(x, t, ts[i + 1], velocity(x, t)).x_next
        if progress:
            progress(i + 1, steps)
    return x


@dataclass
class Trajectory:
    """A hybrid ODE/SDE rollout: the states and the Gaussian policy of each SDE step."""

    states: list[torch.Tensor]  # steps + 1 states, states[0] = x1 (noise), states[-1] = sample
    ts: torch.Tensor  # (steps + 1,) time grid
    sde_steps: list[int]  # indices i of the steps taken with the SDE (the window)
    log_probs: dict[int, torch.Tensor]  # step index -> (B,) log-prob of states[i + 1] under the old policy


def sample_hybrid(
    velocity: Velocity,
    x1: torch.Tensor,
    steps: int,
    window: tuple[int, int],
    noise_level: float = 0.7,
    generator: torch.Generator | None = None,
    shift: float = 1.0,
    reduce: str = "mean",
    branch: int | None = None,
    prefix_velocity: Velocity | None = None,
) -> Trajectory:
    """Fast-GRPO rollout (PrismAudio section 3.3.2): ODE steps outside the window ``[start, start + width)``,
    SDE steps inside it. Flow-GRPO is the same with ``window = (0, steps)``; a pure ODE is width 0.

    With ``branch`` N the group shares its start: ``x1`` is one noise (1, ...), the ODE steps before the
    window run once on it with ``prefix_velocity`` (the velocity for a batch of 1) and the N takes branch at
    the window, so the takes differ only by the window's noise (the official code's shared prefix). States
    before the window then have batch 1, from the window on batch N."""
    start, width = window
    if not (0 <= start and width >= 0 and start + width <= steps):
        raise ValueError(f"window {window} does not fit in {steps} steps")
    if branch is not None and (branch < 1 or width < 1 or x1.shape[0] != 1 or prefix_velocity is None):
        raise ValueError("a shared prefix needs one start (batch 1), a window of width >= 1 and its velocity")
    ts = timesteps(steps, shift, x1.device)
    x, states, log_probs = x1.float(), [x1.float()], {}
    for i in range(steps):
        if branch is not None and i == start:  # the takes part here
            x = x.expand(branch, *x.shape[1:]).contiguous()
            states[-1] = x
        t = ts[i].expand(x.shape[0])
        v = (prefix_velocity if branch is not None and i < start else velocity)(x, t)
        if start <= i < start + width:
            noise = torch.randn(x.shape, generator=generator, device=x.device)
            out = sde_step(x, t, ts[i + 1], v, noise, noise_level, reduce)
            log_probs[i] = out.log_prob
        else:
            out = euler_step(x, t, ts[i + 1], v)
        x = out.x_next
        states.append(x)
    return Trajectory(states, ts, list(range(start, start + width)), log_probs)


def guided(
    velocity_cu: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]],
    scale: float,
    rescale: float = 0.0,
    interval: tuple[float, float] = (0.0, 1.0),
    velocity_c: Velocity | None = None,
    video_scale: float | None = None,
) -> Velocity:
    """Classifier-free guidance ``v = v_u + s (v_c - v_u)`` from a callable that returns both branches
    (ideally evaluated as one batch of 2B, see the generator's ``velocity_branches``).

    With ``video_scale`` s_v the guidance is split between the two conditions (the compositional form of
    Liu et al. 2022, "Compositional visual generation with composable diffusion models", and of
    InstructPix2Pix): ``velocity_cu`` returns three branches (v_c, v_t, v_u), v_t conditioned on the text
    alone, and ``v = v_u + s (v_t - v_u) + s_v (v_c - v_t)``: s weighs the text against nothing, s_v the
    picture and motion on top of the text. ``video_scale == scale`` is plain guidance again.

    ``rescale`` (phi in [0, 1]) blends ``v`` with itself rescaled to the standard deviation of ``v_c``
    per sample: ``phi v std(v_c) / std(v) + (1 - phi) v`` (guidance rescale, Lin et al. 2024, "Common
    diffusion noise schedules and sample steps are flawed", section 3.4), which keeps strong guidance
    from inflating the level of the result.

    ``interval`` (lo, hi) guides only at times lo <= t <= hi and returns the plain conditional velocity
    ``v_c`` elsewhere (a limited guidance interval, Kynkaanniemi et al. 2024, "Applying guidance in a
    limited interval improves sample and distribution quality in diffusion models"). With t = 1 noise
    and t = 0 data, ``(lo, 1)`` guides the early, coarse part of the path and leaves the last, fine
    part to the conditional model. ``velocity_c(x, t) -> v_c``, when given, is called instead of
    ``velocity_cu`` at steps where no sample is guided (one branch evaluated instead of two).
    """
    if not 0.0 <= rescale <= 1.0:
        raise ValueError(f"rescale must be in [0, 1], got {rescale=}")
    lo, hi = interval
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"need 0 <= lo <= hi <= 1 for the guidance interval, got {interval=}")

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        inside = (t >= lo) & (t <= hi)  # (B,) which samples are guided at this time
        if velocity_c is not None and not bool(inside.any()):
            return velocity_c(x, t)
        if video_scale is None:
            v_c, v_u = velocity_cu(x, t)
            v = v_u + scale * (v_c - v_u)
        else:
            v_c, v_t, v_u = velocity_cu(x, t)
            v = v_u + scale * (v_t - v_u) + video_scale * (v_c - v_t)
        if rescale > 0.0:
            dims = tuple(range(1, v.ndim))  # every axis but the batch
            ratio = v_c.std(dim=dims, keepdim=True) / v.std(dim=dims, keepdim=True).clamp_min(1e-12)
            v = rescale * (v * ratio) + (1.0 - rescale) * v
        if not bool(inside.all()):
            v = torch.where(inside.reshape(-1, *([1] * (v.ndim - 1))), v, v_c)
        return v

    return velocity
