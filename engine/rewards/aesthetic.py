"""The aesthetic reward head: the learned quality predictor times signal sanity.

PrismAudio rewards aesthetics with Audiobox Aesthetics (production quality); this head uses the shipped
FoleyBench quality predictor (``assets/bench/quality.safetensors``, trained to tell clean renders from
ones degraded by noise, hum, clipping, band limiting and smearing; probability of "clean" in [0, 1])
and multiplies it by four signal-sanity factors in [0, 1] (`engine.bench.signal`), each 1 for a
normal take and falling for a defect:

- clipping: ``1 / (1 + rate / 0.002)`` of the fraction of samples at full scale (0.2 % clipped halves it);
- silence: 1 while at most half of the 50 ms frames are below -60 dBFS, then linear to 0 when all are
  (sparse events are allowed their pauses; a silent take scores 0);
- DC: ``exp(-|dc| / 0.02)`` of the largest per-channel mean;
- loudness: 1 inside [-40, -12] LUFS, ``exp(-(d / 10)^2)`` at d LU outside (0 for silence).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from engine.bench.mel import log_mel
from engine.bench.metric_nets import AudioNet
from engine.bench.signal import clipping_rate, dc_offset, loudness_lufs, silence_fraction
from engine.cot import Cot
from engine.rewards.protocol import as_batch
from engine.rewards.view import VideoView

CLIP_HALF = 0.002  # fraction of clipped samples at which the clipping factor is 1/2
SILENCE_FREE = 0.5  # fraction of silent frames allowed before the silence factor falls
DC_SCALE = 0.02  # DC offset (full scale 1) at which the DC factor is 1/e
LOUDNESS_RANGE = (-40.0, -12.0)  # LUFS with no loudness penalty
LOUDNESS_SCALE = 10.0  # LU outside the range at which the loudness factor is 1/e


def sanity(audio: np.ndarray, sr: int) -> dict[str, float]:
    """The four sanity factors of one (N, 2) take, their product ``"sanity"`` and the raw measurements."""
    clip, silent, dc = clipping_rate(audio), silence_fraction(audio, sr), dc_offset(audio)
    lufs = loudness_lufs(audio, sr)
    lo, hi = LOUDNESS_RANGE
    dist = max(lo - lufs, lufs - hi, 0.0) if math.isfinite(lufs) else math.inf
    factors = {
        "clipping": 1.0 / (1.0 + clip / CLIP_HALF),
        "silence": float(np.clip((1.0 - silent) / (1.0 - SILENCE_FREE), 0.0, 1.0)),
        "dc": math.exp(-dc / DC_SCALE),
        "loudness": math.exp(-((dist / LOUDNESS_SCALE) ** 2)) if math.isfinite(dist) else 0.0,
    }
    raw = {"clip_rate": clip, "silent_fraction": silent, "dc_offset": dc, "lufs": lufs}
    return factors | {"sanity": math.prod(factors.values())} | raw


class AestheticHead:
    """Quality predictor x signal sanity (see the module docstring)."""

    dimension = "aesthetic"
    name = "quality predictor x signal sanity"

    def __init__(self, quality: AudioNet) -> None:
        self.quality = quality.eval()  # FoleyBench quality predictor: log-mel -> logit of "clean"

    @torch.no_grad()
    def predict(self, takes: np.ndarray, sr: int) -> np.ndarray:
        """(B, N, 2) -> (B,) predicted probability that each take is a clean render."""
        mel = torch.from_numpy(np.stack([log_mel(t, sr) for t in takes]))  # (B, N_MELS, T)
        return torch.sigmoid(self.quality(mel)[1][:, 0]).double().numpy()

    def score(self, audio: np.ndarray, sample_rate: int, video: VideoView, cot: Cot) -> tuple[np.ndarray, dict]:
        """(B, N, 2) takes -> (B,) scores in [0, 1]; the video and CoT are not used."""
        takes = as_batch(audio)
        quality = self.predict(takes, sample_rate)
        items = [{"quality": float(q)} | sanity(t, sample_rate) for q, t in zip(quality, takes)]
        scores = np.array([float(np.clip(it["quality"] * it["sanity"], 0.0, 1.0)) for it in items])
        return scores, {"items": items}
