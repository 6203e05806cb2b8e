"""The temporal reward head: do the audio's onsets and loudness follow what happens in the picture?

PrismAudio rewards temporal alignment with Synchformer's audio-visual sync; this head needs no learned
weights and no ground truth, only the video's own motion (`VideoView`), so it works on real footage:

- **onset agreement**: the cosine between the audio's significant onset strength (SuperFlux above its
  adaptive threshold, `engine.bench.onsets.onset_strength`, max-pooled to the view frames) and the
  picture's visual onsets (the summed rise and fall of the grid cells' motion above the same kind of
  adaptive threshold: something starts or stops moving, a flash, a hand jumping), both smoothed by a
  50 ms Gaussian, at lag 0. Audio shifted by a few hundred milliseconds loses it;
- **envelope agreement**: the Pearson correlation of the audio level (dB per frame) with the log motion
  energy, mapped to [0, 1] as (1 + r) / 2 (0.5 when either is constant): sound swells when motion does
  (a passing car, a flame flaring);
- the two are mixed by how eventful the take and the picture are: ``lam = max(p_audio, p_video)`` with
  ``p = rate / (rate + rate0)`` of onsets per second, ``score = lam * onset + (1 - lam) * envelope``.
  A video without visible events and a take without onsets are judged on the envelope alone; a take
  full of onsets over a still picture, or silent where the picture shows impacts, scores low.
"""

from __future__ import annotations

import numpy as np

from engine.bench.onsets import adaptive_threshold, onset_strength
from engine.cot import Cot
from engine.rewards.protocol import as_batch
from engine.rewards.tracks import blur, cosine, frame_energy, pool_max
from engine.rewards.view import VideoView

BLUR_S = 0.05  # Gaussian smoothing of both onset tracks (tolerance of the alignment)
AUDIO_RATE0 = 0.25  # audio onset mass per second at which the take counts as half eventful
VISUAL_RATE0 = 0.1  # visual onset mass per second at which the picture counts as half eventful
SKIP_S = 0.1  # the first frames see the start of the clip (frame 0 has no motion), not an event
LEVEL_FLOOR_DB = -70.0  # audio frames are floored here before the envelope correlation


def visual_onsets(video: VideoView) -> np.ndarray:
    """(K,) visual onset strength: the cells' summed motion rise and fall above its adaptive threshold."""
    change = video.changes.sum(axis=1).astype(np.float64)  # (K,)
    strength = np.maximum(change - adaptive_threshold(change, video.rate, delta=0.0), 0.0)
    strength[: int(np.ceil(SKIP_S * video.rate))] = 0.0
    return strength


def envelope_agreement(audio: np.ndarray, sr: int, video: VideoView) -> float:
    """(1 + r) / 2 of the Pearson correlation between the audio level (dB) and the log motion energy per frame."""
    energy = frame_energy(audio, sr, video.rate, video.n_frames)
    level = 10.0 * np.log10(np.maximum(energy, 10.0 ** (LEVEL_FLOOR_DB / 10.0)))
    motion = np.log(video.energy.astype(np.float64) + 1e-3)
    if level.std() < 1e-9 or motion.std() < 1e-9:
        return 0.5
    return float(np.clip((1.0 + np.corrcoef(level, motion)[0, 1]) / 2.0, 0.0, 1.0))


class TemporalHead:
    """Onset and envelope agreement of each take with the video's motion (see the module docstring)."""

    dimension = "temporal"
    name = "onset-motion agreement"

    def score(self, audio: np.ndarray, sample_rate: int, video: VideoView, cot: Cot) -> tuple[np.ndarray, dict]:
        """(B, N, 2) takes -> (B,) scores in [0, 1] and per-take diagnostics."""
        takes = as_batch(audio)
        seen = blur(visual_onsets(video), BLUR_S, video.rate)  # (K,), the same for every take
        visual_rate = float(seen.sum()) / video.duration
        p_video = visual_rate / (visual_rate + VISUAL_RATE0)
        scores, items = [], []
        for take in takes:
            strength, rate = onset_strength(take, sample_rate)
            heard = blur(pool_max(strength, rate, video.rate, video.n_frames), BLUR_S, video.rate)  # (K,)
            audio_rate = float(heard.sum()) / video.duration
            p_audio = audio_rate / (audio_rate + AUDIO_RATE0)
            onset, envelope = cosine(heard, seen), envelope_agreement(take, sample_rate, video)
            lam = max(p_audio, p_video)
            scores.append(float(np.clip(lam * onset + (1.0 - lam) * envelope, 0.0, 1.0)))
            items.append({"onset": onset, "envelope": envelope, "eventful": lam})
            items[-1] |= {"audio_onsets_per_s": audio_rate, "visual_onsets_per_s": visual_rate}
        return np.array(scores), {"items": items}
