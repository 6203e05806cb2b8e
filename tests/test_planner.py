"""The default planner: the CoT writer, the network, reading outputs into a scene, its accuracy
measure, training targets and resumption, and the `plan` / `render` command lines."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import launch
from engine.bench.planning import compare, match_events, mean_visible_x, side_of
from engine.bundle import PLANNER_FILE, save_bundle
from engine.errors import UserInputError
from engine.media import write_mp4
from engine.planner.default import DefaultPlanner, ReadSettings, pick_events, read_scene
from engine.planner.network import (
    HEADS,
    ClassInfo,
    PlannerConfig,
    PlannerNet,
    activate,
    load_planner_net,
    pool_columns,
    save_planner,
)
from engine.planner.writer import SceneSketch, SourceSketch, write_blocks
from tests.bundles import tiny_bundle
from trainer.foleyworld.scene import WorldConfig, sample_scene
from trainer.foleyworld.video import render_frames
from trainer.planner.train import PlannerTrainConfig, clip_targets, mirrored, planner_classes, train_planner

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = (
    ClassInfo("wood_knock", "impact", "discrete", False, 0.25),
    ClassInfo("rain", "texture", "continuous", False, 0.25),
    ClassInfo("car_pass", "moving", "continuous", True, 0.25),
    ClassInfo("footsteps", "mechanical", "discrete", True, 0.35),
)
TINY = PlannerConfig(classes=CLASSES, channels=(8, 8, 16), width=16, dilations=(1, 2))


def _outputs(frames: int) -> torch.Tensor:
    """Network outputs (F, C, H) that say: nothing visible, no events, everything centred."""
    out = torch.zeros(frames, len(CLASSES), len(HEADS))
    out[..., HEADS.index("present")] = -8.0
    out[..., HEADS.index("event")] = -8.0
    return out


# ------------------------------------------------------------------------------------------ writer


def test_writer_speaks_of_each_dimension_in_its_block():
    knock = SourceSketch("wood_knock", "impact", "discrete", -0.6, -0.6, 1.2, 0.0, 9.0, events=[1.0, 2.5, 4.0])
    rain = SourceSketch("rain", "texture", "continuous", 0.5, 0.5, 0.8, 0.0, 9.0, curve=[0.4] * 20 + [1.0] * 21)
    cot = write_blocks(SceneSketch(9.0, [knock, rain]), np.random.default_rng(0))
    assert "wood" in cot.semantic and "rain" in cot.semantic.lower()
    assert all(t in cot.temporal for t in ("1.0", "2.5", "4.0")) and "swelling" in cot.temporal
    assert "far left" in cot.spatial and "right" in cot.spatial and "close" in cot.spatial.lower()
    assert "reverb" in cot.aesthetic or "room" in cot.aesthetic  # the neutral middle room
    assert not any(ch.isdigit() for ch in cot.semantic + cot.spatial + cot.aesthetic)  # times only in Temporal


def test_writer_with_no_source_leaves_the_content_blocks_empty_and_names_unknown_classes():
    cot = write_blocks(SceneSketch(4.0, []), np.random.default_rng(0))
    assert cot.semantic == cot.temporal == cot.spatial == "" and cot.aesthetic
    odd = SourceSketch("door_slam", "impact", "discrete", 0.0, 0.0, 1.0, 0.0, 4.0, events=[1.0])
    cot = write_blocks(SceneSketch(4.0, [odd]), np.random.default_rng(0))
    assert "door slam" in cot.semantic and "1.0" in cot.temporal


# ------------------------------------------------------------------------------------------ network


def test_network_shapes_and_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    net = PlannerNet(config=TINY).eval()
    frames = torch.randint(0, 256, (2, 10, 64, 64, 3), dtype=torch.uint8)
    out = net(frames)
    assert out.shape == (2, 10, len(CLASSES), len(HEADS))
    save_planner(net, tmp_path / "p.safetensors", dtype=torch.float32)
    back = load_planner_net(tmp_path / "p.safetensors")
    assert back.config == TINY
    torch.testing.assert_close(back(frames), out)
    with pytest.raises(ValueError, match="frames"):
        net(frames[..., :2])
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    with pytest.raises(UserInputError, match="not a safetensors file"):
        load_planner_net(tmp_path / "bad.safetensors")


def test_columns_layout_shapes_round_trip_and_config_of_older_files(tmp_path):
    torch.manual_seed(0)
    cfg = replace(TINY, layout="columns")
    net = PlannerNet(config=cfg).eval()
    frames = torch.randint(0, 256, (2, 10, 64, 64, 3), dtype=torch.uint8)
    out = net(frames)
    assert out.shape == (2, 10, len(CLASSES), len(HEADS)) and torch.isfinite(out).all()
    save_planner(net, tmp_path / "c.safetensors", dtype=torch.float32)
    back = load_planner_net(tmp_path / "c.safetensors")
    assert back.config == cfg
    torch.testing.assert_close(back(frames), out)
    old = json.loads(TINY.to_json())
    del old["layout"]  # a file written before the field existed
    assert PlannerConfig.from_json(json.dumps(old)) == TINY and TINY.layout == "frame"
    with pytest.raises(ValueError, match="layout"):
        replace(TINY, layout="grid")


def test_pooling_over_columns_reads_a_class_where_it_is_seen():
    w, c = 8, len(CLASSES)
    out = torch.zeros(1, w, 3, c, len(HEADS))  # (B, W, F, C, H): nothing decided anywhere
    pooled = activate(pool_columns(out))
    torch.testing.assert_close(pooled["present"], torch.zeros(1, 3, c))  # the mean of equal logits: undecided
    torch.testing.assert_close(pooled["x"], torch.zeros(1, 3, c), atol=1e-6, rtol=0)  # the mean of the centres
    out[0, :, :, 1, 0] = -30.0  # class 1 seen in column 6 alone, a quarter column right of its centre
    out[0, 6, :, 1, 0] = 12.0
    out[0, 6, :, 1, HEADS.index("x")] = math.atanh(0.5)
    out[0, 6, :, 1, HEADS.index("size")] = 0.8
    out[0, 2, :, 1, HEADS.index("size")] = -5.0  # where it is not seen, its size does not count
    pooled = activate(pool_columns(out))
    torch.testing.assert_close(pooled["present"][0, :, 1], torch.full((3,), 12.0 - math.log(w)))
    centre = (6 + 0.5) * 2 / w - 1
    torch.testing.assert_close(pooled["x"][0, :, 1], torch.full((3,), centre + 0.5 / w), atol=1e-5, rtol=0)
    torch.testing.assert_close(pooled["size"][0, :, 1], torch.full((3,), 1.0 + 0.5 * math.tanh(0.8)), atol=1e-5, rtol=0)


def test_mirrored_crops_flip_the_picture_and_negate_positions():
    rng = np.random.default_rng(0)
    item = {
        "frames": rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8),
        "present": rng.random((4, 2)).astype(np.float32),
        "x": rng.uniform(-1, 1, (4, 2)).astype(np.float32),
    }
    flipped = mirrored(item)
    assert np.array_equal(flipped["frames"][:, :, 0], item["frames"][:, :, 7])
    assert np.array_equal(flipped["x"], -item["x"]) and flipped["present"] is item["present"]
    twice = mirrored(flipped)
    assert all(np.array_equal(twice[k], item[k]) for k in item)


def test_the_network_sees_only_a_limited_window_of_frames():
    """Outputs at frame k depend on frames within the temporal receptive field, not beyond."""
    torch.manual_seed(0)
    net = PlannerNet(config=TINY).eval()
    for m in net.temporal:  # give the zero-initialised residuals weights
        torch.nn.init.normal_(m.weight, std=0.1)
    frames = torch.randint(0, 256, (1, 40, 64, 64, 3), dtype=torch.uint8)
    changed = frames.clone()
    changed[0, 39] = 255 - changed[0, 39]
    a, b = net(frames), net(changed)
    reach = 1 + sum(TINY.dilations)  # the frame difference reaches one frame, each conv its dilation
    assert torch.equal(a[0, : 39 - reach], b[0, : 39 - reach])
    assert not torch.equal(a[0, 39 - reach + 1 :], b[0, 39 - reach + 1 :])


# ------------------------------------------------------------------------------------------ reading


def test_pick_events_refines_peaks_and_keeps_the_minimum_gap():
    prob = np.zeros(50)
    prob[10] = 0.9  # symmetric neighbours: exactly on the frame
    prob[9] = prob[11] = 0.5
    prob[30], prob[31] = 0.8, 0.8 * 0.999  # a later neighbour almost as high: just under half a frame late
    prob[33] = 0.7  # within the minimum gap of the stronger peak at 30: dropped
    times = pick_events(prob, rate=10.0, threshold=0.6, min_gap=0.4)
    assert times[0] == pytest.approx(1.0)
    assert len(times) == 2 and 3.0 < times[1] <= 3.05
    assert pick_events(prob, rate=10.0, threshold=0.6, min_gap=0.2) == [1.0, times[1], 3.3]
    assert pick_events(prob, rate=10.0, threshold=0.95, min_gap=0.4) == []


def test_read_scene_places_static_and_moving_sources():
    rate, frames = 24.0, 216
    out = _outputs(frames)
    t = torch.arange(frames) / rate
    p, e, x = (HEADS.index(h) for h in ("present", "event", "x"))
    out[:, 0, p] = 6.0  # wood knock, visible throughout at x = 0.5, events at frames 24 and 120
    out[:, 0, x] = torch.atanh(torch.tensor(0.5 / 1.5))
    out[[24, 120], 0, e] = 6.0
    car = (0.5 * (t - 4.0)).clamp(-1.4, 1.4)  # the car crosses left to right at 0.5 per second, centre at 4 s
    visible = car.abs() <= 1.0
    out[visible, 2, p] = 6.0
    out[:, 2, x] = torch.atanh(car / 1.5)
    scene = read_scene(out, CLASSES, rate, 9.0, ReadSettings())
    assert [s.cls for s in scene.sources] == ["wood_knock", "car_pass"]
    knock, passing = scene.sources
    assert knock.x0 == knock.x1 == pytest.approx(0.5, abs=1e-3)
    assert knock.events == pytest.approx([1.0, 5.0], abs=1e-3)
    assert (passing.x0, passing.x1) == (-1.4, 1.4)
    assert passing.t_start == pytest.approx(4.0 - 2.8, abs=0.05) and passing.t_end == pytest.approx(6.8, abs=0.05)
    assert passing.curve and passing.events == []


def test_read_scene_always_describes_something():
    scene = read_scene(_outputs(48), CLASSES, 24.0, 2.0)
    assert len(scene.sources) == 1  # nothing passed the threshold: the most likely source


# ------------------------------------------------------------------------------------------ accuracy measure


def test_compare_counts_classes_events_and_sides_exactly():
    meta = {
        "duration": 9.0,
        "sources": [
            {
                "cls": "wood_knock",
                "x0": -0.5,
                "x1": -0.5,
                "t_start": 0,
                "t_end": 9,
                "events": [1.0, 2.0, 3.0],
                "offscreen": False,
            },
            {
                "cls": "footsteps",
                "x0": -0.4,
                "x1": 0.6,
                "t_start": 0,
                "t_end": 9,
                "events": [0.5, 1.5],
                "offscreen": False,
            },
            {"cls": "rain", "x0": 1.3, "x1": 1.3, "t_start": 0, "t_end": 9, "events": [], "offscreen": True},
        ],
    }
    found = SceneSketch(
        9.0,
        [
            SourceSketch("wood_knock", "impact", "discrete", 0.1, 0.1, 1.0, 0, 9, events=[1.05, 2.2, 2.95, 7.0]),
            SourceSketch("footsteps", "mechanical", "discrete", 0.5, -0.3, 1.0, 0, 9, events=[0.45]),
        ],
    )
    c = compare(meta, found, {"wood_knock": "impact", "footsteps": "mechanical"})
    assert c["classes_exact"] == 1  # off-screen rain is not part of what can be seen
    assert (c["impact_events"], c["impact_hit"]) == (3, 2)  # 2.2 is 200 ms off
    assert (c["events"], c["events_hit"], c["predicted_events"]) == (5, 3, 5)
    assert (c["side_total"], c["side_ok"]) == (2, 1)  # knock found at centre (truth left); walker centre in both
    assert (c["moving"], c["direction_ok"]) == (1, 0)
    assert match_events([1.0, 1.05], [1.02]) == 1  # one-to-one
    assert side_of(mean_visible_x(-1.4, 1.4, 0.0, 9.0, 9.0)) == "centre"


# ------------------------------------------------------------------------------------------ training


def test_targets_follow_the_scene():
    scene = sample_scene(11, WorldConfig(duration=4.0))
    classes = planner_classes()
    names = [c.name for c in classes]
    tg = clip_targets(scene, 96, 24.0, classes)
    for src in scene.sources:
        c = names.index(src.cls)
        if src.offscreen:
            assert tg["present"][:, c].sum() == 0
            continue
        for ev in src.events:
            assert tg["event"][round(ev * 24.0), c] == 1.0
        assert tg["x"][0, c] == pytest.approx(src.x_at(0.0))
    shown = {names[c] for c in np.flatnonzero(tg["present"].max(0))}
    assert shown == {s.cls for s in scene.sources if not s.offscreen}


@pytest.mark.parametrize("layout", ["frame", "columns"])
def test_training_resumes_exactly_and_learns(tmp_path, layout):
    # rendered frames, not the H.264 round trip: libx264 does not give the same bits on every run of a busy
    # machine, and exact resumption is about the training state, not the encoder
    cfg = dict(
        layout=layout,
        flip=layout == "columns",  # mirrored crops are drawn from the crop RNG: resumption stays exact
        via_mp4=False,
        steps=8,
        batch=2,
        crop_frames=16,
        pool_size=3,
        pool_refresh_every=4,
        pool_refresh_count=1,
        log_every=1,
        ckpt_every=2,
        lr=3e-3,
        warmup=1,
    )
    whole = train_planner(tmp_path / "a.safetensors", PlannerTrainConfig(**cfg))
    part = train_planner(tmp_path / "b.safetensors", PlannerTrainConfig(**cfg, stop_at=4))
    assert not part["finished"] and part["path"] is None
    rest = train_planner(tmp_path / "b.safetensors", PlannerTrainConfig(**cfg))
    assert rest["resumed_from"] == 4 and rest["finished"]
    a, b = load_planner_net(tmp_path / "a.safetensors"), load_planner_net(tmp_path / "b.safetensors")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, msg=k)
    parts = lambda r: [h["present"] for h in r["history"]]  # noqa: E731 - the whole run's, from the checkpoint
    assert len(parts(rest)) == cfg["steps"] and parts(rest) == pytest.approx(parts(whole), rel=1e-5)
    first, last = whole["history"][0], whole["history"][-1]
    assert last["present"] < first["present"] and last["event"] < first["event"]


# ------------------------------------------------------------------------------------------ command line


@pytest.fixture(scope="module")
def planned_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    save_bundle(tiny_bundle(), folder)
    torch.manual_seed(0)
    net = PlannerNet(config=PlannerConfig(classes=planner_classes(), channels=(8, 8, 16), width=16))
    save_planner(net, folder / PLANNER_FILE)
    return folder


@pytest.fixture(scope="module")
def world_clip(tmp_path_factory) -> Path:
    scene = sample_scene(5, WorldConfig(duration=3.0))
    path = tmp_path_factory.mktemp("clip") / "scene.mp4"
    write_mp4(path, render_frames(scene), scene.config.fps)
    return path


def _cli(*args, capsys) -> tuple[int, str, str]:
    try:
        rc = launch.main([str(a) for a in args])
    except SystemExit as exc:
        rc = exc.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_plan_prints_a_valid_cot(planned_model, world_clip, capsys):
    rc, out, err = _cli("plan", world_clip, "--model", planned_model, capsys=capsys)
    assert rc == 0, err
    cot = json.loads(out)
    assert set(cot) == {"semantic", "temporal", "aesthetic", "spatial"} and cot["semantic"] and cot["aesthetic"]
    again = DefaultPlanner.load(planned_model).plan(world_clip)
    assert again.to_dict() == cot  # deterministic


def test_plan_bad_input_is_one_line(tmp_path, planned_model, capsys):
    (tmp_path / "notes.mp4").write_text("not a video")
    (tmp_path / "empty.mp4").write_bytes(b"")
    cases = {"notes.mp4": "not a readable video", "empty.mp4": "empty", "missing.mp4": "not found"}
    for name, words in cases.items():
        rc, out, err = _cli("plan", tmp_path / name, "--model", planned_model, capsys=capsys)
        assert rc == 2 and out == "" and words in err and len(err.strip().splitlines()) == 1, (name, err)
    bare = tmp_path / "bare"
    save_bundle(tiny_bundle(), bare)
    rc, _, err = _cli("plan", tmp_path / "notes.mp4", "--model", bare, capsys=capsys)
    assert rc == 2 and "has no planner" in err and len(err.strip().splitlines()) == 1


def test_render_without_cot_uses_the_planner(tmp_path, planned_model, world_clip, capsys):
    rc, out, err = _cli(
        "render", world_clip, "--out", tmp_path, "--steps", "1", "--model", planned_model, "--seed", "1", capsys=capsys
    )
    assert rc == 0, err
    assert json.loads(out)["cot_source"] == "planner"
    written = json.loads((tmp_path / "scene.cot.json").read_text())
    assert written == DefaultPlanner.load(planned_model).plan(world_clip).to_dict()


def test_plan_with_a_missing_llm_is_one_line(tmp_path, world_clip, capsys):
    rc, out, err = _cli(
        "plan", world_clip, "--planner", "mllm", "--mllm-model", tmp_path / "no-such-model", capsys=capsys
    )
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1 and "no-such-model" in err


def test_pool_workers_render_the_same_clips_and_init_starts_from_a_file(tmp_path):
    from trainer.planner.train import ScenePool, new_training_state

    cfg = dict(steps=2, batch=1, crop_frames=16, pool_size=2, via_mp4=False)
    one = ScenePool(config=PlannerTrainConfig(**cfg), classes=planner_classes())
    two = ScenePool(config=PlannerTrainConfig(**cfg, workers=2), classes=planner_classes())
    one.update(0)
    two.update(0)
    assert sorted(one.clips) == sorted(two.clips) == [0, 1]
    for i in one.clips:
        for key, value in one.clips[i].items():
            np.testing.assert_array_equal(two.clips[i][key], value, err_msg=key)
    later = ScenePool(config=PlannerTrainConfig(**cfg, first_scene=1), classes=planner_classes())
    later.update(0)
    assert sorted(later.clips) == [1, 2]  # a warm-started run can go on to scenes the first never saw
    np.testing.assert_array_equal(later.clips[1]["frames"], one.clips[1]["frames"])
    start = new_training_state(PlannerTrainConfig(**cfg, seed=7))["model"]
    save_planner(start, tmp_path / "start.safetensors")
    warm = new_training_state(PlannerTrainConfig(**cfg, init=str(tmp_path / "start.safetensors")))["model"]
    for (k, a), b in zip(start.state_dict().items(), warm.state_dict().values()):
        torch.testing.assert_close(b, a.half().float(), msg=k)  # the file holds float16 weights


# ------------------------------------------------------------------------------------------ calibration


def _clip(score, truth, prob=None, events=None, duration=2.0):
    from trainer.planner.calibrate import ClipOutputs

    prob = np.zeros((48, len(CLASSES))) if prob is None else prob
    return ClipOutputs(np.array(score, float), prob, frozenset(truth), events or {}, duration)


def test_presence_calibration_finds_a_threshold_per_class():
    from trainer.planner.calibrate import exact_rate, fit_presence, jaccard

    # wood knock reads weakly (0.3 when there, 0.1 when not); footsteps strongly, also when absent (0.6)
    clips = [_clip([0.3, 0.0, 0.0, 0.6], {0}), _clip([0.1, 0.9, 0.0, 0.8], {1, 3}), _clip([0.3, 0.9, 0.0, 0.6], {0, 1})]
    clips += [_clip([0.1, 0.9, 0.0, 0.6], {1})]
    start = np.full(4, 0.5)
    assert exact_rate(clips, start, 3) == 0.25  # the global threshold names footsteps too often, knocks never
    t = fit_presence(clips, start, 3)
    assert exact_rate(clips, t, 3) == 1.0
    assert 0.1 < t[0] <= 0.3 and 0.6 < t[3] <= 0.8 and t[1] == 0.5  # a class with nothing to gain keeps its value
    # partly right counts in part under the Jaccard objective: knocks alone of knocks + rain is a half
    assert jaccard([_clip([0.9, 0.3, 0.0, 0.0], {0, 1})], start, 3) == 0.5
    assert jaccard(clips, fit_presence(clips, start, 3, objective="jaccard"), 3) == 1.0


def test_the_f2_objective_costs_a_missed_source_more_than_a_spurious_one():
    from trainer.planner.calibrate import fit_presence, recall_f2

    start = np.full(4, 0.5)
    missed = recall_f2([_clip([0.9, 0.3, 0.0, 0.0], {0, 1})], start, 3)  # knocks named, rain missed
    spurious = recall_f2([_clip([0.9, 0.9, 0.6, 0.0], {0, 1})], start, 3)  # both named and a third beside
    assert missed == 5 / 9 and spurious == 10 / 11 and spurious > missed
    # rain reads weakly where it is (0.35): the objective lowers its threshold until rain is named
    clips = [_clip([0.9, 0.35, 0.0, 0.0], {0, 1}), _clip([0.9, 0.0, 0.0, 0.0], {0})]
    t = fit_presence(clips, start, 3, objective="f2")
    assert t[1] <= 0.35 and recall_f2(clips, t, 3) == 1.0


def test_event_calibration_lowers_the_threshold_of_a_class_with_weak_peaks():
    from trainer.planner.calibrate import event_f_beta, fit_events

    net = PlannerNet(config=TINY)
    prob = np.full((48, len(CLASSES)), 0.02)
    prob[[12, 36], 0] = 0.3  # two wood knocks at 0.5 s and 1.5 s, peaks well under the default 0.5
    prob[24, 0] = 0.12  # and a weaker false peak
    clips = [_clip([0.9, 0.0, 0.0, 0.0], {0}, prob, {0: [0.5, 1.5]}) for _ in range(2)]
    clips.append(_clip([0.9, 0.0, 0.0, 0.0], {0, 3}, prob, {0: [0.5, 1.5], 3: [1.0]}))  # footsteps unseen
    got = fit_events(clips, np.full(4, 0.5), net, ReadSettings())
    assert set(got) == {0, 3} and 0.12 < got[0] <= 0.3  # both peaks, not the false one
    assert got[3] == 0.5  # footsteps: never named, nothing to learn: the value nearest the default
    assert event_f_beta(2, 2, 2, 1.0) == 1.0 and event_f_beta(0, 2, 5, 1.0) == 0.0
    assert event_f_beta(1, 2, 1, 2.0) == pytest.approx(5 * 0.5 / (4 + 0.5))


def test_calibrated_thresholds_travel_in_the_planner_file_and_drive_the_reading(tmp_path):
    net = PlannerNet(config=TINY)
    net.thresholds = {"present": {"wood_knock": 0.2}, "event": {"wood_knock": 0.25}}
    save_planner(net, tmp_path / "p.safetensors")
    back = load_planner_net(tmp_path / "p.safetensors")
    assert back.thresholds == net.thresholds
    settings = DefaultPlanner(back).settings
    assert settings.present_of("wood_knock") == 0.2 and settings.present_of("rain") == 0.5
    out = _outputs(48)
    out[:, 0, HEADS.index("present")] = -0.5  # visibility 0.38: under the global 0.5, over the knock's 0.2
    out[[12, 36], 0, HEADS.index("event")] = -0.4  # event probability 0.40
    out[:, 1, HEADS.index("present")] = 1.0  # rain at 0.73, named either way
    plain = read_scene(out, CLASSES, 24.0, 2.0, ReadSettings())
    tuned = read_scene(out, CLASSES, 24.0, 2.0, settings)
    assert [s.cls for s in plain.sources] == ["rain"]
    assert [s.cls for s in tuned.sources] == ["rain", "wood_knock"] and tuned.sources[1].events == pytest.approx(
        [0.5, 1.5]
    )
    bundle = tiny_bundle(back)  # a model folder keeps them too
    assert load_planner_net(save_bundle(bundle, tmp_path / "m") / PLANNER_FILE).thresholds == net.thresholds


def test_calibrate_on_val_clips_writes_a_planner_with_thresholds(tmp_path):
    from trainer.planner.calibrate import calibrate

    net = PlannerNet(config=PlannerConfig(classes=planner_classes(), channels=(8, 8, 16), width=16, dilations=(1,)))
    save_planner(net, tmp_path / "p.safetensors")
    report = calibrate(
        tmp_path / "p.safetensors", 20, tmp_path / "c.safetensors", tmp_path / "val", world=WorldConfig(duration=2.0)
    )
    back = load_planner_net(tmp_path / "c.safetensors")
    assert back.thresholds == report["thresholds"] and set(back.thresholds["present"]) == {
        c.name for c in planner_classes()
    }
    assert report["classes_exact_val"]["after"] >= report["classes_exact_val"]["before"]
    assert json.loads((tmp_path / "val" / "index.json").read_text())["split"] == "val"
    with pytest.raises(UserInputError, match="at least 20"):
        calibrate(tmp_path / "p.safetensors", 5, tmp_path / "x.safetensors", tmp_path / "val")


def test_calibrate_planner_bad_options_are_one_line(tmp_path, capsys):
    from tests.test_pipeline import _cli

    rc, _, err = _cli(
        "train", "calibrate-planner", "--event-beta", "0", "--out", tmp_path / "p.safetensors", capsys=capsys
    )
    assert rc == 2 and err.startswith("error:") and "--event-beta" in err and len(err.strip().splitlines()) == 1
    rc, _, err = _cli("train", "calibrate-planner", "--out", tmp_path / "p.bin", capsys=capsys)
    assert rc == 2 and ".safetensors" in err and len(err.strip().splitlines()) == 1
