"""The render pipeline and the `render` command: exact output length at any frame rate, seeded
determinism, windows joined by equal-power crossfades, the safety limiter, the model bundle, muxing with
the video stream copied, and one-line errors that leave no files behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

import launch
from engine.bundle import ModelBundle, load_bundle, resolve_model, save_bundle
from engine.cot import Cot
from engine.errors import UserInputError
from engine.generator import build_generator
from engine.media import write_mp4
from engine.pipeline import (
    RenderSettings,
    join_windows,
    plan_windows,
    prepare_video,
    render,
    render_plan,
    safety_limit,
    window_seed,
)
from engine.video_io import probe
from tests.bundles import tiny_bundle

ROOT = Path(__file__).resolve().parents[1]
SR = 44100
COT = Cot("a ball bounces on wood", "three hits", "dry and close", "moves left to right", negative="speech")
FAST = RenderSettings(seed=7, steps=3)  # few steps: the tests check lengths and plumbing, not quality


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_bundle(tiny_bundle(), tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def bundle(model_dir) -> ModelBundle:
    return load_bundle(model_dir)


def _video(path: Path, duration: float, fps: float, audio: bool = False) -> Path:
    """A 32 x 32 clip of a white square sliding left to right, ``round(duration * fps)`` frames."""
    n = round(duration * fps)
    frames = np.zeros((n, 32, 32, 3), dtype=np.uint8)
    for k in range(n):
        x = int(k / max(n - 1, 1) * 24)
        frames[k, 12:20, x : x + 8] = 255
    track = np.sin(np.arange(round(n / fps * SR)) * 0.05)[:, None].astype(np.float32) * 0.3 if audio else None
    write_mp4(path, frames, fps, audio=track)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 5 s, 25 fps clip with a mono audio track of its own."""
    return _video(tmp_path_factory.mktemp("clip") / "clip.mp4", 5.0, 25.0, audio=True)


# ------------------------------------------------------------------------------------- the pipeline


CASES = [(5.0, 12.0), (5.0, 29.97), (9.0, 24.0), (9.0, 25.0), (9.0, 29.97), (13.5, 30.0), (13.5, 12.0)]


@pytest.mark.parametrize("duration,fps", CASES)
def test_output_is_exactly_as_long_as_the_video(tmp_path, bundle, duration, fps):
    path = _video(tmp_path / "v.mp4", duration, fps)
    info = probe(path)
    assert abs(info.duration - duration) <= 1 / fps  # whole frames: 9 s at 29.97 fps is 270 frames
    audio = render(prepare_video(path, bundle), COT, bundle, FAST)
    assert audio.shape == (round(info.duration * SR), 2) and audio.dtype == np.float32
    assert np.isfinite(audio).all() and 0 < np.abs(audio).max() <= 1.0


@pytest.mark.parametrize(
    "ext,kw",
    [
        ("mov", dict(fmt="mov", vcodec="mpeg4", fps=29.97, acodec="pcm_s16le", channels=1)),
        ("mkv", dict(fmt="matroska", vcodec="libx264", fps=24, frame_times=np.arange(41) * 0.045)),
        ("mp4", dict(fmt="mp4", vcodec="libx264", fps=24, size=(112, 64), rotate=-90)),
        ("webm", dict(fmt="webm", vcodec="libvpx-vp9", fps=25, acodec="libopus", channels=2, sample_rate=48000)),
    ],
)
def test_real_world_files_render_exactly_as_long_as_their_picture(tmp_path, bundle, ext, kw):
    """Other containers, a variable frame rate, a rotated phone picture: the take matches the picture."""
    from tests.media_files import write_video

    path = tmp_path / f"v.{ext}"
    write_video(path, **kw)
    info = probe(path)
    audio = render(prepare_video(path, bundle), COT, bundle, FAST)
    assert audio.shape == (round(info.duration * SR), 2) and np.isfinite(audio).all()


def test_same_seed_is_bit_identical_and_another_seed_differs(clip, bundle):
    prepared = prepare_video(clip, bundle)
    first = render(prepared, COT, bundle, FAST)
    again = render(prepare_video(clip, bundle), COT, bundle, FAST)
    other = render(prepared, COT, bundle, replace(FAST, seed=8))
    assert np.array_equal(first, again)
    assert np.abs(first - other).mean() > 0.05 * np.abs(first).mean()


def test_guidance_interval_reaches_the_sampler(clip, bundle):
    prepared = prepare_video(clip, bundle)
    every = render(prepared, COT, bundle, FAST)  # the default interval
    guided_steps = render(prepared, COT, bundle, replace(FAST, guidance_interval=(0.0, 1.0)))
    conditional = render(prepared, COT, bundle, replace(FAST, guidance_interval=(0.0, 0.0)))  # t = 0 is never sampled
    scale_one = render(
        prepared, COT, bundle, replace(FAST, cfg=1.0, video_cfg=1.0)
    )  # the same velocity, up to rounding
    np.testing.assert_allclose(conditional, scale_one, atol=1e-4)
    assert np.abs(guided_steps - conditional).mean() > 1e-3 * np.abs(guided_steps).mean()
    assert not np.array_equal(every, guided_steps)  # the default leaves the last of 3 steps (t = 1/3) unguided
    assert np.array_equal(every, render(prepared, COT, bundle, FAST))
    with pytest.raises(UserInputError, match="guidance interval"):
        RenderSettings(guidance_interval=(0.7, 0.3))


def test_split_guidance_and_declick_reach_the_render(clip, bundle):
    prepared = prepare_video(clip, bundle)
    plain = render(prepared, COT, bundle, replace(FAST, video_cfg=None))
    same = render(prepared, COT, bundle, replace(FAST, video_cfg=FAST.cfg))  # equal scales: plain guidance
    assert np.array_equal(plain, same)
    split = render(prepared, COT, bundle, replace(FAST, video_cfg=FAST.cfg + 3.0))
    assert np.abs(split - plain).mean() > 1e-3 * np.abs(plain).mean()
    assert np.array_equal(split, render(prepared, COT, bundle, replace(FAST, video_cfg=FAST.cfg + 3.0)))
    raw = render(prepared, COT, bundle, replace(FAST, declick=False))
    assert not np.array_equal(raw, render(prepared, COT, bundle, FAST)) and raw.shape == plain.shape
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(UserInputError, match="video guidance"):
            RenderSettings(video_cfg=bad)


def test_negative_prompt_and_cot_mode_reach_the_generator(clip, bundle):
    prepared = prepare_video(clip, bundle)
    with_negative = render(prepared, COT, bundle, FAST)
    without = render(prepared, replace(COT, negative=""), bundle, FAST)
    monolithic = render(prepared, COT, replace(bundle, cot_mode="monolithic"), FAST)  # one string, not 4 blocks
    assert not np.array_equal(with_negative, without) and not np.array_equal(with_negative, monolithic)
    textless = replace(bundle, cot_mode="none")  # the CoT's blocks are not seen at all, only the negative
    other = Cot("rain on a tin roof", "", "", "", negative=COT.negative)
    assert np.array_equal(render(prepared, COT, textless, FAST), render(prepared, other, textless, FAST))


def test_long_video_renders_in_crossfaded_windows(tmp_path, bundle):
    path = _video(tmp_path / "long.mp4", 13.5, 24.0)
    prepared = prepare_video(path, bundle)
    plan = render_plan(prepared, bundle, FAST)
    assert prepared.n_latent > bundle.generator.config.max_frames and len(plan) == 2
    (s0, n0), (s1, n1) = plan
    assert s0 == 0 and s1 + n1 == prepared.n_latent and s0 + n0 - s1 >= round(1.0 * SR / prepared.hop)
    calls = []
    audio = render(prepared, COT, bundle, FAST, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(k, 2 * FAST.steps) for k in range(1, 2 * FAST.steps + 1)]
    assert audio.shape == (prepared.n_samples, 2) == (round(probe(path).duration * SR), 2) == (round(13.5 * SR), 2)


def test_window_plan_covers_the_video_with_the_overlap():
    assert plan_windows(100, 256, 215, 22) == [(0, 100)]
    for n in (257, 291, 430, 1000, 2999):
        plan = plan_windows(n, 256, 215, 22)
        assert plan[0][0] == 0 and plan[-1][0] + plan[-1][1] == n
        assert all(length == 215 for _, length in plan)
        assert all(a + 215 - b >= 22 for (a, _), (b, _) in zip(plan, plan[1:]))
        assert len(plan) == -(-(n - 22) // (215 - 22))  # the fewest windows that keep the overlap
    assert window_seed(5, 0) == 5 and window_seed(5, 1) == window_seed(5, 1) != window_seed(6, 1)


def test_equal_power_crossfade():
    n, fade = 1000, 100
    ones, zeros = np.ones((600, 1), np.float32), np.zeros((600, 1), np.float32)
    g_out = join_windows([ones, zeros], [0, 400], n, fade)[:, 0]  # gain of window 0
    g_in = join_windows([zeros, ones], [0, 400], n, fade)[:, 0]  # gain of window 1
    cut = (400 + 600 - fade) // 2  # the crossfade sits in the middle of the 200-sample overlap
    assert np.array_equal(g_out[:cut], np.ones(cut)) and np.array_equal(g_out[cut + fade :], np.zeros(n - cut - fade))
    assert np.array_equal(g_in[:cut], np.zeros(cut)) and np.array_equal(g_in[cut + fade :], np.ones(n - cut - fade))
    np.testing.assert_allclose(g_out**2 + g_in**2, 1.0, atol=1e-6)
    assert np.all(np.diff(g_out[cut : cut + fade]) < 0)
    hard = join_windows([ones, 2 * ones], [0, 400], n, 0)[:, 0]  # no fade: a clean cut at the middle
    assert np.array_equal(hard, np.r_[np.ones(500), 2 * np.ones(500)])


def test_safety_limiter_only_acts_above_full_scale():
    quiet = np.array([[0.95, -1.0], [0.2, 0.0]], np.float32)
    assert safety_limit(quiet) is quiet
    loud = np.array([[0.5, -3.0], [1.2, 0.95]], np.float32)
    out = safety_limit(loud)
    assert out[0, 0] == 0.5 and np.abs(out).max() <= 1.0 and np.abs(out[1, 0]) < 1.0
    assert -1.0 <= out[0, 1] < -out[1, 0] < -out[1, 1] < -0.9  # order of magnitudes kept, signs kept


# --------------------------------------------------------------------------------------- the bundle


def test_bundle_round_trip_cache_and_errors(tmp_path, model_dir, bundle):
    assert load_bundle(model_dir) is bundle and load_bundle(str(model_dir)) is bundle
    assert bundle.name == "tiny-test" and bundle.cot_mode == "decomposed"
    assert not any(p.requires_grad for p in bundle.generator.parameters())
    fresh = tiny_bundle()  # same seed: the weights that were saved
    for k, v in fresh.generator.state_dict().items():
        torch.testing.assert_close(bundle.generator.state_dict()[k], v)
    with pytest.raises(UserInputError, match="no model 'nope' under assets/models; train one with"):
        resolve_model("nope")
    with pytest.raises(UserInputError, match="not a model folder"):
        load_bundle(tmp_path)
    with pytest.raises(ValueError, match="sync_dim"):
        ModelBundle(fresh.codec, build_generator("tiny"), fresh.video_encoder)


# ---------------------------------------------------------------------------------------- the CLI


def _cli(*args: str, capsys) -> tuple[int, str, str]:
    """Run ``launch.main`` in this process; argparse errors exit through SystemExit."""
    try:
        rc = launch.main([str(a) for a in args])
    except SystemExit as exc:
        rc = exc.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _packets(path: Path) -> list[tuple[bytes, int | None]]:
    with av.open(str(path)) as c:
        return [(bytes(p), p.pts) for p in c.demux(c.streams.video[0]) if p.size]


def test_render_command_writes_wav_cot_and_mux_with_the_video_copied(tmp_path, clip, model_dir):
    out = tmp_path / "out"
    cot = tmp_path / "cot.json"
    cot.write_text(json.dumps(COT.to_dict()))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = [clip, "--out", out, "--cot", cot, "--seed", "3", "--steps", "2", "--mux", "--model", model_dir]
    proc = subprocess.run(
        [sys.executable, ROOT / "launch.py", "render", *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stdout.splitlines()
    result = json.loads(line)
    n = round(probe(clip).duration * SR)
    assert result["seed"] == 3 and result["samples"] == n and result["cot_source"] == "file"
    assert result["wav"] == str(out / "clip.wav") and result["mp4"] == str(out / "clip.mp4") and result["seconds"] > 0
    audio, sr = sf.read(out / "clip.wav", always_2d=True)
    assert sr == SR and audio.shape == (n, 2) and sf.info(out / "clip.wav").subtype == "PCM_24"
    # level-safe: under -1 dBTP by an independent 4x oversampled meter, nowhere near full scale, and reported
    from scipy.signal import resample_poly

    assert 20 * np.log10(np.abs(resample_poly(audio, 4, 1, axis=0)).max()) <= -0.99
    assert np.abs(audio).max() < 10 ** (-1 / 20) and result["true_peak_dbtp"] <= -1.0 and "lufs" in result
    assert json.loads((out / "clip.cot.json").read_text()) == COT.to_dict()
    assert _packets(out / "clip.mp4") == _packets(clip)  # the video stream is copied, packet for packet
    with av.open(str(out / "clip.mp4")) as c:
        [a] = c.streams.audio  # the source's own (mono) track is left out
        assert a.codec_context.name == "aac" and a.codec_context.channels == 2
        assert abs(float(a.duration * a.time_base) - n / SR) < 1e-3
    assert sorted(p.name for p in out.iterdir()) == ["clip.cot.json", "clip.mp4", "clip.wav"]


def test_render_without_cot_uses_the_fallback_and_says_so(tmp_path, clip, model_dir, capsys):
    rc, out, err = _cli("render", clip, "--out", tmp_path, "--steps", "1", "--model", model_dir, capsys=capsys)
    assert rc == 0, err
    result = json.loads(out)
    assert result["cot_source"] == "fallback" and isinstance(result["seed"], int) and "fallback" in err
    assert "fallback" in json.loads((tmp_path / "clip.cot.json").read_text())["semantic"]


def _bad_inputs(tmp: Path, clip: Path) -> dict[str, tuple[list, str]]:
    """name -> (extra arguments, expected words of the error)."""
    (tmp / "notes.mp4").write_text("not a video")
    sf.write(tmp / "sound.wav", np.zeros((4410, 2)), SR)
    (tmp / "empty.mp4").write_bytes(b"")
    (tmp / "cut.mp4").write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    (tmp / "bad.json").write_text("{semantic: oops")
    (tmp / "afile").write_text("x")
    return {
        "missing": ([tmp / "nope.mp4"], "not found"),
        "not a video": ([tmp / "notes.mp4"], "not a readable video"),
        "no video stream": ([tmp / "sound.wav"], "no video stream"),
        "zero length": ([tmp / "empty.mp4"], "empty"),
        "truncated": ([tmp / "cut.mp4"], "cut.mp4"),
        "bad cot": ([clip, "--cot", tmp / "bad.json"], "not valid JSON"),
        "negative weight": ([clip, "--weights", "semantic=1,spatial=-0.5"], ">= 0"),
        "unknown weight": ([clip, "--weights", "loudness=1"], "semantic, temporal"),
        "candidates": ([clip, "--candidates", "0"], "positive"),
        "reversed interval": ([clip, "--guidance-interval", "0.8:0.2"], "LO:HI"),
        "interval not a pair": ([clip, "--guidance-interval", "0.5"], "LO:HI"),
        "out is a file": ([clip, "--out", tmp / "afile"], "not a folder"),
        "unknown model": ([clip, "--model", "no-such-model"], "no model 'no-such-model'"),
    }


def test_bad_input_gives_one_line_and_no_files(tmp_path, clip, model_dir, capsys):
    cases = _bad_inputs(tmp_path, clip)
    for name, (extra, needle) in cases.items():
        out = tmp_path / f"out-{name.replace(' ', '-')}"
        model = [] if "--model" in extra else ["--model", model_dir]
        argv = ["render", *extra] + ([] if "--out" in extra else ["--out", out]) + model
        rc, stdout, err = _cli(*argv, capsys=capsys)
        lines = err.strip().splitlines()
        assert rc != 0 and len(lines) == 1 and lines[0].startswith("error:"), (name, err)
        assert needle in lines[0] and "Traceback" not in err and stdout == "", (name, err)
        assert not out.exists() or not list(out.iterdir()), name
    assert (tmp_path / "afile").read_text() == "x"


def test_failed_write_leaves_no_partial_outputs(tmp_path, clip, model_dir, capsys, monkeypatch):
    def broken_mux(video, audio, sample_rate, out):
        Path(out).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr("engine.export.mux_audio", broken_mux)
    rc, _, err = _cli(
        "render", clip, "--out", tmp_path / "o", "--steps", "1", "--mux", "--model", model_dir, capsys=capsys
    )
    assert rc != 0 and "disk full" in err and "Traceback" not in err
    assert list((tmp_path / "o").iterdir()) == []
