"""The command line: subcommands, their outputs, and one-line errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:")
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        (["world", "--count", "0", "--out", "x"], "positive"),
        (["world", "--count", "abc", "--out", "x"], "whole number"),
        (["world", "--duration", "30", "--out", "x"], "2 to 12"),
        (["world", "--split", "nope", "--out", "x"], "invalid choice"),
        (["world"], "--out"),
        (["bench", "--split", "train"], "invalid choice"),
        (["train", "nothing"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
        (["render", "clip.mp4", "--video-cfg", "-1"], "finite number"),
        (["bench", "--video-cfg", "loud"], "expected a number"),
    ],
)
def test_bad_arguments_get_one_line_errors(args, needle):
    assert_one_line_error(run(*args), needle)


def test_world_out_that_is_a_file(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert_one_line_error(run("world", "--out", str(f), "--count", "1"), "not a folder")


def test_bench_without_a_split_folder(tmp_path):
    assert_one_line_error(run("bench", "--data", str(tmp_path)), "no FoleyWorld split")


def test_world_writes_a_split(tmp_path):
    out = tmp_path / "split"
    proc = run("world", "--split", "test-multi", "--count", "2", "--out", str(out), "--duration", "3")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["clips"] == 2
    index = json.loads((out / "index.json").read_text())
    assert index["clips"] == ["test-multi_000000", "test-multi_000001"]
    for name in index["clips"]:
        meta = json.loads((out / f"{name}.json").read_text())
        audio, sr = sf.read(out / f"{name}.wav", always_2d=True)
        assert audio.shape == (3 * 44100, 2) and sr == 44100
        assert set(meta["cot"]) >= {"semantic", "temporal", "aesthetic", "spatial"}
        assert len(meta["tracks"]["x"]) == len(meta["sources"])
        assert (out / f"{name}.mp4").stat().st_size > 1000
    assert not list(out.glob(".*tmp*"))  # no temporary files left behind


def test_world_speed_reports_clips_per_second():
    proc = run("world", "--speed", "--count", "2", "--duration", "2")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["clips"] == 2 and result["clips_per_second"] > 0
    assert set(result["ms_per_clip"]) == {"scene", "audio", "cot", "video"}


def test_sampling_options_become_render_settings():
    sys.path.insert(0, str(ROOT))
    from engine.commands.common import sampling_kw as _sampling_kw
    from engine.pipeline import RenderSettings
    from launch import build_parser

    def settings(*extra: str) -> RenderSettings:
        return RenderSettings(**_sampling_kw(build_parser().parse_args(["render", "clip.mp4", "--out", "o", *extra])))

    assert settings() == RenderSettings()  # nothing given: the studio's defaults
    assert settings("--video-cfg", "same").video_cfg is None
    assert settings("--video-cfg", "6.5").video_cfg == 6.5
    assert settings("--no-declick").declick is False and RenderSettings().declick is True
    assert settings("--no-gate").gate is False and RenderSettings().gate is True
    assert settings("--shift", "2").shift == 2.0 and RenderSettings().shift == 1.0
    for bad in ("0", "-1", "nan", "x"):
        with pytest.raises(SystemExit):
            settings("--shift", bad)
    assert settings("--guidance-interval", "0:1").guidance_interval == (0.0, 1.0)
