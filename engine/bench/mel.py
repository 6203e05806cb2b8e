"""Log-mel features of the FoleyBench metric models (one definition, used in training and scoring)."""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy.signal import resample_poly

FEATURE_SR = 22050  # Hz; every input is resampled to this rate
N_FFT = 1024
HOP = 512  # ~43 frames per second
N_MELS = 64
F_MIN, F_MAX = 40.0, 11000.0


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


@lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """(N_MELS, N_FFT // 2 + 1) triangular filters on the HTK mel scale."""
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / FEATURE_SR)
    edges = 700.0 * (10 ** (np.linspace(_hz_to_mel(F_MIN), _hz_to_mel(F_MAX), N_MELS + 2) / 2595.0) - 1.0)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lo) / (mid - lo)
    down = (hi - freqs[None, :]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


def to_mono_feature_rate(audio: np.ndarray, sr: int) -> np.ndarray:
    """(N,) or (N, C) audio at ``sr`` -> (M,) float32 mono at FEATURE_SR."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sr != FEATURE_SR:
        ratio = Fraction(FEATURE_SR, int(sr)).limit_denominator(1000)
        x = resample_poly(x, ratio.numerator, ratio.denominator).astype(np.float32)
    return x


def log_mel(audio: np.ndarray, sr: int) -> np.ndarray:
    """Log-mel spectrogram (N_MELS, T) float32 of the mono mix, T = 1 + M // HOP frames.

    Values are log10(mel power + 1e-6) so silence sits at -6 and a full-scale tone near +3.
    """
    x = to_mono_feature_rate(audio, sr)
    x = np.pad(x, (N_FFT // 2, N_FFT // 2))
    n_frames = 1 + (len(x) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n_frames)[:, None]  # (T, N_FFT)
    frames = x[idx] * np.hanning(N_FFT).astype(np.float32)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 / N_FFT  # (T, F)
    return np.log10(mel_filterbank() @ power.T.astype(np.float32) + 1e-6).astype(np.float32)
