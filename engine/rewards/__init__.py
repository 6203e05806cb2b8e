"""Reward heads: one score in [0, 1] per perceptual dimension (semantic, temporal, aesthetic, spatial)
for a take against its video and CoT, and their weighted total (DESIGN "Reward heads").

The same heads score takes in the studio, rerank best-of-N candidates (`engine.best_of_n`) and drive RL
(`trainer.grpo.learn`). Modules: ``protocol`` (the head protocol, dimensions, default weights), ``video`` (what
the heads see of a video, computed once), ``tracks`` (audio on the video's frame grid), one module per
default head (``semantic``, ``temporal``, ``aesthetic``, ``spatial``: offline, CPU, our own models),
``heads`` (a set of heads and the default set), ``weights`` (user weights and the weighted total).

Adapters of published reward models behind the same protocol, loaded only when asked for (weights from a
local folder or, on request, through huggingface-hub; safetensors only): ``clap`` (LAION-CLAP through
transformers' ClapModel, semantic) and ``audiobox`` (Meta's Audiobox Aesthetics from the
``audiobox-aesthetics`` package, aesthetic); ``resample`` prepares their mono input. Synchformer (the
papers' temporal reward) and StereoCRW (their spatial metric) have no package on the package index, so
there is no adapter for them; the default temporal and spatial heads stand in.

    from engine.rewards import load_reward_heads, weighted_total, DEFAULT_WEIGHTS
    scores, info = load_reward_heads().score_take(audio, 44100, "clip.mp4", cot)
    total = weighted_total(scores, DEFAULT_WEIGHTS)
"""

from engine.rewards.heads import RewardHeads, as_view, default_heads, load_reward_heads
from engine.rewards.protocol import DEFAULT_WEIGHTS, DIMENSIONS, RewardHead
from engine.rewards.view import VideoView, view_of_file, view_of_prepared
from engine.rewards.weighting import check_weights, parse_weights, weighted_total

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
