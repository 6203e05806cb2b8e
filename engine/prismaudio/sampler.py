"""The official PrismAudio sampler (OFFICIAL.md 5.2): Euler on ``t = torch.linspace(1, 0, steps + 1)`` in
float32, ``x += (t_next - t) v(x, t)``, no shift and no extra step.

The step itself is the project's pure `engine.sampling.euler_step`. The grid is not `engine.sampling.timesteps`:
that one is computed in float64 and rounded (for its shift), which differs from the reference's float32
linspace by one ulp at some steps; here the grid is the reference's bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from engine.sampling import Velocity, euler_step


def reference_timesteps(steps: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(steps + 1,) float32 times from 1 (noise) to 0 (data), as the reference's ``torch.linspace``."""
    if steps < 1:
        raise ValueError(f"need at least one step, got {steps=}")
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float32, device=device)


def sample_euler(
    velocity: Velocity, noise: torch.Tensor, steps: int, progress: Callable[[int, int], None] | None = None
) -> torch.Tensor:
    """Integrate ``velocity`` from ``noise`` (B, C, N) at t = 1 to t = 0 in ``steps`` Euler steps."""
    ts = reference_timesteps(steps, noise.device)
    x = noise.float()
    for i in range(steps):
        t = ts[i].expand(x.shape[0])  # (B,)
        x = euler_step(x, ts[i], ts[i + 1], velocity(x, t)).x_next
        if progress:
            progress(i + 1, steps)
    return x
