"""Signal-level checks of a generated clip: loudness (ITU-R BS.1770-4), clipping, DC offset, silence;
and the two array helpers the other bench modules share (`as_stereo`, `parabolic_offset`).

Audio is a float array of shape (N, 2) (columns L, R), full scale = 1.0.
"""

from __future__ import annotations

import numpy as np
from scipy import signal as sps

# ITU-R BS.1770-4 K-weighting, given there as biquads at 48 kHz; these are the analog prototype
# parameters (as derived in libebur128) so the filters can be designed for any sample rate.
_SHELF_F0_HZ = 1681.974450955533
_SHELF_GAIN_DB = 3.999843853973347
_SHELF_Q = 0.7071752369554196
_RLB_F0_HZ = 38.13547087602444
_RLB_Q = 0.5003270373238773

_BLOCK_S = 0.4  # gating block length (BS.1770-4 section 2.3)
_BLOCK_STEP_S = 0.1  # 75 % overlap
_ABS_GATE_LUFS = -70.0
_REL_GATE_LU = -10.0


def as_stereo(audio: np.ndarray) -> np.ndarray:
    """Check that ``audio`` is (N, 2) with N >= 1 and return it as float64; raises ValueError otherwise."""
    a = np.asarray(audio, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] == 0:
        raise ValueError(f"expected stereo audio of shape (N, 2) with N > 0, got {a.shape=}")
    return a


def parabolic_offset(y: np.ndarray, i: int) -> float:
    """Sub-sample position of the peak at index ``i`` of (K,) ``y``, from a parabola through its neighbours.

    In [-0.5, 0.5] samples; 0 at the ends or where the neighbours do not bend down.
    """
    if i == 0 or i == len(y) - 1:
        return 0.0
    den = y[i - 1] - 2.0 * y[i] + y[i + 1]
    return float(0.5 * (y[i - 1] - y[i + 1]) / den) if den < 0 else 0.0


def k_weighting_sos(sr: int) -> np.ndarray:
    """Second-order sections (2, 6) of the BS.1770 K-weighting (high shelf, then RLB high-pass) at ``sr`` Hz."""
    k = np.tan(np.pi * _SHELF_F0_HZ / sr)
    vh = 10.0 ** (_SHELF_GAIN_DB / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / _SHELF_Q + k * k
    shelf = [
        (vh + vb * k / _SHELF_Q + k * k) / a0,
        2.0 * (k * k - vh) / a0,
        (vh - vb * k / _SHELF_Q + k * k) / a0,
        1.0,
        2.0 * (k * k - 1.0) / a0,
        (1.0 - k / _SHELF_Q + k * k) / a0,
    ]
    k = np.tan(np.pi * _RLB_F0_HZ / sr)
    a0 = 1.0 + k / _RLB_Q + k * k
    rlb = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _RLB_Q + k * k) / a0]
    return np.array([shelf, rlb])


def _block_powers(weighted: np.ndarray, sr: int) -> np.ndarray:
    """Mean square per gating block and channel, (J, 2); one block over everything if shorter than 400 ms."""
    size = round(_BLOCK_S * sr)
    step = round(_BLOCK_STEP_S * sr)
    if len(weighted) < size:
        return np.mean(weighted**2, axis=0, keepdims=True)
    starts = np.arange(0, len(weighted) - size + 1, step)
    # cumulative sums give every block's energy without materialising the (J, size, 2) frames
    csum = np.concatenate([np.zeros((1, 2)), np.cumsum(weighted**2, axis=0)])
    return (csum[starts + size] - csum[starts]) / size


def _lufs(power: np.ndarray) -> np.ndarray:
    """Loudness of channel-summed power(s) (channel weights 1 for L and R)."""
    with np.errstate(divide="ignore"):
        return -0.691 + 10.0 * np.log10(power)


def loudness_lufs(audio: np.ndarray, sr: int = 44100) -> float:
    """Integrated loudness of (N, 2) audio in LUFS (ITU-R BS.1770-4, gated).

    Returns ``-inf`` when no block passes the -70 LUFS absolute gate (silence). A clip shorter than
    one 400 ms block is measured as a single block.
    """
    a = as_stereo(audio)
    weighted = sps.sosfilt(k_weighting_sos(sr), a, axis=0)
    z = _block_powers(weighted, sr)  # (J, 2)
    block_lufs = _lufs(z.sum(axis=1))
    z = z[block_lufs > _ABS_GATE_LUFS]
    if len(z) == 0:
        return float("-inf")
    rel_gate = _lufs(z.mean(axis=0).sum()) + _REL_GATE_LU
    z = z[_lufs(z.sum(axis=1)) > rel_gate]
    return float(_lufs(z.mean(axis=0).sum()))


def clipping_rate(audio: np.ndarray, thresh: float = 0.999) -> float:
    """Fraction of samples (over both channels) whose magnitude is at or above ``thresh``."""
    a = as_stereo(audio)
    return float(np.mean(np.abs(a) >= thresh))


def dc_offset(audio: np.ndarray) -> float:
    """Largest absolute per-channel mean of (N, 2) audio (full scale 1.0)."""
    a = as_stereo(audio)
    return float(np.max(np.abs(a.mean(axis=0))))


def silence_fraction(audio: np.ndarray, sr: int = 44100, frame_s: float = 0.05, floor_db: float = -60.0) -> float:
    """Fraction of 50 ms frames whose RMS over both channels is below -60 dBFS (0 dBFS = RMS 1.0).

    A trailing partial frame is dropped unless the clip is shorter than one frame.
    """
    a = as_stereo(audio)
    size = max(1, round(frame_s * sr))
    n_frames = max(1, len(a) // size)
    frames = a[: n_frames * size] if len(a) >= size else a
    ms = np.mean(frames.reshape(n_frames, -1) ** 2, axis=1)  # (frames,)
    return float(np.mean(ms < 10.0 ** (floor_db / 10.0)))
