"""What the reward heads see of a video, computed once per video and shared by all its takes.

The view is the motion features of `engine.motion` (per-cell motion energy, its rise and fall, the global
energy and the horizontal centroid of the motion) at a fixed frame rate. It is the same array the render
pipeline gives the generator (`PreparedVideo.sync`), so `view_of_prepared` costs nothing, and
`view_of_file` computes it the same way (frames letterboxed to ``VIEW_SIZE`` px, features at the codec's
latent rate): a take scores the same whichever way its video came in.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import UserInputError
from engine.motion import GRID, SYNC_DIM, motion_features
from engine.video_io import SHARED_SIZE, decoded_frames

VIEW_SAMPLE_RATE = 44100  # with VIEW_HOP: the frame rate of views read from files (the default codec's latent rate)
VIEW_HOP = 2048  # audio samples per view frame (the default codec's hop)
VIEW_SIZE = SHARED_SIZE  # frames are letterboxed to this square before the motion features (as the encoder's)
_CELLS = GRID * GRID


@dataclass(frozen=True, eq=False)
class VideoView:
    """Motion of a video over time; ``motion`` is read-only (views are cached and shared)."""

    duration: float  # seconds of picture
    rate: float  # frames per second of ``motion``; frame k covers [k / rate, (k + 1) / rate)
    motion: np.ndarray  # (K, SYNC_DIM) float32 `engine.motion` features

    def __post_init__(self) -> None:
        if self.motion.ndim != 2 or self.motion.shape[1] != SYNC_DIM or len(self.motion) == 0:
            raise ValueError(f"motion must be (K > 0, {SYNC_DIM}), got {self.motion.shape=}")

    @property
    def n_frames(self) -> int:
        """K, the number of view frames."""
        return self.motion.shape[0]

    @property
    def cells(self) -> np.ndarray:
        """(K, GRID * GRID) mean absolute frame difference per grid cell (x10)."""
        return self.motion[:, :_CELLS]

    @property
    def changes(self) -> np.ndarray:
        """(K, GRID * GRID) rectified rise plus fall of each cell's motion: where motion starts or stops."""
        return self.motion[:, _CELLS : 2 * _CELLS] + self.motion[:, 2 * _CELLS : 3 * _CELLS]

    @property
    def energy(self) -> np.ndarray:
        """(K,) global motion energy (mean absolute frame difference x10)."""
        return self.motion[:, -2]

    @property
    def centroid(self) -> np.ndarray:
        """(K,) horizontal centroid of the motion, -1 left edge .. +1 right edge (0 without motion)."""
        return self.motion[:, -1]


def view_of_prepared(prepared) -> VideoView:
    """The view of an `engine.pipeline.PreparedVideo` (its motion features, no decoding): the first SYNC_DIM
    columns of its sync features (a model with planner cues appends them after the motion, `engine.sync`)."""
    return VideoView(prepared.duration, prepared.sample_rate / prepared.hop, prepared.sync[:, :SYNC_DIM])


def view_of_file(path: str | os.PathLike) -> VideoView:
    """Decode ``path`` and compute its view (cached per file version); `UserInputError` for bad files."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"video not found: {p}")
    st = p.stat()
    return _view_cached(str(p.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _view_cached(path: str, mtime_ns: int, size_bytes: int) -> VideoView:
    """`view_of_file` behind the cache, exactly as `engine.pipeline.prepare_video` computes ``sync``."""
    t, frames, info = decoded_frames(path, VIEW_SIZE)  # the decode the planner and the prepared video share
    n_samples = round(info.duration * VIEW_SAMPLE_RATE)
    if n_samples < 1:
        raise UserInputError(f"{Path(path).name} has zero length (duration {info.duration:.3f} s)")
    motion = motion_features(frames, t, VIEW_SAMPLE_RATE / VIEW_HOP, -(-n_samples // VIEW_HOP))
    motion.flags.writeable = False
    return VideoView(info.duration, VIEW_SAMPLE_RATE / VIEW_HOP, motion)
