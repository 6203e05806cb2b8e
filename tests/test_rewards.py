"""The reward heads on FoleyWorld clips: each dimension prefers the take that agrees with the picture
(aligned onsets over 300 ms late ones, the source on the moving side over mirrored channels, clean audio
over clipped / DC / silent audio, the matching Semantic text over an unrelated one); the weights, the
weighted total, the batched form against one take at a time, and concurrent scoring."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from engine.cot import Cot
from engine.errors import UserInputError
from engine.media import write_mp4
from engine.rewards import (
    DEFAULT_WEIGHTS,
    DIMENSIONS,
    RewardHeads,
    load_reward_heads,
    parse_weights,
    view_of_file,
    view_of_prepared,
    weighted_total,
)
from engine.rewards.aesthetic import sanity
from trainer.foleyworld.scene import WorldConfig
from trainer.foleyworld.splits import make_clip
from trainer.foleyworld.video import render_frames

SR = 44100
SHORT = WorldConfig(duration=3.0, width=64, height=64)  # 3 s, 64 px: the heads see what they would at 96 px

pytestmark = pytest.mark.usefixtures("one_thread")


def _write(tmp: Path, index: int, cls: str) -> tuple[Path, np.ndarray, Cot]:
    """test-single clip ``index`` at 3 s as an mp4; its audio (N, 2) and ground-truth CoT."""
    clip = make_clip("test-single", index, SHORT)
    assert clip.scene.sources[0].cls == cls, "FoleyWorld changed: pick another clip for this test"
    path = tmp / f"clip{index}.mp4"
    write_mp4(path, render_frames(clip.scene), SHORT.fps, clip.audio.audio, SR)
    return path, clip.audio.audio.astype(np.float32), clip.cot


@pytest.fixture(scope="module")
def clock(tmp_path_factory):
    """A clock on the right (x = 0.69) whose hand jumps three times, each jump a tick."""
    return _write(tmp_path_factory.mktemp("rw"), 8, "clock_tick")


@pytest.fixture(scope="module")
def clang(tmp_path_factory):
    """A metal slab on the left (x = -0.52) hit four times by a bouncing ball."""
    return _write(tmp_path_factory.mktemp("rw"), 11, "metal_clang")


@pytest.fixture(scope="module")
def heads() -> RewardHeads:
    return load_reward_heads()


def _late(audio: np.ndarray, seconds: float) -> np.ndarray:
    """The same take ``seconds`` late (silence in front, the end cut): same length."""
    k = round(seconds * SR)
    return np.concatenate([np.zeros((k, 2), np.float32), audio[:-k]])


# ------------------------------------------------------------------------------------------ weights


def test_parse_weights_fills_missing_dimensions_with_zero():
    assert parse_weights("semantic=1,temporal=0.6,aesthetic=0.1,spatial=0.4") == DEFAULT_WEIGHTS
    assert parse_weights(" temporal = 2 ") == {"semantic": 0.0, "temporal": 2.0, "aesthetic": 0.0, "spatial": 0.0}


@pytest.mark.parametrize(
    "text, needle",
    [
        ("semantic=-1", ">= 0"),
        ("loudness=1", "NAME=NUMBER"),
        ("semantic", "NAME=NUMBER"),
        ("semantic=abc", "not a number"),
        ("semantic=0,spatial=0", "positive"),
        ("semantic=1,semantic=2", "twice"),
        ("semantic=inf", "finite"),
        ("", "positive"),
    ],
)
def test_parse_weights_rejects_bad_input(text, needle):
    with pytest.raises(UserInputError, match=needle):
        parse_weights(text)


def test_weighted_total_is_the_normalised_weighted_sum():
    scores = {"semantic": 1.0, "temporal": 0.5, "aesthetic": 0.0, "spatial": 0.25}
    assert weighted_total(scores, DEFAULT_WEIGHTS) == pytest.approx((1.0 + 0.3 + 0.0 + 0.1) / 2.1)
    assert weighted_total(scores, {"temporal": 3.0}) == pytest.approx(0.5)  # other dimensions need no score
    with pytest.raises(UserInputError):
        weighted_total(scores, {"semantic": -1.0, "temporal": 1.0})
    with pytest.raises(UserInputError):
        weighted_total(scores, {"semantic": 0.0})


# ---------------------------------------------------------------------------------------- the heads


def test_every_dimension_scores_in_unit_range_with_info(heads, clock):
    video, audio, cot = clock
    scores, info = heads.score_take(audio, SR, video, cot)
    assert tuple(scores) == DIMENSIONS
    assert all(0.0 <= s <= 1.0 for s in scores.values())
    assert set(info) == set(DIMENSIONS) and all("head" in v for v in info.values())
    assert info["spatial"]["x_video"] > 0.3  # the clock is on the right of the picture


def test_temporal_prefers_onsets_on_the_visible_events(heads, clock, clang):
    for video, audio, cot in (clock, clang):
        silent = np.zeros_like(audio)
        (on_time, late, mute), _ = heads.heads["temporal"].score(
            np.stack([audio, _late(audio, 0.3), silent]), SR, view_of_file(video), cot
        )
        assert on_time > late + 0.25, (video.name, on_time, late)
        assert on_time > mute + 0.25


def test_spatial_prefers_the_source_on_the_moving_side(heads, clock, clang):
    for video, audio, cot in (clock, clang):
        (same, mirrored), info = heads.heads["spatial"].score(
            np.stack([audio, audio[:, ::-1]]), SR, view_of_file(video), cot
        )
        assert same > 0.8 and mirrored < 0.4, (video.name, same, mirrored)
        assert np.sign(info["items"][0]["x_audio"]) == np.sign(info["items"][0]["x_video"])


def test_aesthetic_penalises_clipping_dc_and_silence(heads, clock):
    video, audio, cot = clock
    clipped = np.clip(audio * 30.0, -1.0, 1.0)
    dc = audio + 0.1
    takes = np.stack([audio, clipped, dc, np.zeros_like(audio)])
    (clean, clip_s, dc_s, silent_s), _ = heads.heads["aesthetic"].score(takes, SR, view_of_file(video), cot)
    assert clean > 0.5 and clean > clip_s + 0.2 and clean > dc_s + 0.2
    assert silent_s == 0.0  # every frame silent: the silence factor is 0
    assert sanity(audio, SR)["sanity"] == pytest.approx(1.0, abs=0.02)  # a clean FoleyWorld take passes


def test_semantic_prefers_the_matching_text(heads, clock):
    video, audio, cot = clock
    wrong = Cot("rain pours on a tin roof, heavy and steady", cot.temporal, cot.aesthetic, cot.spatial)
    head, view = heads.heads["semantic"], view_of_file(video)
    (match,), _ = head.score(audio[None], SR, view, cot)
    (other,), _ = head.score(audio[None], SR, view, wrong)
    assert match > other + 0.1
    (neutral,), info = head.score(audio[None], SR, view, Cot("", "", "", ""))
    assert neutral == 0.5 and info["text"] == ""


# ------------------------------------------------------------------------------ batching, threads


def test_batch_equals_one_take_at_a_time(heads, clang):
    video, audio, cot = clang
    takes = np.stack([audio, _late(audio, 0.3), audio[:, ::-1] * 0.5])
    batch, _ = heads.score_batch(takes, SR, video, cot)
    for take, scores in zip(takes, batch):
        single, _ = heads.score_take(take, SR, video, cot)
        assert single == pytest.approx(scores, abs=1e-6)


def test_view_of_a_prepared_video_is_the_view_of_its_file(clang):
    from engine.pipeline import prepare_video
    from tests.bundles import tiny_bundle, tiny_planner

    video, _, _ = clang
    prepared, view = view_of_prepared(prepare_video(video, tiny_bundle())), view_of_file(video)
    assert prepared.rate == view.rate and prepared.duration == view.duration
    np.testing.assert_array_equal(prepared.motion, view.motion)
    with_cues = prepare_video(video, tiny_bundle(planner=tiny_planner()))  # sync = motion, then the cues
    assert with_cues.sync.shape[1] > view.motion.shape[1]
    np.testing.assert_array_equal(view_of_prepared(with_cues).motion, view.motion)


def test_heads_score_concurrently(heads, clock):
    video, audio, cot = clock
    expected, _ = heads.score_take(audio, SR, video, cot)
    results, errors = [], []

    def work():
        try:
            results.append(heads.score_take(audio, SR, video, cot)[0])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 3
    for r in results:
        assert r == pytest.approx(expected, abs=1e-9)


# ------------------------------------------------------------------------------ calibration table


def test_bench_rewards_ranks_the_ground_truth_first(tmp_path, capsys):
    import json

    from tests.test_pipeline import _cli
    from trainer.foleyworld.splits import write_split

    write_split("test-single", tmp_path / "split", 2, SHORT)  # a fire on the left, a bell on the right
    rows = "ground_truth,late,mirrored,shuffled,noise"
    rc, out, err = _cli("bench", "--rewards", "--data", tmp_path / "split", "--rows", rows, capsys=capsys)
    assert rc == 0, err
    table = json.loads(out)["rows"]
    gt = table["ground_truth"]
    assert gt["temporal"] > table["late"]["temporal"] + 0.2 and gt["spatial"] > table["mirrored"]["spatial"] + 0.3
    assert gt["semantic"] > table["shuffled"]["semantic"] and gt["aesthetic"] > table["noise"]["aesthetic"]
    assert all(gt["total"] > table[r]["total"] for r in ("late", "mirrored", "shuffled", "noise"))
    assert "| ground_truth |" in err
