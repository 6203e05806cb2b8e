"""The spatial reward head: does the stereo image sit where the picture moves?

PrismAudio rewards the stereo image with a GCC-PHAT / ITD score against reference audio; there is no
reference audio for a new take, so this head compares the take with the picture itself:

- the audio's screen position per view frame from level and GCC-PHAT time differences
  (`engine.bench.spatial.azimuth_track`, the FoleyBench estimator), energy-weighted and smoothed over
  100 ms;
- the picture's horizontal motion centroid per frame (`VideoView.centroid`), motion-weighted and
  smoothed the same way;
- score = mean over frames of ``exp(-(x_audio - x_video)^2 / (2 * 0.5^2))``, each frame weighted by the
  audio energy (frames 60 dB below the loudest ignored) times how much the picture moves there
  (``m / (m + median m)``). A source panned to the moving side scores near 1, mirrored channels near 0;
  centred sources are not hurt by mirroring. With no audible frame that shows motion the picture says
  nothing about position and the score is 0.5.
"""

from __future__ import annotations

import numpy as np

from engine.bench.spatial import azimuth_track
from engine.cot import Cot
from engine.rewards.protocol import as_batch
from engine.rewards.tracks import blur
from engine.rewards.view import VideoView

SIGMA_X = 0.5  # screen-x distance (frame width = 2) at which the agreement falls to exp(-1/2)
SMOOTH_S = 0.1  # smoothing of both position tracks
ENERGY_GATE = 1e-6  # audio frames below this fraction of the loudest frame's energy (-60 dB) do not count
X_CLIP = 2.0  # audio positions are clipped to +-2 (90 degrees), the picture's centroid is in [-1, 1]


def _weighted_track(x: np.ndarray, w: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed weight (K,) and the weight-averaged smoothed position (K,) of a position track."""
    ws = blur(w, SMOOTH_S, rate)
    return ws, blur(x * w, SMOOTH_S, rate) / np.maximum(ws, 1e-12)


def position_agreement(audio: np.ndarray, sr: int, video: VideoView) -> dict:
    """{"score", "x_audio", "x_video", "weight"} of one (N, 2) take; the x are the weighted means."""
    n = video.n_frames
    x_est, energy = azimuth_track(audio, sr, video.rate)
    x = np.zeros(n)
    e = np.zeros(n)
    m = min(n, len(x_est))
    x[:m], e[:m] = np.clip(x_est[:m], -X_CLIP, X_CLIP), energy[:m]
    e_s, x_audio = _weighted_track(x, e, video.rate)
    m_s, x_video = _weighted_track(video.centroid.astype(np.float64), video.energy.astype(np.float64), video.rate)
    audible = e >= ENERGY_GATE * e.max() if e.max() > 0 else np.zeros(n, dtype=bool)
    weight = e_s * audible * m_s / (m_s + np.median(m_s) + 1e-9)  # (K,)
    total = float(weight.sum())
    if total <= 0.0:
        return {"score": 0.5, "x_audio": 0.0, "x_video": 0.0, "weight": 0.0}
    agree = np.exp(-((x_audio - x_video) ** 2) / (2.0 * SIGMA_X**2))
    return {
        "score": float(np.clip((agree * weight).sum() / total, 0.0, 1.0)),
        "x_audio": float((x_audio * weight).sum() / total),
        "x_video": float((x_video * weight).sum() / total),
        "weight": total,
    }


class SpatialHead:
    """Agreement of each take's stereo position track with the video's motion centroid."""

    dimension = "spatial"
    name = "stereo-motion agreement"

    def score(self, audio: np.ndarray, sample_rate: int, video: VideoView, cot: Cot) -> tuple[np.ndarray, dict]:
        """(B, N, 2) takes -> (B,) scores in [0, 1] and per-take positions."""
        items = [position_agreement(take, sample_rate, video) for take in as_batch(audio)]
        return np.array([it["score"] for it in items]), {"items": items}
