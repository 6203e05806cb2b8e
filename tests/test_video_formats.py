"""Real-world video files: other containers and codecs, odd frame rates, variable frame timing, mono and
5.1 audio, portrait and rotated pictures, tiny and full-HD sizes. Each must be read with its exact
duration, and a render must come out exactly as long as the picture."""

from __future__ import annotations

import numpy as np
import pytest

from engine.video_io import load_audio_track, load_video, probe
from tests.media_files import write_video

pytestmark = pytest.mark.usefixtures("one_thread")

CASES = {
    "mov-mpeg4-2997-mono": dict(fmt="mov", vcodec="mpeg4", fps=29.97, acodec="pcm_s16le", channels=1),
    "webm-vp9-25-opus48k": dict(fmt="webm", vcodec="libvpx-vp9", fps=25, acodec="libopus", sample_rate=48000),
    "mkv-h264-30-ac3-5.1": dict(fmt="matroska", vcodec="libx264", fps=30, acodec="ac3", channels=6, sample_rate=48000),
    "mp4-hevc-23976-flac": dict(fmt="mp4", vcodec="libx265", fps=23.976, acodec="flac", channels=2),
    "mp4-1080x1920-portrait": dict(fmt="mp4", vcodec="libx264", fps=10, seconds=1.0, size=(1080, 1920), acodec="aac"),
    "mkv-96x54-no-audio": dict(fmt="matroska", vcodec="mpeg4", fps=12, size=(96, 54)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_common_files_read_with_their_exact_duration_and_audio(tmp_path, name):
    kw = CASES[name]
    ext = {"mov": "mov", "webm": "webm", "matroska": "mkv", "mp4": "mp4"}[kw["fmt"]]
    path = tmp_path / f"{name}.{ext}"
    written = write_video(path, **kw)
    fps, seconds = kw["fps"], kw.get("seconds", 2.0)
    n_frames = int(round(seconds * fps))
    info = probe(path)
    assert info.n_frames == n_frames
    assert info.duration == pytest.approx(n_frames / fps, abs=2e-3)  # Matroska stores milliseconds
    assert (info.width, info.height) == kw.get("size", (96, 64))
    clip = load_video(path, rate=8.0, size=64)
    assert clip.frames.shape == (int(np.ceil(info.duration * 8.0 - 1e-6)), 64, 64, 3)
    audio = load_audio_track(path, 44100)
    if "acodec" not in kw:
        assert info.audio_channels == 0 and audio is None
        return
    assert info.audio_channels == kw.get("channels", 2)
    assert audio.ndim == 2 and audio.shape[1] == 2 and audio.dtype == np.float32
    expected = len(written) * 44100 / kw.get("sample_rate", 44100)
    assert abs(len(audio) - expected) < 4700  # codec priming and the zero-padded last codec frame (FLAC: 4608)
    level = np.sqrt(np.mean(audio[len(audio) // 4 : -len(audio) // 4] ** 2))
    assert level > 0.05  # the noise came through (0.2 rms written, downmixes included)
    if kw.get("channels") == 1:
        assert np.array_equal(audio[:, 0], audio[:, 1])  # mono is duplicated, not panned


@pytest.mark.parametrize("rotation", [-90, 90])
def test_rotated_phone_video_is_read_upright(tmp_path, rotation):
    """A landscape-coded picture with a display rotation is read as displayed (the square moves from the
    coded left edge: to the top for -90, a phone held upright, and to the bottom for +90)."""
    path = tmp_path / "phone.mp4"
    write_video(path, fmt="mp4", vcodec="libx264", fps=24, size=(112, 64), rotate=rotation)
    info = probe(path)
    assert (info.width, info.height) == (64, 112) and info.rotation == rotation % 360
    clip = load_video(path, rate=8.0, size=64)

    def centre(frame: np.ndarray) -> tuple[float, float]:
        ys, xs = np.nonzero(frame.mean(axis=2) > 200)
        return ys.mean(), xs.mean()

    (y0, x0), (y1, x1) = centre(clip.frames[0]), centre(clip.frames[-1])
    assert abs(x0 - 32) < 3 and abs(x1 - 32) < 3  # portrait picture: the square stays in the middle column
    assert (y1 - y0 > 30) if rotation == -90 else (y0 - y1 > 30)


def test_variable_frame_rate_uses_the_timestamps(tmp_path):
    """Frames 20-70 ms apart: the duration and the 8 fps resampling follow the timestamps, not the count."""
    gaps = np.random.default_rng(1).uniform(0.02, 0.07, 40)
    times = np.concatenate([[0.0], np.cumsum(gaps)])
    path = tmp_path / "vfr.mkv"
    write_video(path, fmt="matroska", vcodec="libx264", fps=24, frame_times=times)
    info = probe(path)
    assert info.n_frames == 41
    assert times[-1] < info.duration < times[-1] + 0.1
    clip = load_video(path, rate=8.0, size=64)
    assert len(clip.frames) == int(np.ceil(info.duration * 8.0 - 1e-6))
    # the square's position at 1 s is the one of the last frame shown at or before 1 s
    k = int(np.searchsorted(np.round(times, 3), 1.0 + 1e-6, side="right") - 1)
    xs = np.nonzero(clip.frames[8].mean(axis=2) > 200)[1]
    assert abs(xs.mean() / 64 * 96 - (8 + (96 - 16) * k / 40)) < 6  # 64-px square of the 96-px picture
