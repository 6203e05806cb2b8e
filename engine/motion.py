"""Motion (sync) features of a video at the latent frame rate: where and when the picture changes.

They play the role of PrismAudio's Synchformer features (fine timing at ~25 Hz, added to the latent
sequence through a gate) with no learned weights: per cell of a G x G grid, the mean absolute
frame difference and its rectified rise and fall (a clock hand jumping, a ball stopping, a flame
flaring), plus the global motion energy and the motion's horizontal centroid (where things move).
They are computed at the source frame rate and resampled to the latent frame times, so any frame
rate gives features on the same grid.
"""

from __future__ import annotations

import numpy as np

GRID = 4  # cells per side
SYNC_DIM = 3 * GRID * GRID + 2  # energy, rise, fall per cell + global energy + horizontal centroid


def _gray(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H, W) float32 luminance in [0, 1]."""
    return (frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)) / 255.0


def native_motion(frames: np.ndarray) -> np.ndarray:
    """Per source frame (N, SYNC_DIM) features; frame 0 has zero motion."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames (N, H, W, 3), got {frames.shape=}")
    n, h, w = frames.shape[:3]
    g = _gray(frames)
    diff = np.zeros_like(g)
    diff[1:] = np.abs(g[1:] - g[:-1])  # (N, H, W)
    hs, ws = h // GRID * GRID, w // GRID * GRID
    cells = diff[:, :hs, :ws].reshape(n, GRID, hs // GRID, GRID, ws // GRID).mean(axis=(2, 4)).reshape(n, -1) * 10
    change = np.diff(cells, axis=0, prepend=cells[:1])
    rise, fall = np.maximum(change, 0.0), np.maximum(-change, 0.0)
    total = diff.mean(axis=(1, 2))  # (N,)
    xs = np.linspace(-1.0, 1.0, w, dtype=np.float32)
    col = diff.mean(axis=1)  # (N, W)
    centroid = (col * xs).sum(1) / np.maximum(col.sum(1), 1e-6)
    return np.concatenate([cells, rise, fall, total[:, None] * 10, centroid[:, None]], axis=1).astype(np.float32)


def resample_features(feats: np.ndarray, times: np.ndarray, target_times: np.ndarray) -> np.ndarray:
    """Features at source ``times`` (N,) -> (T, D) at ``target_times``: the maximum over the source
    frames inside each target frame's interval (so a one-frame jump is never skipped), linear
    interpolation where an interval holds no source frame."""
    interp = np.stack([np.interp(target_times, times, feats[:, d]) for d in range(feats.shape[1])], axis=1)
    step = target_times[1] - target_times[0] if len(target_times) > 1 else 1.0
    idx = np.searchsorted(times, target_times - step / 2)
    end = np.searchsorted(times, target_times + step / 2)
    out = interp.copy()
    for k in np.flatnonzero(end > idx):
        out[k] = np.maximum(interp[k], feats[idx[k] : end[k]].max(axis=0))
    return out.astype(np.float32)


def motion_features(frames: np.ndarray, times: np.ndarray, latent_rate: float, n_latent: int) -> np.ndarray:
    """(n_latent, SYNC_DIM) sync features at ``k / latent_rate`` (k = 0 .. n_latent - 1) from source
    frames (N, H, W, 3) shown at ``times`` (N,) seconds."""
    target = (np.arange(n_latent) + 0.5) / latent_rate
    return resample_features(native_motion(frames), np.asarray(times, dtype=np.float64) - times[0], target)
