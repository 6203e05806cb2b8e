"""Spatial metrics: GCC-PHAT time difference, a per-frame screen-position track estimated from level and
time differences (inverting the convention of `engine.stereo`), and scores against the ground truth.

Audio is a float array of shape (N, 2) (columns L, R) at ``sr`` Hz. Screen x: -1 left edge, +1 right edge.
Ground truth (see `spatial_scores`): ``events`` [{"time": s, "cls": str, "source": int, "x": float}] and
``tracks`` {"rate": Hz, "x": [per source, per frame x], "energy": [per source, per frame mean square]}.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine import stereo
from engine.bench.signal import as_stereo, parabolic_offset

_ITD_BAND_HZ = (
    100.0,
    8000.0,
)  # band where GCC-PHAT is used for the ITD (below: hum, few periods per frame; above: little energy)
_ITD_MIN_PEAK = 0.3  # GCC-PHAT peak height above which the ITD reading is trusted
_ILD_CENTRE = 0.1  # |sin az| from the ILD below which the level difference is taken as "no direction"
_X_CLIP = 2.0  # screen x is clipped to +-2 (90 degrees) before comparing
_REL_ENERGY_GATE = 1e-3  # frames quieter than this fraction of the clip's loudest true frame are ignored
_EVENT_WINDOW_S = 0.08  # an event probe looks at [t, t + 0.08 s]
_EVENT_MIN_ABS_X = 0.25  # events nearer the centre than this are no left/right probe
_SEGMENT_MIN_ABS_X = 0.3  # 1-s segments nearer the centre than this are no left/right probe
_SIDE_MIN_ABS_X = 0.05  # an estimate nearer the centre than this names no side (mono must not score by round-off)


def gcc_phat(
    left: np.ndarray, right: np.ndarray, sr: int, max_tau: float, band: tuple[float, float] | None = None
) -> tuple[float, float]:
    """Time difference (s) and peak height of the GCC-PHAT cross-correlation of two (N,) signals.

    tau > 0 when the left channel is late (source on the right, as `stereo.itd_seconds`), searched in
    [-max_tau, max_tau] and refined by a parabola. The peak is the whitened correlation at tau, 1 for a
    pure delay of a signal filling ``band`` (Hz, default all), near 0 for incoherent or narrow-band
    channels. Silent input gives (0.0, 0.0).
    """
    left = np.asarray(left, dtype=np.float64)
    right = np.asarray(right, dtype=np.float64)
    if left.ndim != 1 or left.shape != right.shape:
        raise ValueError(f"left and right must be equal-length (N,) arrays, got {left.shape=} {right.shape=}")
    n_fft = int(2 ** np.ceil(np.log2(max(2 * len(left), 2))))  # zero-padded: linear, not circular
    cross = np.fft.rfft(left, n_fft) * np.conj(np.fft.rfft(right, n_fft))  # (F,)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    lo, hi = band if band is not None else (0.0, sr / 2.0)
    in_band = (freqs >= lo) & (freqs <= hi)
    mag = np.abs(cross)
    if not in_band.any() or mag[in_band].max() <= 0.0:
        return 0.0, 0.0
    # PHAT weighting (Knapp & Carter 1976): keep only the phase; bins more than 180 dB below the strongest fade out
    weighted = np.where(in_band, cross / np.maximum(mag, 1e-9 * mag[in_band].max()), 0.0)
    n_eff = 2.0 * in_band.sum() - in_band[0] - in_band[-1]  # bins of the full spectrum in the band
    corr = np.fft.irfft(weighted, n_fft) * n_fft / n_eff  # (n_fft,), lag k at index k mod n_fft
    max_lag = min(int(np.ceil(max_tau * sr)), len(left) - 1)
    lags = np.arange(-max_lag, max_lag + 1)
    window = corr[lags % n_fft]
    i = int(np.argmax(window))
    return float((lags[i] + parabolic_offset(window, i)) / sr), float(window[i])


def _fuse(sin_ild: float, sin_itd: float, itd_peak: float) -> float:
    """sin(azimuth) from the ILD reading, strengthened by a confident ITD reading.

    Amplitude-only panning zeroes the ITD and delay-only panning zeroes the ILD, so a confident ITD
    replaces the ILD when it points further the same way, or when the ILD says "centre"; it never flips
    the ILD's side (tonal sounds make the ITD ambiguous by whole periods).
    """
    if itd_peak < _ITD_MIN_PEAK or abs(sin_itd) <= abs(sin_ild):
        return sin_ild
    if abs(sin_ild) < _ILD_CENTRE or np.sign(sin_itd) == np.sign(sin_ild):
        return sin_itd
    return sin_ild


def window_sin_az(chunk: np.ndarray, sr: int) -> float:
    """sin(azimuth) of one (n, 2) stretch of audio from its ILD and GCC-PHAT ITD; 0 for silence."""
    e_left, e_right = np.mean(chunk**2, axis=0)
    if e_left + e_right <= 0.0:
        return 0.0
    sin_ild = float(stereo.sin_az_from_energies(e_left, e_right))
    tau, peak = gcc_phat(chunk[:, 0], chunk[:, 1], sr, 1.2 * stereo.MAX_ITD_S, band=_ITD_BAND_HZ)
    sin_itd = float(np.clip(tau / stereo.MAX_ITD_S, -1.0, 1.0))
    return _fuse(sin_ild, sin_itd, peak)


def sin_az_to_x(sin_az: np.ndarray | float) -> np.ndarray:
    """Screen x (in [-2, 2]) for sin(azimuth) values, inverting `stereo.x_to_azimuth`."""
    return stereo.azimuth_to_x(np.arcsin(np.clip(sin_az, -1.0, 1.0)))


def azimuth_track(audio: np.ndarray, sr: int = 44100, rate: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame screen position and energy of (N, 2) audio: (x_est (K,), energy (K,)).

    Frame k covers samples of [k / rate, (k + 1) / rate) s (the last one may be partial). energy is the
    mean square over the frame's samples and both channels; x_est is 0 in silent frames.
    """
    a = as_stereo(audio)
    hop = max(1, round(sr / rate))
    starts = range(0, len(a), hop)
    x_est = np.array([float(sin_az_to_x(window_sin_az(a[s : s + hop], sr))) for s in starts])
    energy = np.array([float(np.mean(a[s : s + hop] ** 2)) for s in starts])
    return x_est, energy


def true_track(tracks: dict[str, Any], n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth per-frame (x (K,), total energy (K,)) of ``tracks`` over ``n_frames`` frames.

    x is where the mixture's stereo image sits: the sources' energies are panned by the convention of
    `engine.stereo` (constant power) and the resulting left/right energies are inverted back to a
    screen position, 0 where no source sounds. For one source this is its own x (clipped to +-2); for
    several it is the energy centroid in the pan domain, which is what a level-based reading of the
    mix measures. Missing frames and NaN entries count as silent.
    """
    xs = np.zeros((len(tracks["x"]), n_frames))  # (S, K)
    es = np.zeros_like(xs)
    for s, (x_s, e_s) in enumerate(zip(tracks["x"], tracks["energy"], strict=True)):
        m = min(n_frames, len(x_s), len(e_s))
        xs[s, :m] = np.clip(np.nan_to_num(np.asarray(x_s[:m], dtype=np.float64)), -_X_CLIP, _X_CLIP)
        es[s, :m] = np.nan_to_num(np.asarray(e_s[:m], dtype=np.float64))
    total = es.sum(axis=0)
    g_l, g_r = stereo.pan_gains(xs)  # (S, K) each
    sin_az = stereo.sin_az_from_energies((es * g_l**2).sum(axis=0), (es * g_r**2).sum(axis=0))
    x = np.where(total > 0, np.clip(sin_az_to_x(sin_az), -_X_CLIP, _X_CLIP), 0.0)
    return x, total


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    """Weighted mean; NaN when the weights sum to 0."""
    total = float(weights.sum())
    return float((values * weights).sum() / total) if total > 0 else float("nan")


def _same_side(x_est: float, x_true: float) -> bool:
    """Whether the estimate names the true side (left/right) of the screen; near-centre estimates do not."""
    return abs(x_est) >= _SIDE_MIN_ABS_X and np.sign(x_est) == np.sign(x_true)


def _band_power(chunk: np.ndarray, n_fft: int) -> np.ndarray:
    """Mean power spectrum (F, 2) of an (n, 2) stretch over half-overlapping Hann frames (Welch)."""
    hop = n_fft // 2
    starts = range(0, max(1, len(chunk) - n_fft + 1), hop)
    win = np.hanning(n_fft)[:, None]
    frames = [
        np.abs(
            np.fft.rfft(
                np.pad(chunk[s : s + n_fft], ((0, max(0, n_fft - len(chunk[s : s + n_fft]))), (0, 0))) * win, axis=0
            )
        )
        ** 2
        for s in starts
    ]
    return np.mean(frames, axis=0)


def event_sin_az(audio: np.ndarray, sr: int, t: float) -> float:
    """sin(azimuth) of what an event at ``t`` s adds to the mix, from (N, 2) audio.

    Welch power spectra of [t, t + 80 ms] and of the 150 ms before the onset (ending 10 ms before
    it); per channel, only bins at least 3 dB louder after the onset count, by their increase. This is
    the level difference of the event itself, not of louder sounds already playing elsewhere in the
    picture (the averaging keeps the frame-to-frame fluctuation of steady noise from counting).
    """
    n_fft = max(64, int(2 ** round(np.log2(0.012 * sr))))
    start = max(0, round(t * sr))
    after = audio[start : start + round(_EVENT_WINDOW_S * sr)]
    if len(after) == 0:
        return 0.0
    pre_end = max(0, start - round(0.01 * sr))
    before = audio[max(0, pre_end - round(0.15 * sr)) : pre_end]
    p_after = _band_power(after, n_fft)
    p_before = _band_power(before, n_fft) if len(before) >= n_fft else np.zeros_like(p_after)
    rise = np.where(p_after > 2.0 * p_before, p_after - p_before, 0.0).sum(axis=0)  # (2,)
    if rise.sum() <= 0.0:
        return window_sin_az(after, sr)
    return float(stereo.sin_az_from_energies(rise[0], rise[1]))


def _event_probes(audio: np.ndarray, sr: int, events: list[dict[str, Any]]) -> list[bool]:
    """Left/right correctness of every event with |x| >= 0.25, judged on what it adds in [t, t + 80 ms]."""
    hits = []
    for ev in events:
        if abs(ev["x"]) < _EVENT_MIN_ABS_X:
            continue
        est = float(sin_az_to_x(event_sin_az(audio, sr, ev["time"])))
        hits.append(_same_side(est, ev["x"]))
    return hits


def _segment_probes(
    x_est: np.ndarray, energy: np.ndarray, x_true: np.ndarray, e_true: np.ndarray, rate: float, duration: float
) -> list[bool]:
    """Left/right correctness of every whole 1-s segment whose energy-weighted true |x| >= 0.3."""
    hits = []
    for k in range(int(np.floor(duration + 1e-9))):
        seg = slice(round(k * rate), round((k + 1) * rate))
        truth = _weighted_mean(x_true[seg], e_true[seg])
        if not abs(truth) >= _SEGMENT_MIN_ABS_X:  # also skips NaN (silent segment)
            continue
        est = _weighted_mean(x_est[seg], energy[seg])
        hits.append(_same_side(est, truth))
    return hits


def spatial_scores(
    audio: np.ndarray, sr: int, events: list[dict[str, Any]], tracks: dict[str, Any], duration: float
) -> dict[str, float]:
    """Spatial agreement of (N, 2) audio with the clip's ground truth: dict(x_mse, lr_accuracy, n_probes).

    x_mse: mean of (x_est - x_true)^2 over frames weighted by the true energy, frames below 1e-3 of the
    loudest true frame ignored (NaN if none remain). lr_accuracy: fraction of left/right probes (events
    with |x| >= 0.25, whole 1-s segments with |true x| >= 0.3) whose estimated side matches (NaN if none).
    """
    a = as_stereo(audio)
    rate = float(tracks["rate"])
    n_frames = max(1, int(np.ceil(duration * rate - 1e-9)))
    x_true, e_true = true_track(tracks, n_frames)
    x_est = np.zeros(n_frames)
    energy = np.zeros(n_frames)
    est, en = azimuth_track(a, sr, rate)
    m = min(n_frames, len(est))
    x_est[:m] = np.clip(est[:m], -_X_CLIP, _X_CLIP)
    energy[:m] = en[:m]
    keep = e_true >= _REL_ENERGY_GATE * e_true.max() if e_true.max() > 0 else np.zeros(n_frames, dtype=bool)
    x_mse = _weighted_mean((x_est[keep] - x_true[keep]) ** 2, e_true[keep])
    hits = _event_probes(a, sr, events) + _segment_probes(x_est, energy, x_true, e_true, rate, duration)
    accuracy = float(np.mean(hits)) if hits else float("nan")
    return {"x_mse": x_mse, "lr_accuracy": accuracy, "n_probes": len(hits)}
