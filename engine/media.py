"""Media files of the studio: H.264/AAC MP4, WAV and FLAC, written atomically.

Every writer encodes into a hidden temporary file next to the target and renames it into place
(`engine.atomic.atomic_path`), so a reader never sees half a file and a failed write leaves nothing
behind. Inputs are checked at this boundary; a bad array raises `ValueError` saying what was expected
and what arrived.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from engine.atomic import atomic_path
from engine.errors import UserInputError

AUDIO_CHUNK = 1 << 14  # samples per AudioFrame handed to the AAC encoder (it re-chunks to 1024)
# visually lossless for flat synthetic frames, fast; without the macroblock tree (whose lookahead gives
# different bits from one encode of the same frames to the next) so a FoleyWorld clip is the same every time
X264_OPTIONS = {"crf": "18", "preset": "veryfast", "x264-params": "mbtree=0"}


def _check_frames(frames: np.ndarray) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be a uint8 numpy array (F, H, W, 3), got {type(frames).__name__} "
            f"of dtype {getattr(frames, 'dtype', None)}"
        )
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape[:3]) < 1:
        raise ValueError(f"frames must have shape (F, H, W, 3) with F, H, W >= 1, got {frames.shape=}")


def _check_audio(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Audio as C-contiguous float32 (N, C); mono (N,) becomes (N, 1)."""
    audio = np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[:, None]
    if audio.ndim != 2 or audio.shape[0] < 1 or not 1 <= audio.shape[1] <= 8:
        raise ValueError(f"audio must have shape (N, C) with N >= 1 samples and 1..8 channels, got {audio.shape=}")
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"audio must be floating point in [-1, 1], got {audio.dtype=}")
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples")
    if int(sample_rate) != sample_rate or sample_rate < 1000:
        raise ValueError(f"sample_rate must be a positive integer number of Hz, got {sample_rate=}")
    return np.ascontiguousarray(audio, np.float32)


def _even(frames: np.ndarray) -> np.ndarray:
    """Pad odd heights/widths by one replicated row/column: yuv420p needs even sizes."""
    _, h, w, _ = frames.shape
    if h % 2 == 0 and w % 2 == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _video_stream(container, height: int, width: int, rate: Fraction):
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    stream.time_base = 1 / rate  # one tick per frame: pts = frame index
    stream.options = dict(X264_OPTIONS)
    return stream


def _audio_frames(audio: np.ndarray, sample_rate: int) -> Iterator[tuple[int, av.AudioFrame]]:
    """(end sample, frame) pairs of planar float chunks of (N, C) audio, clipped to [-1, 1]."""
    planar = np.clip(audio.T, -1.0, 1.0)  # (C, N)
    layout = "stereo" if planar.shape[0] == 2 else "mono"
    for start in range(0, planar.shape[1], AUDIO_CHUNK):
        chunk = np.ascontiguousarray(planar[:, start : start + AUDIO_CHUNK])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
        frame.sample_rate, frame.pts = int(sample_rate), start
        yield start + chunk.shape[1], frame


def _encode(container, frames: np.ndarray, rate: Fraction, audio: np.ndarray | None, sample_rate: int) -> None:
    """Encode video and audio interleaved in time order (the muxer need not buffer a whole stream)."""
    vstream = _video_stream(container, frames.shape[1], frames.shape[2], rate)
    astream, chunks, done = None, iter(()), 0
    if audio is not None:
        layout = "stereo" if audio.shape[1] == 2 else "mono"
        astream = container.add_stream("aac", rate=int(sample_rate), layout=layout)
        chunks = _audio_frames(audio, sample_rate)
    for k, arr in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
        frame.pts = k
        container.mux(vstream.encode(frame))
        while astream is not None and done < (k + 1) / rate * sample_rate:
            nxt = next(chunks, None)
            if nxt is None:
                break
            done, aframe = nxt
            container.mux(astream.encode(aframe))
    for _, aframe in chunks:  # audio longer than the video
        container.mux(astream.encode(aframe))
    container.mux(vstream.encode(None))
    if astream is not None:
        container.mux(astream.encode(None))


def write_mp4(
    path: str | os.PathLike, frames: np.ndarray, fps: float, audio: np.ndarray | None = None, sample_rate: int = 44100
) -> None:
    """Write frames (F, H, W, 3) uint8 at ``fps`` (29.97 and the like are exact fractions) and optional
    mono or stereo audio (N, C) float in [-1, 1] at ``sample_rate`` Hz as an H.264 + AAC MP4, atomically.

    Odd sizes are padded by one replicated row/column (yuv420p needs even sizes). Audio is encoded at
    the given rate, not resampled.
    """
    _check_frames(frames)
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps=}")
    if audio is not None:
        audio = _check_audio(audio, sample_rate)
        if audio.shape[1] > 2:
            raise ValueError(f"MP4 audio must be mono or stereo, got {audio.shape[1]} channels; downmix first")
    rate = Fraction(fps).limit_denominator(1001)  # 29.97 -> 2997/100, 30000/1001 stays exact
    with atomic_path(path, ".tmp.mp4", mode=None) as tmp, av.open(tmp, mode="w", format="mp4") as container:
        _encode(container, _even(frames), rate, audio, sample_rate)


def read_video_frames(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Decode every video frame of a file: (F, H, W, 3) uint8 RGB and the stream's frame rate."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        frames = [f.reformat(format="rgb24", threads=1).to_ndarray() for f in container.decode(stream)]
    if not frames:
        raise ValueError(f"{path} has a video stream without frames")
    return np.stack(frames), float(rate)


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_24") -> None:
    """Write audio (N, C) (or mono (N,)) float in [-1, 1] as a WAV file, atomically.

    ``subtype`` is a soundfile subtype: PCM_16, PCM_24, FLOAT...; PCM subtypes clip at full scale.
    """
    audio = _check_audio(audio, sample_rate)
    if subtype not in sf.available_subtypes("WAV"):
        raise ValueError(f"unknown WAV subtype {subtype!r}; use one of {sorted(sf.available_subtypes('WAV'))}")
    with atomic_path(path, ".tmp.wav", mode=None) as tmp:
        sf.write(tmp, audio, int(sample_rate), subtype=subtype, format="WAV")


def write_pcm(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, fmt: str = "WAV", bits: int = 24) -> None:
    """Write audio (N, C) float in [-1, 1] as 16- or 24-bit integer PCM in a WAV or FLAC file, atomically.

    Samples are rounded to the nearest step of 2^-(bits-1) and clipped to full scale here, and the
    integers are handed to libsndfile as they are, so the WAV and the FLAC of one take hold identical
    samples (libsndfile's own float conversion differs between the two formats by one step).
    """
    audio = _check_audio(audio, sample_rate)
    if fmt not in ("WAV", "FLAC") or bits not in (16, 24):
        raise ValueError(f"write_pcm writes 16- or 24-bit WAV or FLAC, got {fmt=} {bits=}")
    full = 2 ** (bits - 1)
    ints = np.clip(np.rint(audio.astype(np.float64) * full), -full, full - 1).astype(np.int32) << (32 - bits)
    with atomic_path(path, f".tmp.{fmt.lower()}", mode=None) as tmp:
        sf.write(tmp, ints, int(sample_rate), subtype=f"PCM_{bits}", format=fmt)


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a WAV (or any soundfile format): audio (N, C) float32 and its sample rate."""
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return audio, int(sr)


def mux_audio(video: str | os.PathLike, audio: np.ndarray, sample_rate: int, out: str | os.PathLike) -> None:
    """Write ``out`` (MP4, atomically): the first video stream of ``video`` copied packet for packet (not
    re-encoded) and ``audio`` (N, 2) float in [-1, 1] encoded as AAC. The source's own audio is left out.

    Raises `UserInputError` when the video stream cannot be stored in MP4 as it is.
    """
    audio = _check_audio(audio, sample_rate)
    try:
        with (
            atomic_path(out, ".tmp.mp4", mode=None) as tmp,
            av.open(str(video)) as src,
            av.open(tmp, mode="w", format="mp4") as dst,
        ):
            vin = src.streams.video[0]
            vout = dst.add_stream_from_template(vin)
            astream = dst.add_stream("aac", rate=int(sample_rate), layout="stereo" if audio.shape[1] == 2 else "mono")
            packets = [p for _, frame in _audio_frames(audio, sample_rate) for p in astream.encode(frame)]
            packets += astream.encode(None)
            _interleave(dst, _with_dts(src.demux(vin), vin), vout, packets)
    except av.error.FFmpegError as exc:
        raise UserInputError(f"cannot copy the video stream of {Path(video).name} into an MP4 ({exc})") from None


def _with_dts(packets, vin) -> Iterator[av.Packet]:
    """The demuxed packets of stream ``vin`` without the flush packet and with a decode time stamp on
    every packet: Matroska (and some other containers) store none for the packets before the first
    reordered frame, and the MP4 muxer needs one on every packet. Missing stamps are counted back from
    the first known one (or on from the last) in steps of one frame, which keeps them increasing and
    below the presentation stamps; a stream with none at all gets its presentation stamps."""
    rate = vin.average_rate or vin.guessed_rate or 25
    frame = max(1, round(1 / (rate * vin.time_base)))  # one frame in time-base ticks
    held, last = [], None
    for packet in packets:
        if not packet.size:  # the demuxer's flush packet
            continue
        if packet.dts is None:
            if last is None:
                held.append(packet)
                continue
            packet.dts = last + (packet.duration or frame)
        for k, early in enumerate(held):
            early.dts = packet.dts - (len(held) - k) * frame
            yield early
        held, last = [], packet.dts
        yield packet
    for early in held:
        early.dts = early.pts
        yield early


def _interleave(dst, video_packets, vout, audio_packets: list) -> None:
    """Mux the copied video packets (all with a dts, `_with_dts`) and the encoded audio packets in time order."""
    pending = iter(audio_packets)
    nxt = next(pending, None)
    for packet in video_packets:
        t = packet.dts * packet.time_base
        while nxt is not None and nxt.pts * nxt.time_base <= t:
            dst.mux(nxt)
            nxt = next(pending, None)
        packet.stream = vout
        dst.mux(packet)
    while nxt is not None:
        dst.mux(nxt)
        nxt = next(pending, None)
