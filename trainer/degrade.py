"""Audio degradations the quality predictor learns to detect: noise, hum, clipping, band limiting and
temporal smearing. Each takes (N, 2) float audio and a severity in [0, 1]."""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt

DEGRADATIONS = ("noise", "hum", "clipping", "bandlimit", "smear")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)) + 1e-9)


def add_noise(x: np.ndarray, sr: int, sev: float, rng: np.random.Generator) -> np.ndarray:
    """White or pink-ish noise at an SNR from 25 dB (mild) down to 0 dB (severe)."""
    snr_db = 25.0 - 25.0 * sev
    noise = rng.standard_normal(x.shape)
    if rng.random() < 0.5:
        noise = sosfilt(butter(1, 1000, fs=sr, output="sos"), noise, axis=0)
    return x + noise * _rms(x) / _rms(noise) * 10 ** (-snr_db / 20)


def add_hum(x: np.ndarray, sr: int, sev: float, rng: np.random.Generator) -> np.ndarray:
    """Mains hum (50 or 60 Hz with odd harmonics)."""
    f0 = float(rng.choice([50.0, 60.0]))
    t = np.arange(len(x)) / sr
    hum = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) / k for k in (1, 3, 5, 7))
    return x + (hum / _rms(hum) * _rms(x) * 10 ** ((-22 + 20 * sev) / 20))[:, None]


def clip(x: np.ndarray, sr: int, sev: float, rng: np.random.Generator) -> np.ndarray:
    """Overdrive into hard clipping at full scale."""
    gain = 10 ** ((6 + 24 * sev) / 20) / (np.abs(x).max() + 1e-9)
    return np.clip(x * gain, -1.0, 1.0)


def bandlimit(x: np.ndarray, sr: int, sev: float, rng: np.random.Generator) -> np.ndarray:
    """Low-pass like a cheap codec or phone: cutoff from 6 kHz (mild) down to 1.5 kHz."""
    cutoff = 6000.0 - 4500.0 * sev
    return sosfilt(butter(8, cutoff, fs=sr, output="sos"), x, axis=0)


def smear(x: np.ndarray, sr: int, sev: float, rng: np.random.Generator) -> np.ndarray:
    """Temporal smearing: convolution with a 50-300 ms noise burst washes out the transients."""
    n = int((0.05 + 0.25 * sev) * sr)
    ir = rng.standard_normal((n, 1)) * np.hanning(2 * n)[n:, None] ** 0.5
    y = np.stack([fftconvolve(x[:, c], ir[:, 0])[: len(x)] for c in range(x.shape[1])], axis=1)
    return y * _rms(x) / _rms(y)


_FUNCS = {"noise": add_noise, "hum": add_hum, "clipping": clip, "bandlimit": bandlimit, "smear": smear}


def degrade(
    x: np.ndarray, sr: int, rng: np.random.Generator, kinds: list[str] | None = None, severity: float | None = None
) -> tuple[np.ndarray, list[str]]:
    """Apply one or two random degradations (or the named ones); returns (audio, names applied)."""
    if kinds is None:
        kinds = list(rng.choice(DEGRADATIONS, size=1 + int(rng.random() < 0.3), replace=False))
    y = np.asarray(x, dtype=np.float64)
    for k in kinds:
        sev = float(rng.uniform(0.15, 1.0)) if severity is None else severity
        y = _FUNCS[k](y, sr, sev, rng)
    peak = np.abs(y).max()
    if peak > 1.0 and "clipping" not in kinds:
        y = y / peak
    return y.astype(np.float32), [str(k) for k in kinds]
