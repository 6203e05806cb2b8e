"""Take export: 48 kHz 24-bit WAV and FLAC of exactly the picture's length, proper resampling, the muxed
MP4 with the video stream copied, the CoT JSON, and loudness normalisation."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import soundfile as sf

from engine.bench.signal import loudness_lufs
from engine.errors import UserInputError
from engine.export import export_take, resample
from tests.media_files import write_video

SR = 44100


def tone(freq: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    left = amp * np.sin(2 * np.pi * freq * t)
    return np.stack([left, 0.5 * left], axis=1).astype(np.float32)  # (N, 2), right 6 dB down


def test_resample_keeps_frequency_and_level_and_removes_aliases():
    x = tone(1000.0, 1.0)
    y = resample(x, SR, 48000)
    assert y.shape == (48000, 2) and y.dtype == np.float32
    spec = np.abs(np.fft.rfft(y[4800:-4800, 0] * np.hanning(len(y) - 9600)))
    assert abs(np.argmax(spec) * 48000 / (len(y) - 9600) - 1000.0) < 2.0
    mid = slice(2000, -2000)
    assert np.sqrt(np.mean(y[mid, 0] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=1e-3)
    assert np.allclose(y[mid, 1], 0.5 * y[mid, 0], atol=1e-4)  # the stereo image is kept
    # up: a 20 kHz tone leaves no image (at 44.1 - 20 = 24.1 kHz, folded to 23.9 kHz) in the 48 kHz file
    y = resample(tone(20000.0, 1.0), SR, 48000)[5000:-5000, 0]
    spec = np.abs(np.fft.rfft(y * np.blackman(len(y))))
    freqs = np.fft.rfftfreq(len(y), 1 / 48000)
    assert spec[freqs > 22100].max() < 1e-4 * spec.max()  # images at least 80 dB down
    # down: a 23 kHz tone has no place below the new Nyquist (22.05 kHz) and must not alias in
    down = resample(tone(23000.0, 0.5, sr=48000), 48000, SR)
    assert np.sqrt(np.mean(down[1000:-1000, 0] ** 2)) < 1e-4


def test_resample_to_an_exact_length():
    x = tone(440.0, 2.0)
    assert resample(x, SR, 48000, 96001).shape == (96001, 2)
    assert resample(x, SR, 48000, 95999).shape == (95999, 2)


def test_a_loud_take_is_exported_under_the_true_peak_ceiling_and_its_level_reported(tmp_path):
    loud = tone(1000.0, 2.0, amp=1.4)  # rendered too hot: past full scale
    report = export_take(loud, SR, tmp_path, "hot", duration=2.0, formats=("wav", "flac"))
    level = report["level"]
    assert level["true_peak_dbtp"] <= -1.0 and level["limited_db"] > 3.0
    for f in ("wav", "flac"):
        audio, sr = sf.read(report["files"][f], dtype="float64")
        assert sr == 48000 and np.abs(audio).max() < 10 ** (-1 / 20)
    with pytest.raises(UserInputError, match="LUFS"):
        export_take(loud, SR, tmp_path, "bad", duration=2.0, lufs_target=3.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hot.flac", "hot.wav"]


def test_a_failed_write_leaves_no_file_of_the_take(tmp_path, monkeypatch):
    """The files of a take appear together or not at all: a mux that fails removes the WAV written before it."""
    import engine.export

    def broken(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(engine.export, "mux_audio", broken)
    with pytest.raises(OSError, match="disk full"):
        export_take(tone(500.0, 1.0), SR, tmp_path, "t", duration=1.0, formats=("wav", "mp4"), video=tmp_path / "v")
    assert list(tmp_path.iterdir()) == []


def test_a_take_can_be_written_at_its_own_rate(tmp_path):
    x = tone(440.0, 1.0, amp=0.5)
    report = export_take(x, SR, tmp_path, "t", duration=1.0, rate=None)
    audio, sr = sf.read(report["files"]["wav"], dtype="float32")
    assert sr == SR and report["sample_rate"] == SR and audio.shape == x.shape
    np.testing.assert_allclose(audio, x, atol=2.0**-23)  # 24-bit: nothing but the rounding


def stream_packets(path, kind: str) -> list[bytes]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0] if kind == "video" else c.streams.audio[0]
        return [bytes(p) for p in c.demux(stream) if p.size]


def test_export_writes_every_format(tmp_path):
    video = tmp_path / "shot.mp4"
    write_video(video, fmt="mp4", vcodec="libx264", fps=25.0, seconds=2.4, acodec="aac")
    duration = 2.4
    audio = tone(800.0, duration)
    cot = {"semantic": "a bell", "temporal": "rings at 1 s", "aesthetic": "dry", "spatial": "left"}
    out = tmp_path / "out"
    out.mkdir()
    report = export_take(audio, SR, out, "shot-take1", duration=duration, formats=("wav", "flac", "mp4", "cot"),
                         video=video, cot=cot)  # fmt: skip
    files = report["files"]
    for kind in ("wav", "flac"):
        info = sf.info(files[kind])
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (48000, 2, "PCM_24", 115200)
    wav, _ = sf.read(files["wav"], dtype="float32")
    flac, _ = sf.read(files["flac"], dtype="float32")
    assert np.array_equal(wav, flac)  # FLAC is lossless
    assert np.allclose(wav, resample(audio, SR, 48000, 115200), atol=2**-22)
    assert stream_packets(files["mp4"], "video") == stream_packets(video, "video")  # copied, not re-encoded
    with av.open(files["mp4"]) as c:
        a = c.streams.audio[0]
        assert (a.codec_context.sample_rate, a.codec_context.channels) == (48000, 2)
    assert json.loads(open(files["cot"], encoding="utf-8").read()) == cot
    names = sorted(f"shot-take1.{e}" for e in ("wav", "flac", "mp4", "cot.json"))
    assert sorted(p.name for p in out.iterdir()) == names


def test_export_with_loudness_target(tmp_path):
    audio = tone(500.0, 2.0, amp=0.02)
    report = export_take(audio, SR, tmp_path, "t", duration=2.0, lufs_target=-23.0)
    wav, sr = sf.read(report["files"]["wav"], dtype="float32")
    assert sr == 48000 and loudness_lufs(wav, sr) == pytest.approx(-23.0, abs=0.1)
    assert report["level"]["lufs_target"] == -23.0 and report["level"]["lufs"] == pytest.approx(-23.0, abs=0.05)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"formats": ("mp3",)}, "formats"),
        ({"formats": ()}, "formats"),
        ({"formats": ("mp4",)}, "video"),
        ({"formats": ("cot",)}, "CoT"),
        ({"duration": 0.0}, "length"),
    ],
)
def test_export_refuses_bad_requests_before_writing(tmp_path, kwargs, needle):
    args = {"duration": 1.0, "formats": ("wav",)} | kwargs
    with pytest.raises(UserInputError, match=needle):
        export_take(tone(500.0, 1.0), SR, tmp_path, "t", **args)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt,ext", [("matroska", "mkv"), ("mov", "mov")])
def test_the_muxed_mp4_keeps_every_packet_of_other_containers(tmp_path, fmt, ext):
    """Matroska stores no decode stamps for the first packets of a stream with B-frames: they must still be
    copied (the first one is the keyframe every other frame needs)."""
    video = tmp_path / f"shot.{ext}"
    write_video(video, fmt=fmt, vcodec="libx264", fps=30.0, seconds=1.5)
    report = export_take(tone(300.0, 1.5), SR, tmp_path, "t", duration=1.5, formats=("mp4",), video=video)
    assert stream_packets(report["files"]["mp4"], "video") == stream_packets(video, "video")
    with av.open(report["files"]["mp4"]) as c:
        assert sum(1 for _ in c.decode(video=0)) == 45
