"""A set of reward heads, one per dimension, scoring takes of one video at once; and the default set.

`RewardHeads.score_batch` computes the video side once (`VideoView`) and hands all takes to every head
(best-of-N, RL groups); `score_take` is the one-take form the studio and ``launch.py score`` use.
`load_reward_heads` builds the four offline default heads once per process (they are stateless, so
any number of threads may score with them at once).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from engine.bench.metric_nets import ASSETS, load_metric_models
from engine.cot import Cot, validate_cot
from engine.rewards.protocol import DIMENSIONS, RewardHead, as_batch, check_scores
from engine.rewards.view import VideoView, view_of_file, view_of_prepared

Video = VideoView | str | os.PathLike  # or an engine.pipeline.PreparedVideo


def as_view(video) -> VideoView:
    """A `VideoView` from a view, a `PreparedVideo` (no decoding) or a video file path."""
    if isinstance(video, VideoView):
        return video
    if isinstance(video, (str, os.PathLike)):
        return view_of_file(Path(video))
    if hasattr(video, "sync") and hasattr(video, "hop"):
        return view_of_prepared(video)
    raise TypeError(f"expected a VideoView, a PreparedVideo or a path, got {type(video).__name__}")


class RewardHeads:
    """One head per dimension (any subset of `DIMENSIONS`, each at most once), scored together."""

    def __init__(self, heads: Iterable[RewardHead]) -> None:
        self.heads: dict[str, RewardHead] = {}
        for head in heads:
            if head.dimension not in DIMENSIONS or head.dimension in self.heads:
                raise ValueError(f"need at most one head per dimension of {DIMENSIONS}, got {head.dimension!r} again")
            self.heads[head.dimension] = head
        if not self.heads:
            raise ValueError("a reward set needs at least one head")

    @property
    def dimensions(self) -> tuple[str, ...]:
        """The dimensions scored, in CoT order."""
        return tuple(d for d in DIMENSIONS if d in self.heads)

    def with_head(self, head: RewardHead) -> RewardHeads:
        """A new set with ``head`` in place of the head of its dimension (e.g. a CLAP adapter)."""
        return RewardHeads([h for d, h in self.heads.items() if d != head.dimension] + [head])

    def score_batch(
        self, audio: np.ndarray, sample_rate: int, video: Video, cot: Cot | dict
    ) -> tuple[list[dict[str, float]], dict]:
        """Takes (B, N, 2) float32 of one video -> per take {dimension: score in [0, 1]} and info
        ``{dimension: {"head": name, "items": [per-take diagnostics], ...}}``."""
        takes, view, cot = as_batch(audio), as_view(video), validate_cot(cot)
        per_dim, info = {}, {}
        for dim in self.dimensions:
            head = self.heads[dim]
            scores, head_info = head.score(takes, sample_rate, view, cot)
            per_dim[dim] = check_scores(scores, head.name)
            info[dim] = {"head": head.name, **head_info}
        scores = [{d: float(per_dim[d][i]) for d in self.dimensions} for i in range(len(takes))]
        return scores, info

    def score_take(
        self, audio: np.ndarray, sample_rate: int, video: Video, cot: Cot | dict
    ) -> tuple[dict[str, float], dict]:
        """One take (N, 2) -> ({dimension: score in [0, 1]}, {dimension: {"head", diagnostics...}})."""
        a = np.asarray(audio)
        if a.ndim != 2:
            raise ValueError(f"score_take wants one take (N, 2), got {a.shape=}; use score_batch for several")
        scores, info = self.score_batch(a[None], sample_rate, video, cot)
        flat = {}
        for dim, head_info in info.items():
            extra = {k: v for k, v in head_info.items() if k != "items"}
            flat[dim] = extra | head_info["items"][0]
        return scores[0], flat


_LOCK = threading.Lock()
_DEFAULT: RewardHeads | None = None


def default_heads(folder: Path | None = None) -> RewardHeads:
    """A fresh set of the four offline heads from the FoleyBench metric models in ``folder``
    (default ``assets/bench``)."""
    from engine.rewards.aesthetic import AestheticHead
    from engine.rewards.semantic import SemanticHead
    from engine.rewards.spatial import SpatialHead
    from engine.rewards.temporal import TemporalHead

    models = load_metric_models(folder or ASSETS)
    return RewardHeads([SemanticHead(models.contrastive), TemporalHead(), AestheticHead(models.quality), SpatialHead()])


def load_reward_heads() -> RewardHeads:
    """The offline default heads, loaded once per process (thread-safe; shared, never mutated)."""
    global _DEFAULT
    with _LOCK:
        if _DEFAULT is None:
            _DEFAULT = default_heads()
        return _DEFAULT
