"""A video decoded once: the exact duration, the frames a video encoder sees and the sync features.

`decode_prepared` is what the shipped bundle's `ModelBundle.prepare` runs (`engine.family`): the file is
decoded once at its native rate (`engine.video_io.decoded_frames`, shared with the planner and the reward
view), the encoder frames are resampled to a fixed rate by timestamps, and the motion (and planner cue)
features are computed at the codec's latent rate (`engine.sync`). The result is cached per file version
(path, mtime, size) and per model geometry, never mutated, and shared by plan, render, scoring and training.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import UserInputError
from engine.planner.network import PlannerNet
from engine.sync import sync_features
from engine.video_io import VideoInfo, decoded_frames, resample_indices


@dataclass(frozen=True, eq=False)
class PreparedVideo:
    """What a render needs from a video; arrays are read-only (the object is cached and shared)."""

    info: VideoInfo  # facts of the source file
    duration: float  # seconds of picture; every output matches it
    sample_rate: int  # audio samples per second the features were prepared for
    n_samples: int  # N = round(duration * sample_rate): the exact length of the audio to render
    frames: np.ndarray  # (F, S, S, 3) uint8 for the video encoder, frame k shows k / frame_rate
    frame_rate: float  # frames per second of ``frames``
    sync: np.ndarray  # (T, Ds) float32 sync features at the latent rate (engine.sync), T = ceil(N / hop)
    hop: int  # audio samples per latent frame

    @property
    def n_latent(self) -> int:
        """T: latent frames covering the whole video."""
        return self.sync.shape[0]


def frame_span(start: int, length: int, latent_rate: float, rate: float, n: int) -> tuple[int, int]:
    """Encoder frames [i0, i1) (of ``n`` at ``rate`` fps) shown during latent frames [start, start + length)
    (``latent_rate`` frames/s): the frame showing when the window starts up to the last one shown in it."""
    i0 = min(math.floor(start / latent_rate * rate + 1e-9), n - 1)
    i1 = max(min(math.ceil((start + length) / latent_rate * rate - 1e-9), n), i0 + 1)
    return i0, i1


def decode_prepared(
    path: str | Path, *, rate: float, size: int, sample_rate: int, hop: int, planner: PlannerNet | None
) -> PreparedVideo:
    """Decode ``path`` once into a `PreparedVideo`: encoder frames at ``rate`` fps, ``size`` px square, and
    the sync features (motion, plus ``planner``'s cues when given) at ``sample_rate / hop`` frames/s.

    Cached per file version; raises `UserInputError` for a missing, unreadable, video-less or zero-length file.
    """
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"video not found: {p}")
    st = p.stat()
    return _decode_cached(str(p.resolve()), st.st_mtime_ns, st.st_size, rate, size, sample_rate, hop, planner)


def clear_prepared_cache() -> None:
    """Forget every decoded video (the render-speed benchmark times cold decodes)."""
    _decode_cached.cache_clear()


@functools.lru_cache(maxsize=8)
def _decode_cached(
    path: str,
    mtime_ns: int,
    size_bytes: int,
    rate: float,
    size: int,
    sample_rate: int,
    hop: int,
    planner: PlannerNet | None,
) -> PreparedVideo:
    """`decode_prepared` behind the cache; mtime and size in the key make an edited file decode again (the
    planner, shared read-only by its bundle, keys by identity)."""
    t, native, info = decoded_frames(path, size)  # (N_src,) s, (N_src, S, S, 3): native-rate frames, letterboxed
    n_samples = round(info.duration * sample_rate)
    if n_samples < 1:
        raise UserInputError(f"{Path(path).name} has zero length (duration {info.duration:.3f} s)")
    frames = native[resample_indices(t, info.duration, rate)]  # (F, S, S, 3) at ``rate``
    # motion at the native rate and the planner's cues at its rate, both resampled to the latent frames
    # (the reference's sync features are 24 fps Synchformer features)
    if planner is not None and planner.config.size != size:
        raise ValueError(f"planner frames ({planner.config.size} px) must match the video encoder's ({size} px)")
    sync = sync_features(native, t, info.duration, sample_rate / hop, -(-n_samples // hop), planner)  # (T, Ds)
    frames.flags.writeable = False
    sync.flags.writeable = False
    return PreparedVideo(info, info.duration, sample_rate, n_samples, frames, rate, sync, hop)
