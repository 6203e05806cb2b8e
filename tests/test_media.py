"""MP4 and WAV writers: round trips, odd sizes and rates, and atomic writes that leave no debris."""

from __future__ import annotations

import av
import numpy as np
import pytest

from engine import media
from engine.media import read_video_frames, read_wav, write_mp4, write_wav

AAC_FRAME = 1024  # samples per AAC frame


def _frames(n: int, h: int, w: int) -> np.ndarray:
    """Smooth moving gradients (F, H, W, 3) uint8: compress well, so the decoded pixels stay close."""
    t = np.arange(n)[:, None, None]
    y, x = np.mgrid[0:h, 0:w]
    r = 128 + 100 * np.sin(2 * np.pi * (x / w + t / n))
    g = 128 + 100 * np.cos(2 * np.pi * (y / h - t / n))
    b = np.broadcast_to(64 + 128 * x / w, r.shape)
    return np.stack([r, g, b], -1).astype(np.uint8)


def _tone(seconds: float, sr: int) -> np.ndarray:
    """Stereo test signal (N, 2): 440 Hz left, 660 Hz right."""
    t = np.arange(int(round(seconds * sr))) / sr
    return (0.4 * np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)], 1)).astype(np.float32)


def _debris(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


@pytest.mark.parametrize(("fps", "h", "w"), [(24.0, 48, 64), (29.97, 33, 47)])
def test_mp4_round_trip(tmp_path, fps, h, w):
    n, sr = 36, 44100
    frames, audio = _frames(n, h, w), _tone(n / fps, sr)
    path = tmp_path / "clip.mp4"
    write_mp4(path, frames, fps, audio, sr)
    back, rate = read_video_frames(path)
    assert back.shape == (n, h + h % 2, w + w % 2, 3)  # odd sizes padded to even
    assert rate == pytest.approx(fps, abs=1e-6)
    assert np.abs(back[:, :h, :w].astype(int) - frames).mean() < 6.0  # yuv420p chroma subsampling + crf 18
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        assert stream.channels == 2 and stream.sample_rate == sr
        duration = float(stream.duration * stream.time_base)
        decoded = np.concatenate([f.to_ndarray() for f in c.decode(stream)], axis=1)  # (2, N')
    assert abs(duration * sr - len(audio)) <= AAC_FRAME
    assert decoded.shape[0] == 2 and abs(decoded.shape[1] - len(audio)) <= 2 * AAC_FRAME
    assert _debris(tmp_path) == []


def test_mp4_of_the_same_frames_is_the_same_file(tmp_path):
    """A seeded clip written twice must give the same bits (benchmarks and GRPO prompts are rewritten)."""
    frames, audio = _frames(48, 64, 64), _tone(2.0, 44100)
    write_mp4(tmp_path / "a.mp4", frames, 24.0, audio, 44100)
    write_mp4(tmp_path / "b.mp4", frames, 24.0, audio, 44100)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_mp4_without_audio_has_only_video(tmp_path):
    path = tmp_path / "silent.mp4"
    write_mp4(path, _frames(10, 32, 32), 12.5)
    with av.open(str(path)) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 0
    assert read_video_frames(path)[0].shape == (10, 32, 32, 3)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((4, 16, 16, 3), np.float32), "uint8"),
        (np.zeros((16, 16, 3), np.uint8), "shape"),
        (np.zeros((4, 16, 16, 4), np.uint8), "shape"),
    ],
)
def test_bad_frames_raise_and_leave_nothing(tmp_path, frames, message):
    with pytest.raises(ValueError, match=message):
        write_mp4(tmp_path / "bad.mp4", frames, 24.0)
    assert list(tmp_path.iterdir()) == []


def test_bad_audio_raises_and_leaves_nothing(tmp_path):
    audio = _tone(0.5, 16000)
    audio[10, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_mp4(tmp_path / "bad.mp4", _frames(6, 16, 16), 12.0, audio, 16000)
    with pytest.raises(ValueError, match="mono or stereo"):
        write_mp4(tmp_path / "bad.mp4", _frames(6, 16, 16), 12.0, np.zeros((800, 3), np.float32), 16000)
    assert list(tmp_path.iterdir()) == []


def test_failure_mid_write_removes_temp_and_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"old")
    seen = []

    def broken(container, *args):
        seen.extend(_debris(tmp_path))  # the temporary file exists while encoding
        raise RuntimeError("encoder died")

    monkeypatch.setattr(media, "_encode", broken)
    with pytest.raises(RuntimeError, match="encoder died"):
        write_mp4(path, _frames(4, 16, 16), 24.0)
    assert len(seen) == 1 and seen[0].startswith(".clip.mp4.") and seen[0].endswith(".tmp.mp4")
    assert _debris(tmp_path) == []
    assert path.read_bytes() == b"old"


def test_missing_folder_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_mp4(tmp_path / "nope" / "clip.mp4", _frames(2, 16, 16), 24.0)


@pytest.mark.parametrize(("subtype", "tol"), [("PCM_16", 2.0**-15), ("PCM_24", 2.0**-23), ("FLOAT", 0.0)])
def test_wav_round_trip(tmp_path, subtype, tol):
    audio = _tone(0.25, 22050)
    path = tmp_path / "a.wav"
    write_wav(path, audio, 22050, subtype=subtype)
    back, sr = read_wav(path)
    assert sr == 22050 and back.dtype == np.float32 and back.shape == audio.shape
    np.testing.assert_allclose(back, audio, atol=tol + 1e-9)
    assert _debris(tmp_path) == []


def test_wav_mono_and_errors(tmp_path):
    write_wav(tmp_path / "m.wav", np.zeros(100, np.float32), 8000)
    back, _ = read_wav(tmp_path / "m.wav")
    assert back.shape == (100, 1)
    with pytest.raises(ValueError, match="subtype"):
        write_wav(tmp_path / "x.wav", np.zeros((10, 2)), 8000, subtype="MP3ISH")
    with pytest.raises(ValueError, match="floating point"):
        write_wav(tmp_path / "x.wav", np.zeros((10, 2), np.int16), 8000)
    assert not (tmp_path / "x.wav").exists() and _debris(tmp_path) == []
