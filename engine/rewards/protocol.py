"""The reward-head protocol (DESIGN "Reward heads"): one dimension, ``score(audio, sample_rate, video, cot)
-> (per-item scores in [0, 1], info)``, higher is better.

A head scores a batch of takes of ONE video (best-of-N, an RL group) against that video and its CoT:
``audio`` is (B, N, 2) float32 at ``sample_rate``; ``video`` is the `VideoView` computed once for the
video; the result is a (B,) float array of scores in [0, 1] and an info dict whose ``"items"`` entry
holds one dict of diagnostics per take (the raw quantities the score came from). Heads hold no
per-request state: one instance may score from several threads at once.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from engine.cot import Cot
from engine.rewards.view import VideoView

DIMENSIONS: tuple[str, ...] = ("semantic", "temporal", "aesthetic", "spatial")  # CoT order
# PrismAudio's reward weights (REFERENCE "Fast-GRPO"): MS-CLAP 1.0, Synchformer 0.6, Audiobox 0.1, ITD 0.4
DEFAULT_WEIGHTS: dict[str, float] = {"semantic": 1.0, "temporal": 0.6, "aesthetic": 0.1, "spatial": 0.4}


@runtime_checkable
class RewardHead(Protocol):
    """A scorer of one perceptual dimension."""

    dimension: str  # one of DIMENSIONS
    name: str  # what it is, shown in info (e.g. "contrastive", "clap:laion/clap-htsat-unfused")

    def score(self, audio: np.ndarray, sample_rate: int, video: VideoView, cot: Cot) -> tuple[np.ndarray, dict]:
        """(B, N, 2) takes of ``video`` -> scores (B,) in [0, 1] and ``{"items": [per-take dict], ...}``."""
        ...


def as_batch(audio: np.ndarray) -> np.ndarray:
    """(B, N, 2) float32 from (B, N, 2) or one take (N, 2); ValueError for anything else or non-finite samples."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[2] != 2 or a.shape[1] == 0 or a.shape[0] == 0:
        raise ValueError(f"expected stereo takes (B, N, 2) or (N, 2) with N > 0, got {a.shape=}")
    if not np.isfinite(a).all():
        raise ValueError("audio holds NaN or infinite samples")
    return a


def check_scores(scores: np.ndarray, head: str) -> np.ndarray:
    """A head's (B,) scores as float64, checked to lie in [0, 1] (a head that breaks this is a bug)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or not np.all((s >= 0.0) & (s <= 1.0)):
        raise AssertionError(f"reward head {head} returned scores outside [0, 1]: {s}")
    return s
