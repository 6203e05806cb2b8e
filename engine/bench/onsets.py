"""Temporal metrics: an onset envelope, onset detection, onset F1 against ground-truth events, and the
audio-to-event offset (our analytic stand-in for the papers' Synchformer DeSync).

Audio is a float array of shape (N, 2) (columns L, R) at ``sr`` Hz; times are seconds from the clip start.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from engine.bench.signal import as_stereo, parabolic_offset

_WINDOW_S = 0.023  # STFT window (rounded to a power of two: 1024 samples at 44.1/48 kHz)
_FLOOR_DB = -100.0  # per-bin magnitude floor, dB re a full-scale sine: silence gives zero flux
_MEDIAN_S = 1.0  # span of the moving median/MAD of the adaptive threshold
_THRESH_K = 4.0  # threshold = median + K * (1.4826 * MAD) + DELTA
_THRESH_DELTA_DB = 0.3  # minimum rise, mean dB per bin, that counts as an onset at all
_WHITEN_MARGIN_DB = 6.0  # a bin counts only this far above its median level (Rayleigh noise rarely is)
_MIN_GAP_S = 0.12  # two onsets closer than this are one (one sound event: a sweep, a flam)
_SKIP_S = 0.05  # the first frames see the clip start as an onset
_EVENT_SIGMA_S = 0.03  # width of the Gaussian bumps of the event track in `desync_offset`


def _log_spectrogram(mono: np.ndarray, sr: int, hop: int) -> np.ndarray:
    """Log-magnitude STFT (T, F) in dB re a full-scale sine, centred frames t * hop, Hann window."""
    n_fft = int(2 ** round(np.log2(_WINDOW_S * sr)))
    padded = np.pad(mono, (n_fft // 2, n_fft // 2))
    n_frames = 1 + len(mono) // hop
    padded = np.pad(padded, (0, max(0, (n_frames - 1) * hop + n_fft - len(padded))))
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]  # (T, n_fft)
    win = np.hanning(n_fft)
    mag = np.abs(np.fft.rfft(padded[idx] * win, axis=1)) / (win.sum() / 2.0)  # (T, F)
    return 20.0 * np.log10(np.maximum(mag, 10.0 ** (_FLOOR_DB / 20.0)))


def onset_envelope(audio: np.ndarray, sr: int = 44100, hop_s: float = 0.01) -> tuple[np.ndarray, float]:
    """Spectral-flux onset strength of the mono mix: (env (T,), frame rate in Hz); env[t] is at t / rate s.

    SuperFlux (Boeck & Widmer, DAFx 2013) on a whitened log spectrogram: each bin's level above its
    median over the clip (minus a 6 dB margin), its rise over the previous frame's maximum across 3
    neighbouring bins, half-wave rectified, averaged over bins (unit: dB per bin). Steady noise
    (rain, wind, hiss) stays below its median-plus-margin and contributes nothing.
    """
    mono = as_stereo(audio).mean(axis=1)
    hop = max(1, round(hop_s * sr))
    spec = _log_spectrogram(mono, sr, hop)  # (T, F)
    # Spectral whitening: only what rises above each bin's own median level (plus a margin) counts,
    # so noise bins and steady textures add nothing and a narrow-band chirp is not averaged away
    # by hundreds of fluctuating noise bins.
    spec = np.maximum(spec - np.median(spec, axis=0, keepdims=True) - _WHITEN_MARGIN_DB, 0.0)
    prev = ndimage.maximum_filter1d(spec, size=3, axis=1)
    flux = np.maximum(spec[1:] - prev[:-1], 0.0).mean(axis=1)  # (T - 1,)
    return np.concatenate([[0.0], flux]), sr / hop


def adaptive_threshold(env: np.ndarray, rate: float, delta: float = _THRESH_DELTA_DB) -> np.ndarray:
    """Moving median (over 1 s) + K * robust std (1.4826 * MAD) + ``delta``, per frame (T,), of an
    envelope sampled at ``rate`` Hz (``delta`` in the envelope's unit: dB per bin for `onset_envelope`)."""
    size = max(3, round(_MEDIAN_S * rate) | 1)
    med = ndimage.median_filter(env, size=size, mode="nearest")
    mad = ndimage.median_filter(np.abs(env - med), size=size, mode="nearest")
    return med + _THRESH_K * 1.4826 * mad + delta


def onset_strength(audio: np.ndarray, sr: int = 44100) -> tuple[np.ndarray, float]:
    """Significant onset strength of (N, 2) audio: (strength (T,), frame rate in Hz), `_onset_strength`
    of the `onset_envelope` (what `desync_offset` correlates with the events)."""
    env, rate = onset_envelope(audio, sr)
    return _onset_strength(env, rate), rate


def _onset_strength(env: np.ndarray, rate: float) -> np.ndarray:
    """log(1 + envelope above the adaptive threshold), (T,); zero in the first 50 ms (the clip start).

    Only significant rises count, so steady textures add nothing; the log keeps one loud unlisted
    onset (a texture starting) from outweighing the many events in `desync_offset`.
    """
    strength = np.log1p(np.maximum(env - adaptive_threshold(env, rate), 0.0))
    strength[: int(np.ceil(_SKIP_S * rate))] = 0.0
    return strength


def _pick_peaks(env: np.ndarray, thresh: np.ndarray, min_gap: int) -> np.ndarray:
    """Indices of local maxima above ``thresh``, strongest first kept, at least ``min_gap`` frames apart."""
    local_max = env >= ndimage.maximum_filter1d(env, size=3, mode="nearest")
    cand = np.flatnonzero(local_max & (env > thresh))
    kept: list[int] = []
    for i in cand[np.argsort(-env[cand], kind="stable")]:
        if all(abs(i - j) >= min_gap for j in kept):
            kept.append(int(i))
    return np.sort(np.array(kept, dtype=int))


def detect_onsets(audio: np.ndarray, sr: int = 44100) -> np.ndarray:
    """Onset times in seconds (sorted, (K,)) of (N, 2) audio; none in silence or the first 50 ms."""
    env, rate = onset_envelope(audio, sr)
    peaks = _pick_peaks(env, adaptive_threshold(env, rate), round(_MIN_GAP_S * rate))
    times = peaks / rate
    return times[times >= _SKIP_S]


def onset_f1(detected: np.ndarray, reference: np.ndarray, tol: float = 0.05) -> dict[str, float]:
    """F1, precision, recall and counts of ``detected`` against ``reference`` onset times (s).

    Pairs within ``tol`` s are matched one-to-one, closest first. Precision of no detections and
    recall of no references are 1, so both empty gives f1 = 1 and exactly one empty gives f1 = 0.
    """
    det = np.sort(np.asarray(detected, dtype=np.float64).ravel())
    ref = np.sort(np.asarray(reference, dtype=np.float64).ravel())
    dist = np.abs(det[:, None] - ref[None, :])  # (K_det, K_ref)
    pairs = np.argwhere(dist <= tol)
    used_d: set[int] = set()
    used_r: set[int] = set()
    for i, j in pairs[np.argsort(dist[pairs[:, 0], pairs[:, 1]], kind="stable")]:
        if i not in used_d and j not in used_r:
            used_d.add(int(i))
            used_r.add(int(j))
    tp = len(used_d)
    precision = tp / len(det) if len(det) else 1.0
    recall = tp / len(ref) if len(ref) else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
        "tp": tp,
        "fp": len(det) - tp,
        "fn": len(ref) - tp,
    }


def event_track(event_times: np.ndarray, rate: float, n_frames: int) -> np.ndarray:
    """Sum of unit Gaussian bumps (sigma 30 ms) at ``event_times`` s, sampled at t / rate, (n_frames,)."""
    t = np.arange(n_frames) / rate
    ev = np.asarray(event_times, dtype=np.float64).ravel()
    return np.exp(-0.5 * ((t[:, None] - ev[None, :]) / _EVENT_SIGMA_S) ** 2).sum(axis=1)


def desync_offset(audio: np.ndarray, sr: int, event_times: np.ndarray, duration: float, max_lag: float = 1.0) -> float:
    """Offset in seconds of the audio's onsets relative to ``event_times`` (positive: audio late).

    The lag in [-max_lag, max_lag] maximising the cross-correlation of the onset strength (the envelope
    above the adaptive threshold of `detect_onsets`, log-compressed) with the event track (Gaussian
    bumps, sigma 30 ms, over ``duration`` s), refined by a parabola through the peak. NaN without events.
    """
    if np.asarray(event_times).size == 0:
        return float("nan")
    env, rate = onset_envelope(audio, sr)
    n = max(1, int(np.ceil(duration * rate)))
    strength = np.zeros(n)
    m = min(n, len(env))
    strength[:m] = _onset_strength(env, rate)[:m]
    track = event_track(event_times, rate, n)
    lag = round(max_lag * rate)
    # corr[j] = sum_k strength[k + j - lag] * track[k]: index j is the lag j - lag frames
    corr = np.correlate(np.pad(strength, (lag, lag)), track, mode="valid")
    j = int(np.argmax(corr))
    return float((j - lag + parabolic_offset(corr, j)) / rate)
