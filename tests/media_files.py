"""Writing test videos the way cameras, phones and editors do: other containers, codecs, frame rates,
channel layouts, sizes, rotations and variable frame timing (PyAV, nothing downloaded)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


def moving_square(n: int, height: int, width: int) -> np.ndarray:
    """(n, H, W, 3) uint8: a bright square crossing a grey picture from left to right."""
    frames = np.full((n, height, width, 3), 60, dtype=np.uint8)
    side = max(2, min(height, width) // 4)
    for k in range(n):
        x = int((width - side) * k / max(n - 1, 1))
        frames[k, (height - side) // 2 : (height + side) // 2, x : x + side] = 230
    return frames


def write_video(
    path: Path,
    *,
    fmt: str,
    vcodec: str,
    fps: float = 24.0,
    seconds: float = 2.0,
    size: tuple[int, int] = (96, 64),
    acodec: str | None = None,
    channels: int = 2,
    sample_rate: int = 44100,
    rotate: int | None = None,
    frame_times: np.ndarray | None = None,
) -> np.ndarray:
    """Write a test video; returns its (N, channels) float32 audio (or an empty array without audio).

    size: (width, height). frame_times: per-frame timestamps in seconds for variable-rate files (written
    with a millisecond time base); otherwise frames are ``1 / fps`` apart. rotate: the "rotate" tag of
    the video stream (players turn the picture by it).
    """
    width, height = size
    times = frame_times if frame_times is not None else np.arange(int(round(seconds * fps))) / fps
    frames = moving_square(len(times), height, width)
    rng = np.random.default_rng(0)
    n_audio = int(round((times[-1] + 1.0 / fps) * sample_rate))
    audio = (0.2 * rng.standard_normal((n_audio, channels))).astype(np.float32)
    with av.open(str(path), mode="w", format=fmt) as container:
        rate = Fraction(fps).limit_denominator(1001)
        vs = container.add_stream(vcodec, rate=rate)
        vs.width, vs.height = width, height
        vs.pix_fmt = "yuv420p"
        tb = Fraction(1, 1000) if frame_times is not None else 1 / rate
        vs.time_base = vs.codec_context.time_base = tb
        if rotate is not None:
            vs.set_display_rotation(rotate)
        astream = None
        if acodec is not None:
            astream = container.add_stream(acodec, rate=sample_rate, layout=LAYOUTS[channels])
        for k, arr in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            frame.pts = int(round(times[k] * 1000)) if frame_times is not None else k
            frame.time_base = tb
            container.mux(vs.encode(frame))
        container.mux(vs.encode(None))
        if astream is not None:
            fmt_name = astream.codec_context.format.name
            step = astream.codec_context.frame_size or 1024
            for start in range(0, n_audio, step):
                chunk = audio[start : start + step].T  # (C, n)
                if chunk.shape[1] < step and astream.codec_context.frame_size:
                    chunk = np.pad(chunk, ((0, 0), (0, step - chunk.shape[1])))
                if fmt_name.endswith("p"):
                    data = np.ascontiguousarray(chunk)
                else:
                    data = np.ascontiguousarray(chunk.T.reshape(1, -1))
                if fmt_name.startswith("s16"):
                    data = (np.clip(data, -1, 1) * 32767).astype(np.int16)
                elif fmt_name.startswith("s32"):
                    data = (np.clip(data, -1, 1) * 2147483647).astype(np.int32)
                aframe = av.AudioFrame.from_ndarray(data, format=fmt_name, layout=LAYOUTS[channels])
                aframe.sample_rate, aframe.pts = sample_rate, start
                container.mux(astream.encode(aframe))
            container.mux(astream.encode(None))
    return audio if acodec is not None else np.zeros((0, channels), np.float32)
