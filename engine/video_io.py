"""Reading user videos: any container and codec FFmpeg knows, any frame rate (constant or variable),
any resolution and rotation, with or without audio of any channel count.

`probe` reads what a file is; `load_video` returns frames resampled to a fixed rate by timestamps
(so the model sees the same rate whatever the source) and the exact duration every output must
match. Bad files raise `UserInputError` with one line that says what is wrong.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np

from engine.errors import UserInputError


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds."""

    path: str
    duration: float  # seconds of picture: end of the last frame minus start of the first
    fps: float  # average frame rate of the source
    width: int  # displayed width (after rotation)
    height: int  # displayed height (after rotation)
    rotation: int  # degrees of the display matrix (0, 90, 180, 270)
    n_frames: int  # decoded frames
    audio_channels: int  # 0 when the file has no audio stream
    audio_rate: int  # sample rate of the audio stream, 0 when none


@dataclass
class VideoClip:
    """Frames at a fixed rate plus the source's facts."""

    frames: np.ndarray  # (F, S, S, 3) uint8, frame k shows time k / rate
    rate: float  # frames per second of ``frames``
    info: VideoInfo


def _open(path: str | Path):
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"video not found: {p}")
    if p.stat().st_size == 0:
        raise UserInputError(f"{p} is empty (0 bytes)")
    try:
        container = av.open(str(p))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise UserInputError(f"{p.name} is not a readable video ({exc.__class__.__name__})") from None
    if not container.streams.video:
        container.close()
        raise UserInputError(f"{p.name} has no video stream")
    return container


def _decode_frames(container, size: int | None):
    """Yield (time in s, frame, array or None) for every decodable frame; stops at a truncated end."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    try:
        for frame in container.decode(stream):
            if frame.pts is None and frame.time is None:
                continue
            t = float(frame.time) if frame.time is not None else float(frame.pts * stream.time_base)
            yield t, frame, (_to_array(frame, size) if size else None)
    except av.error.InvalidDataError:
        return  # a truncated file: keep what decoded


def square_resize(img: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 picture -> (size, size, 3) uint8: letterboxed to a square with black bars (aspect
    kept), then nearest-neighbour resized. The one resize of every frame a model sees, decoded or rendered."""
    h, w = img.shape[:2]
    side = max(h, w)
    canvas = np.zeros((side, side, 3), dtype=np.uint8)
    canvas[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = img
    idx = (np.arange(size) * side / size + side / (2 * size)).astype(int)
    return canvas[idx][:, idx]


def _to_array(frame, size: int) -> np.ndarray:
    """Square (size, size, 3) uint8 of the displayed picture (rotation applied, aspect kept by padding)."""
    # threads=1: swscale's default slice threading costs ~7 ms a frame in set-up, 150x the conversion
    img = frame.reformat(format="rgb24", threads=1).to_ndarray()  # (H, W, 3)
    rot = int(getattr(frame, "rotation", 0) or 0) % 360
    if rot:
        img = np.rot90(img, k=rot // 90)
    return square_resize(img, size)


def resample_indices(times: np.ndarray, duration: float, rate: float) -> np.ndarray:
    """Index of the source frame showing at each instant ``k / rate`` (k = 0 .. F - 1, F = ceil(duration *
    rate)): the last frame whose timestamp (s, from the first frame) is not after it; shape (F,) int."""
    t = np.asarray(times, dtype=np.float64)
    t = t - t[0]
    n_out = max(1, int(np.ceil(duration * rate - 1e-6)))
    want = np.arange(n_out) / rate
    return np.clip(np.searchsorted(t, want + 1e-6, side="right") - 1, 0, len(t) - 1)


def scan_frames(path: str | Path, size: int | None) -> tuple[list[float], list[np.ndarray], VideoInfo]:
    container = _open(path)
    try:
        stream = container.streams.video[0]
        times, arrays, first, last_dt = [], [], None, None
        for t, frame, arr in _decode_frames(container, size):
            if first is None:
                first = frame
            if times:
                last_dt = t - times[-1] if t > times[-1] else last_dt
            times.append(t)
            if arr is not None:
                arrays.append(arr)
        if not times:
            raise UserInputError(f"{Path(path).name} has a video stream but no decodable frames")
        rate = float(stream.average_rate or stream.guessed_rate or 0) or (1.0 / last_dt if last_dt else 25.0)
        frame_dur = 1.0 / rate if rate > 0 else (last_dt or 0.04)
        duration = times[-1] - times[0] + frame_dur
        rot = int(getattr(first, "rotation", 0) or 0) % 360
        w, h = (first.height, first.width) if rot in (90, 270) else (first.width, first.height)
        audio = container.streams.audio[0] if container.streams.audio else None
        info = VideoInfo(
            str(path),
            duration,
            rate,
            w,
            h,
            rot,
            len(times),
            audio.codec_context.channels if audio else 0,
            audio.codec_context.sample_rate if audio else 0,
        )
        return times, arrays, info
    finally:
        container.close()


SHARED_SIZE = 64  # px: the frames the shipped bundle's video encoder, its planners and the reward view all read
_DECODED: OrderedDict = OrderedDict()  # file identity + size -> (times, frames, info), the newest last
_DECODED_KEEP = 2  # decoded files kept (a 10-minute 30 fps clip at 64 px is about 220 MB)
_DECODED_LOCK = threading.Lock()


def decoded_frames(path: str | Path, size: int) -> tuple[np.ndarray, np.ndarray, VideoInfo]:
    """(times (N,) float64 s, frames (N, size, size, 3) uint8, info) of every frame at its native time,
    letterboxed to ``size`` px: decoded once per file version and size, and shared (read-only) by the
    studio's import, the planner, the model's prepared video and the reward heads' view, so a clip is
    decoded once for all of them. A file is known by its device, inode, mtime and size, so a file moved
    into place by a rename (a staged import) is still the same file, and an edited one decodes again."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"video not found: {p}")
    st = p.stat()
    key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size, size)
    with _DECODED_LOCK:
        hit = _DECODED.get(key)
        if hit is not None:
            _DECODED.move_to_end(key)
    if hit is None:
        times, arrays, info = scan_frames(p, size)
        if not arrays:
            raise UserInputError(f"{p.name} has a video stream but no decodable frames")
        t, frames = np.asarray(times, dtype=np.float64), np.stack(arrays)
        t.flags.writeable = frames.flags.writeable = False
        hit = (t, frames, info)
        with _DECODED_LOCK:
            _DECODED[key] = hit
            while len(_DECODED) > _DECODED_KEEP:
                _DECODED.popitem(last=False)
    t, frames, info = hit
    return t, frames, replace(info, path=str(path))


def probe(path: str | Path) -> VideoInfo:
    """Facts about a video file (decodes it once; raises `UserInputError` for bad files)."""
    return scan_frames(path, None)[2]


def load_video(path: str | Path, rate: float = 8.0, size: int = 64) -> VideoClip:
    """Frames resampled to ``rate`` per second by timestamp (the frame showing at each instant), as
    (F, size, size, 3) uint8 with F = ceil(duration * rate)."""
    times, frames, info = decoded_frames(path, size)
    return VideoClip(frames[resample_indices(times, info.duration, rate)], rate, info)


def load_audio_track(path: str | Path, sample_rate: int = 44100) -> np.ndarray | None:
    """The file's audio as (N, 2) float32 at ``sample_rate`` (mono duplicated, more channels downmixed),
    or None when it has no audio stream."""
    container = _open(path)
    try:
        if not container.streams.audio:
            return None
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=sample_rate)
        chunks = []
        try:
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
        except av.error.InvalidDataError:
            pass
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
        if not chunks:
            return None
        return np.concatenate(chunks, axis=1).T.astype(np.float32)
    finally:
        container.close()
