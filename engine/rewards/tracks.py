"""Audio quantities on the frame grid of a `VideoView` (frame k covers [k / rate, (k + 1) / rate) s),
shared by the temporal and spatial heads, and the small helpers both need."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def pool_max(values: np.ndarray, values_rate: float, rate: float, n: int) -> np.ndarray:
    """(M,) values sampled at ``values_rate`` Hz (value m at m / values_rate s) -> (n,) the maximum in each
    frame of ``rate`` Hz (0 where a frame holds no value)."""
    out = np.zeros(n)
    idx = np.floor(np.arange(len(values)) / values_rate * rate + 1e-9).astype(int)
    keep = idx < n
    np.maximum.at(out, idx[keep], np.maximum(values[keep], 0.0))
    return out


def frame_energy(audio: np.ndarray, sr: int, rate: float, n: int) -> np.ndarray:
    """(n,) mean square over both channels of (N, 2) audio in each frame of ``rate`` Hz (0 past the end)."""
    power = np.concatenate([[0.0], np.cumsum(np.mean(np.asarray(audio, np.float64) ** 2, axis=1))])  # (N + 1,)
    edges = np.minimum(np.round(np.arange(n + 1) * sr / rate).astype(int), len(audio))
    count = np.diff(edges)
    return np.where(count > 0, np.diff(power[edges]) / np.maximum(count, 1), 0.0)


def blur(x: np.ndarray, seconds: float, rate: float) -> np.ndarray:
    """Gaussian smoothing of a (K,) track sampled at ``rate`` Hz with a standard deviation of ``seconds``."""
    return ndimage.gaussian_filter1d(np.asarray(x, np.float64), seconds * rate, mode="constant")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two (K,) tracks; 0 when either is all zero."""
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / den if den > 0 else 0.0
