"""Reward heads: one score in [0, 1] per perceptual dimension (semantic, temporal, aesthetic, spatial)
for a take against its video and CoT, and their weighted total (DESIGN "Reward heads").

The same heads score takes in the studio, rerank best-of-N candidates (`engine.best_of_n`) and drive RL
(`trainer.grpo`). Modules: ``protocol`` (the head protocol, dimensions, default weights), ``video`` (what
the heads see of a video, computed once), ``tracks`` (audio on the video's frame grid), one module per
default head (``semantic``, ``temporal``, ``aesthetic``, ``spatial``: offline, CPU, our own models),
``heads`` (a set of heads and the default set), ``weights`` (user weights and the weighted total), and
``adapters`` (published reward models behind the same protocol, loaded only when asked for).

    from engine.rewards import load_reward_heads, weighted_total, DEFAULT_WEIGHTS
    scores, info = load_reward_heads().score_take(audio, 44100, "clip.mp4", cot)
    total = weighted_total(scores, DEFAULT_WEIGHTS)
"""

from .heads import RewardHeads, as_view, default_heads, load_reward_heads
from .protocol import DEFAULT_WEIGHTS, DIMENSIONS, RewardHead
from .video import VideoView, view_of_file, view_of_prepared
from .weights import check_weights, parse_weights, weighted_total

__all__ = [
    "DEFAULT_WEIGHTS",
    "DIMENSIONS",
    "RewardHead",
    "RewardHeads",
    "VideoView",
    "as_view",
    "check_weights",
    "default_heads",
    "load_reward_heads",
    "parse_weights",
    "view_of_file",
    "view_of_prepared",
    "weighted_total",
]
