"""The studio's FoleyWorld page: the callback behind "Draw clip" and its input checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.studio import build_app, world_clip
from engine.errors import UserInputError


def test_draw_clip_writes_video_and_scores(tmp_path):
    r = world_clip("test-single", 2, 3.0, str(tmp_path))
    assert Path(r["video"]).is_file() and Path(r["video"]).stat().st_size > 1000
    assert set(r["cot"]) >= {"semantic", "temporal", "aesthetic", "spatial"}
    scores = dict(r["scores"])
    assert 0.0 <= scores["class_acc"] <= 1.0 and 0.0 <= scores["quality"] <= 1.0


@pytest.mark.parametrize(
    "args,needle",
    [
        (("nope", 0, 9.0), "split"),
        (("val", -1, 9.0), "index"),
        (("val", 1.5, 9.0), "index"),
        (("val", 0, 40.0), "duration"),
    ],
)
def test_bad_input_is_a_user_error(tmp_path, args, needle):
    with pytest.raises(UserInputError, match=needle):
        world_clip(*args, str(tmp_path))


def test_app_builds(tmp_path):
    from app.settings import StudioSettings

    demo = build_app(str(tmp_path / "world"), settings=StudioSettings(projects_dir=tmp_path / "projects"))
    assert demo is not None and (tmp_path / "projects.db").is_file()  # beside the media folder, not inside
    assert not list((tmp_path / "projects").glob("*.db*"))


def test_settings_come_from_the_environment_with_safe_defaults(tmp_path):
    from app.settings import StudioSettings

    default = StudioSettings.from_env({})
    assert (default.host, default.port, default.password, default.max_upload_mb) == ("127.0.0.1", 7860, "", 500.0)
    assert default.upload_types == (".mp4", ".mov", ".webm", ".mkv") and default.db_url.endswith("/projects.db")
    env = {
        "FOLEY_PORT": "8000",
        "FOLEY_PROJECTS": str(tmp_path),
        "FOLEY_DB_URL": "sqlite:////elsewhere/x.db",
        "FOLEY_PASSWORD": "pw",
        "FOLEY_MAX_UPLOAD_MB": "20",
        "FOLEY_UPLOAD_TYPES": "MP4, .mkv",
        "FOLEY_RENDERS": "3",
    }
    s = StudioSettings.from_env(env)
    assert (s.port, s.projects_dir, s.db_url, s.password, s.render_concurrency) == (
        8000, tmp_path, "sqlite:////elsewhere/x.db", "pw", 3
    )  # fmt: skip
    assert s.upload_types == (".mp4", ".mkv") and s.max_upload_bytes == 20 * 1024 * 1024
    for bad in ({"FOLEY_PORT": "x"}, {"FOLEY_PORT": "70000"}, {"FOLEY_UPLOAD_TYPES": ".avi"}, {"FOLEY_RENDERS": "0"}):
        with pytest.raises(UserInputError):
            StudioSettings.from_env(bad)
