"""Level safety of every take that is written: optional loudness normalisation, then a true-peak limiter.

Loudness and true peak are measured by libebur128 (the EBU R128 reference implementation, through the
``pyebur128`` package): integrated loudness per ITU-R BS.1770-4 / EBU R128 in LUFS, and the true peak in
dBTP (libebur128 oversamples 4x below 96 kHz). The limiter finds where the 4x oversampled waveform (our own
polyphase interpolation, `scipy.signal.resample_poly`) would pass the ceiling, and lowers the gain there
with a smooth look-ahead curve: the gain at each sample is the mean, over a window of ``2 h + 1`` samples
centred on it, of the least gain any peak within ``h`` samples of each window sample needs, so it never
exceeds what that sample needs (each term of the mean already covers it) and it moves over ``2 h`` samples
(10 ms either side), not at once. The result is measured again by libebur128 and, where its interpolation
still reads above the ceiling, limited again a little lower; a silent or quiet take passes unchanged.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pyebur128
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import resample_poly

from engine.errors import UserInputError

CEILING_DBTP = -1.0  # the delivery specifications' usual true-peak ceiling
LUFS_RANGE = (-70.0, -1.0)  # accepted normalisation targets (broadcast -23/-24, streaming -14/-16)
CEILING_RANGE = (-20.0, 0.0)  # accepted true-peak ceilings
OVERSAMPLE = 4  # the limiter's interpolation factor (as libebur128's below 96 kHz)
SMOOTH_S = 0.010  # the limiter's gain moves over this many seconds either side of a peak
MAX_PASSES = 4  # limiter passes before a last plain gain settles what interpolation differences leave


@dataclass(frozen=True)
class LevelSettings:
    """How a take's level is made safe before it is written (the same for the command line and the studio)."""

    lufs_target: float | None = None  # one gain to this integrated loudness first (None: the level as rendered)
    ceiling_dbtp: float = CEILING_DBTP  # true-peak ceiling of the limiter, dBTP

    def __post_init__(self) -> None:
        lo, hi = LUFS_RANGE
        t = self.lufs_target
        if t is not None and not (isinstance(t, int | float) and math.isfinite(t) and lo <= t <= hi):
            raise UserInputError(f"the loudness target must be between {lo:g} and {hi:g} LUFS, got {t}")
        lo, hi = CEILING_RANGE
        c = self.ceiling_dbtp
        if not (isinstance(c, int | float) and math.isfinite(c) and lo <= c <= hi):
            raise UserInputError(f"the true-peak ceiling must be between {lo:g} and {hi:g} dBTP, got {c}")


def _db(x: float) -> float:
    return 20.0 * math.log10(x) if x > 0 else -math.inf


def measure(audio: np.ndarray, sample_rate: int) -> dict[str, float | None]:
    """``{"lufs", "true_peak_dbtp"}`` of (N, C) float audio by libebur128; ``lufs`` is None for audio whose
    every gating block is below the absolute gate (silence has no loudness), the peak -inf for digital silence."""
    x = np.ascontiguousarray(np.asarray(audio, dtype=np.float64))
    if x.ndim != 2 or len(x) < 1:
        raise ValueError(f"audio must be (N, C) with N >= 1, got {x.shape=}")
    modes = pyebur128.MeasurementMode.MODE_I | pyebur128.MeasurementMode.MODE_TRUE_PEAK
    state = pyebur128.R128State(x.shape[1], int(sample_rate), modes)
    state.add_frames(x.ravel(), len(x))
    lufs = pyebur128.get_loudness_global(state)
    peak = max(pyebur128.get_true_peak(state, c) for c in range(x.shape[1]))
    return {"lufs": float(lufs) if math.isfinite(lufs) else None, "true_peak_dbtp": _db(float(peak))}


def peak_envelope(audio: np.ndarray) -> np.ndarray:
    """(N,) the largest magnitude of the 4x oversampled waveform (every channel) within half a sample of
    each sample: what the gain at that sample has to bring under the ceiling."""
    x = np.asarray(audio, dtype=np.float64)
    n, half = len(x), OVERSAMPLE // 2
    up = np.abs(resample_poly(x, OVERSAMPLE, 1, axis=0))  # (4 N, C): up[4 k] is x[k], no delay
    p = np.pad(functools.reduce(np.maximum, up.T), (half, half + 1))  # (4 N + 5,) p[j] = max_c up[j - half]
    near = p[0 : OVERSAMPLE * n : OVERSAMPLE].copy()  # up[4 k - 2]
    for j in range(1, OVERSAMPLE + 1):  # ... up to up[4 k + 2]
        np.maximum(near, p[j : j + OVERSAMPLE * n : OVERSAMPLE], out=near)
    return np.maximum(near, functools.reduce(np.maximum, np.abs(x).T))


def limiter_gain(audio: np.ndarray, sample_rate: int, ceiling: float) -> np.ndarray:
    """(N,) gains <= 1 that bring the oversampled peaks of ``audio`` to at most ``ceiling`` (linear): the
    needed gain min-filtered and then averaged over the same centred window (module docstring)."""
    need = np.minimum(1.0, ceiling / np.maximum(peak_envelope(audio), 1e-12))  # (N,)
    if need.min() >= 1.0:
        return need
    size = 2 * max(1, round(SMOOTH_S * sample_rate)) + 1
    held = minimum_filter1d(need, size, mode="nearest")  # least need within h of each sample
    return np.minimum(uniform_filter1d(held, size, mode="nearest"), need)  # rounding in the mean: never above need


def limit_true_peak(
    audio: np.ndarray, sample_rate: int, ceiling_dbtp: float = CEILING_DBTP
) -> tuple[np.ndarray, float, dict]:
    """-> (audio (N, C) float32 whose true peak by libebur128 is at most ``ceiling_dbtp``, the least gain
    applied anywhere (1: untouched, the audio returned as it was), `measure` of the audio returned)."""
    x = np.asarray(audio, dtype=np.float64)
    target = 10.0 ** (ceiling_dbtp / 20.0)
    gain = np.ones(len(x))
    for k in range(MAX_PASSES + 2):
        out = x.astype(np.float32)
        levels = measure(out, sample_rate)  # of what is returned, so the report needs no second pass
        peak = 10.0 ** (levels["true_peak_dbtp"] / 20.0)
        if peak <= target or k > MAX_PASSES:
            break
        # interpolators differ a little: each further pass aims a hair lower, and the last is one plain gain
        g = limiter_gain(x, sample_rate, target * 0.999**k) if k < MAX_PASSES else 0.999 * target / peak
        x, gain = x * np.reshape(g, (-1, 1)), gain * g
    return out, float(np.min(gain)), levels


def make_safe(audio: np.ndarray, sample_rate: int, level: LevelSettings | None = None) -> tuple[np.ndarray, dict]:
    """Loudness normalisation (``level.lufs_target``, one gain) and then the true-peak limiter: -> (audio
    (N, C) float32, report ``{"lufs", "true_peak_dbtp", "gain_db", "limited_db", "ceiling_dbtp",
    "lufs_target"}``): the loudness and true peak of the audio returned, ``limited_db`` the most gain the
    limiter took away (0: untouched). Silence is returned unchanged."""
    level = level or LevelSettings()
    x = np.asarray(audio, dtype=np.float64)
    gain_db = 0.0
    if level.lufs_target is not None:
        before = measure(x, sample_rate)["lufs"]
        if before is not None:
            gain_db = level.lufs_target - before
            x = x * 10.0 ** (gain_db / 20.0)
    out, least, levels = limit_true_peak(x, sample_rate, level.ceiling_dbtp)
    report = levels | {"gain_db": round(gain_db, 3), "limited_db": round(abs(_db(least)), 3)}
    return out, report | {"ceiling_dbtp": level.ceiling_dbtp, "lufs_target": level.lufs_target}
