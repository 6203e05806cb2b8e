"""Best-of-N takes and the ``score`` command: N seeds rendered, scored as one batch and ranked by the
weighted reward (each candidate reproduced by its seed alone); ``render --candidates`` keeps the best;
``score`` prints the four scores and the weighted total, with one-line errors for bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.best_of_n import best_of_n
from engine.bundle import load_bundle, save_bundle
from engine.errors import UserInputError
from engine.level import make_safe
from engine.pipeline import RenderSettings, prepare_video, render, render_plan, render_takes
from engine.rewards import DEFAULT_WEIGHTS, DIMENSIONS, load_reward_heads, weighted_total
from tests.bundles import tiny_bundle
from tests.test_pipeline import _cli
from tests.test_rewards import SR, _write

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = RenderSettings(seed=11, steps=2)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_bundle(tiny_bundle(), tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def clang(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("bon"), 11, "metal_clang")


def test_candidates_are_ranked_and_reproducible(model_dir, clang):
    video, _, cot = clang
    bundle = load_bundle(model_dir)
    prepared = prepare_video(video, bundle)
    weights = {"temporal": 1.0, "spatial": 1.0}
    ranked = best_of_n(prepared, bundle, cot, FAST, 3, weights, load_reward_heads())
    assert sorted(c.seed for c in ranked) == [11, 12, 13]
    totals = [c.total for c in ranked]
    assert totals == sorted(totals, reverse=True)
    for c in ranked:
        assert c.total == pytest.approx(weighted_total(c.scores, weights))
        assert set(c.scores) == set(DIMENSIONS) and c.audio.shape == (prepared.n_samples, 2)
    alone = render(prepared, cot, bundle, replace(FAST, seed=ranked[0].seed))
    np.testing.assert_array_equal(alone, ranked[0].audio)
    with pytest.raises(UserInputError, match="positive"):
        best_of_n(prepared, bundle, cot, FAST, 2, {"semantic": 0.0}, load_reward_heads())


def test_takes_share_one_encoding_and_match_renders_alone(model_dir, clang, monkeypatch):
    """`render_takes` encodes the CoT once and builds each window's conditions once for all its takes; one
    after another every take is bit-identical to its seed rendered alone, as one batch equal to rounding;
    progress counts every step of every take once, in order."""
    video, _, cot = clang
    bundle = load_bundle(model_dir)
    prepared = prepare_video(video, bundle)
    calls = {"encode_cot": 0, "window_conditions": 0}
    for name in calls:
        real = getattr(type(bundle), name)

        def counted(self, *a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(self, *a, **k)

        monkeypatch.setattr(type(bundle), name, counted)
    seen = []
    takes = render_takes(prepared, cot, bundle, FAST, [5, 6, 7], progress=lambda d, t: seen.append((d, t)))
    windows = len(render_plan(prepared, bundle, FAST))
    assert calls == {"encode_cot": 1, "window_conditions": windows}
    total = 3 * windows * FAST.steps
    assert [d for d, _ in seen] == list(range(1, total + 1)) and {t for _, t in seen} == {total}
    monkeypatch.undo()
    for seed, take in zip([5, 6, 7], takes):
        np.testing.assert_array_equal(take, render(prepared, cot, bundle, replace(FAST, seed=seed)))
    batched = render_takes(prepared, cot, bundle, FAST, [5, 6, 7], batch=True)
    for one, many in zip(takes, batched):
        np.testing.assert_allclose(many, one, atol=1e-4)


def test_render_candidates_keeps_the_best(tmp_path, model_dir, clang, capsys):
    video, _, cot = clang
    (tmp_path / "cot.json").write_text(json.dumps(cot.to_dict()))
    args = ["render", video, "--out", tmp_path / "o", "--cot", tmp_path / "cot.json", "--model", model_dir]
    rc, out, err = _cli(*args, "--seed", "11", "--steps", "2", "--candidates", "3", capsys=capsys)
    assert rc == 0, err
    line = json.loads(out)
    cands = line["candidates"]
    assert len(cands) == 3 and line["seed"] == cands[0]["seed"] and line["total"] == cands[0]["total"]
    assert [c["total"] for c in cands] == sorted((c["total"] for c in cands), reverse=True)
    assert line["weights"] == DEFAULT_WEIGHTS
    bundle = load_bundle(model_dir)
    best = render(prepare_video(video, bundle), cot, bundle, replace(FAST, seed=line["seed"]))
    written, _ = sf.read(line["wav"], dtype="float32")
    safe, level = make_safe(best, bundle.sample_rate)  # written as every take is: level-safe, then 24-bit
    np.testing.assert_allclose(written, safe, atol=2.0**-23)
    assert line["true_peak_dbtp"] == level["true_peak_dbtp"] <= -1.0 and line["lufs"] == level["lufs"]


def test_score_command_reports_scores_and_total(tmp_path, clang, capsys):
    video, audio, cot = clang
    sf.write(tmp_path / "take.wav", audio, SR, subtype="FLOAT")
    sf.write(tmp_path / "mirrored.wav", audio[:, ::-1], SR, subtype="FLOAT")
    (tmp_path / "cot.json").write_text(json.dumps(cot.to_dict()))
    lines = []
    for name in ("take", "mirrored"):
        rc, out, err = _cli("score", video, tmp_path / f"{name}.wav", "--cot", tmp_path / "cot.json", capsys=capsys)
        assert rc == 0, err
        lines.append(json.loads(out))
    take, mirrored = lines
    assert take["cot_source"] == "file" and set(take["scores"]) == set(DIMENSIONS)
    assert take["total"] == pytest.approx(weighted_total(take["scores"], DEFAULT_WEIGHTS), abs=1e-3)
    assert take["scores"]["spatial"] > mirrored["scores"]["spatial"] + 0.3
    rc, out, err = _cli("score", video, tmp_path / "take.wav", "--weights", "temporal=1", capsys=capsys)
    assert rc == 0 and "planner" in err and json.loads(out)["cot_source"] == "planner"  # the default ships one
    assert json.loads(out)["total"] == json.loads(out)["scores"]["temporal"]
    save_bundle(tiny_bundle(), tmp_path / "no-planner")
    rc, out, err = _cli("score", video, tmp_path / "take.wav", "--model", tmp_path / "no-planner", capsys=capsys)
    assert rc == 0 and "fallback" in err and json.loads(out)["cot_source"] == "fallback"


def test_score_bad_input_gives_one_line(tmp_path, clang, capsys):
    video, audio, _ = clang
    sf.write(tmp_path / "take.wav", audio, SR)
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "bad.json").write_text("{oops")
    cases = {
        "missing audio": ([video, tmp_path / "nope.wav"], "not found"),
        "not audio": ([video, tmp_path / "notes.txt"], "notes.txt"),
        "missing video": ([tmp_path / "nope.mp4", tmp_path / "take.wav"], "not found"),
        "not a video": ([tmp_path / "take.wav", tmp_path / "take.wav"], "no video stream"),
        "bad cot": ([video, tmp_path / "take.wav", "--cot", tmp_path / "bad.json"], "not valid JSON"),
        "negative weight": ([video, tmp_path / "take.wav", "--weights", "spatial=-1"], ">= 0"),
    }
    for name, (args, needle) in cases.items():
        rc, out, err = _cli("score", *args, capsys=capsys)
        lines = err.strip().splitlines()
        assert rc != 0 and len(lines) == 1 and lines[0].startswith("error:"), (name, err)
        assert needle in lines[0] and out == "", (name, err)
