"""Mono audio at the rate a published reward model expects, cut into the windows it was trained on."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly


def mono_at(audio: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """(N, C) or (N,) audio at ``sr`` -> (M,) float32 mono (channel mean) at ``target_sr``."""
    x = np.asarray(audio, dtype=np.float64)
    x = x.mean(axis=1) if x.ndim == 2 else x
    if sr != target_sr:
        ratio = Fraction(int(target_sr), int(sr)).limit_denominator(1000)
        x = resample_poly(x, ratio.numerator, ratio.denominator)
    return x.astype(np.float32)


def windows(x: np.ndarray, length: int) -> list[np.ndarray]:
    """(M,) -> consecutive pieces of at most ``length`` samples (at least one, even for M < length)."""
    return [x[i : i + length] for i in range(0, max(len(x), 1), length)]
