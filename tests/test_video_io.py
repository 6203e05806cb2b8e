"""Reading user videos and their motion features."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import UserInputError
from engine.media import write_mp4
from engine.motion import SYNC_DIM, motion_features
from engine.video_io import load_audio_track, load_video, probe


def _video(path, fps: float, n: int, audio: bool = True, w: int = 64, h: int = 48):
    frames = np.zeros((n, h, w, 3), dtype=np.uint8)
    frames[:, :, : w // 2] = 40
    a = (np.random.default_rng(0).standard_normal((int(round(n / fps * 44100)), 2)) * 0.1).astype(np.float32)
    write_mp4(path, frames, fps, a if audio else None, 44100)
    return frames


@pytest.mark.parametrize("fps,seconds", [(12, 5.0), (25, 9.0), (29.97, 5.0), (30, 13.5)])
def test_probe_gives_the_exact_picture_duration(tmp_path, fps, seconds):
    n = int(round(seconds * fps))
    _video(tmp_path / "v.mp4", fps, n)
    info = probe(tmp_path / "v.mp4")
    assert info.n_frames == n
    assert info.duration == pytest.approx(n / fps, abs=1e-6)
    assert info.audio_channels == 2 and info.audio_rate == 44100


def test_load_video_resamples_to_a_fixed_rate(tmp_path):
    _video(tmp_path / "v.mp4", 29.97, 150, audio=False, w=80, h=40)
    clip = load_video(tmp_path / "v.mp4", rate=8.0, size=32)
    assert clip.frames.shape == (int(np.ceil(150 / 29.97 * 8)), 32, 32, 3)
    assert clip.info.audio_channels == 0
    assert load_audio_track(tmp_path / "v.mp4") is None
    # the landscape picture is letterboxed into the square: top rows black, left half darker than right
    assert clip.frames[0, 0].max() == 0


def test_audio_track_is_stereo(tmp_path):
    _video(tmp_path / "v.mp4", 24, 48)
    audio = load_audio_track(tmp_path / "v.mp4", 44100)
    assert audio.ndim == 2 and audio.shape[1] == 2 and abs(len(audio) - 2 * 44100) < 2048


@pytest.mark.parametrize("content,needle", [(b"", "empty"), (b"hello, not a video" * 10, "not a readable video")])
def test_bad_files_raise_one_line_user_errors(tmp_path, content, needle):
    p = tmp_path / "bad.mp4"
    p.write_bytes(content)
    with pytest.raises(UserInputError, match=needle):
        probe(p)


def test_missing_file(tmp_path):
    with pytest.raises(UserInputError, match="not found"):
        load_video(tmp_path / "nope.mp4")


def test_motion_features_mark_a_jump_on_the_correct_side():
    fps, n = 24.0, 48
    frames = np.zeros((n, 32, 32, 3), dtype=np.uint8)
    frames[30:, 8:16, 2:8] = 255  # a bright patch appears at frame 30 on the left
    feats = motion_features(frames, np.arange(n) / fps, latent_rate=21.5, n_latent=43)
    assert feats.shape == (43, SYNC_DIM)
    energy = feats[:, -2]
    k = int(np.argmax(energy))
    assert abs((k + 0.5) / 21.5 - 30 / fps) < 1.5 / 21.5
    assert feats[k, -1] < -0.3  # motion centroid on the left


def test_a_clip_is_decoded_once_for_import_plan_render_and_scoring(tmp_path, monkeypatch):
    """The studio's import reads the staged copy, the store renames its folder into place, and planning,
    preparing the render and the reward view of the moved file all reuse that one decode."""
    import engine.video_io as vio
    from app.studio_actions import inspect_video
    from engine.bundle import load_bundle
    from engine.pipeline import prepare_video
    from engine.planner.default import load_planner
    from engine.prepared import clear_prepared_cache
    from engine.rewards import view_of_file

    staging = tmp_path / "staging"
    staging.mkdir()
    _video(staging / "source.mp4", 24.0, 48)
    calls = []
    real = vio.scan_frames
    monkeypatch.setattr(vio, "scan_frames", lambda p, size: calls.append(size) or real(p, size))
    vio._DECODED.clear()
    clear_prepared_cache()
    inspect_video(staging / "source.mp4", staging)
    (tmp_path / "clips").mkdir()
    final = (tmp_path / "clips" / "abc").resolve()
    staging.rename(final)  # what the store does once the clip is imported
    load_planner("default").plan(final / "source.mp4")
    prepared = prepare_video(final / "source.mp4", load_bundle("default"))
    view = view_of_file(final / "source.mp4")
    assert calls == [vio.SHARED_SIZE] and prepared.info.path == str(final / "source.mp4")
    assert view.duration == prepared.duration == pytest.approx(2.0)
