"""FoleyBench on a small written split, with the shipped metric models."""

from __future__ import annotations

import numpy as np
import pytest

from engine.bench.metric_nets import load_metric_models
from engine.bench.run import bench_split, markdown_table
from trainer.foleyworld.scene import WorldConfig
from trainer.foleyworld.splits import write_split


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    write_split("test-multi", folder, 10, WorldConfig(duration=5.0), video=False)
    return bench_split(folder, ["ground_truth", "shuffled", "noise"], models=load_metric_models())


def test_ground_truth_scores_high_and_beats_shuffled_and_noise(result):
    gt, sh, nz = (result["rows"][r] for r in ("ground_truth", "shuffled", "noise"))
    assert gt["onset_f1_100"] >= 0.9
    assert gt["onset_f1_100"] > sh["onset_f1_100"] + 0.3
    assert gt["lr_acc"] >= 0.85 and gt["lr_acc"] > sh["lr_acc"]
    assert gt["class_acc"] >= 0.7 and gt["class_acc"] > sh["class_acc"] and gt["class_acc"] > nz["class_acc"]
    assert gt["clap"] > sh["clap"]
    assert gt["quality"] > nz["quality"]
    assert gt["kl"] == pytest.approx(0.0, abs=1e-9) and sh["kl"] > 0.1
    assert gt["fd"] == pytest.approx(0.0, abs=1e-3) and nz["fd"] > 1.0  # 10 clips in 128-D: sqrtm round-off


def test_markdown_table_lists_every_row(result):
    table = markdown_table(result)
    for row in ("ground_truth", "shuffled", "noise"):
        assert f"| {row} |" in table
    assert result["n_clips"] == 10


def test_codec_row_returns_audio_of_the_same_length():
    import numpy as np
    import torch

    from engine.bench.run import codec_row
    from engine.codec import CODEC_PRESETS, Codec

    torch.manual_seed(0)
    fn = codec_row(Codec(config=CODEC_PRESETS["tiny"]).eval())
    gt = np.random.default_rng(0).standard_normal((44100 + 123, 2)).astype(np.float32) * 0.1
    out = fn({"name": "x"}, gt, 44100)
    assert out.shape == gt.shape and np.isfinite(out).all()


def test_model_row_and_render_speed_through_the_command(tmp_path, capsys):
    """`bench --rows model` renders each clip's video with its ground-truth CoT; `bench --speed` times takes."""
    import json

    import launch
    from engine.bundle import save_bundle
    from tests.bundles import tiny_bundle

    folder = tmp_path / "split"
    write_split("test-single", folder, 2, WorldConfig(duration=3.0), video=True)
    model = save_bundle(tiny_bundle(), tmp_path / "tiny")
    args = ["bench", "--data", str(folder), "--rows", "ground_truth,model", "--model", str(model), "--steps", "2"]
    assert launch.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    row = result["rows"][f"model {model}"]
    assert result["n_clips"] == 2 and 0.0 <= row["class_acc"] <= 1.0 and row["fd"] > 0.0
    assert launch.main(["bench", "--speed", "2", "--model", str(model), "--steps", "2", "--candidates", "2"]) == 0
    speed = json.loads(capsys.readouterr().out)
    assert speed["runs"] == 2 and len(speed["times_s"]) == 2 and speed["video_seconds"] == 9.0
    assert 0.0 < speed["median_s"] and speed["peak_mb"] > 100.0
    best = speed["best_of"]  # the best-of-2 renders, timed beside the single takes
    assert speed["candidates"] == 2 and len(best["times_s"]) == 2
    assert speed["ratio"] == round(best["median_s"] / speed["median_s"], 2)


def test_best_of_n_row_keeps_the_best_of_its_own_seeds(tmp_path, one_thread):
    from dataclasses import replace

    from engine.bench.run import load_clips, render_row
    from engine.best_of_n import best_of_n
    from engine.pipeline import RenderSettings, prepare_video
    from engine.rewards import DEFAULT_WEIGHTS, load_reward_heads
    from tests.bundles import tiny_bundle

    folder = tmp_path / "split"
    write_split("test-single", folder, 2, WorldConfig(duration=2.0), video=True)
    metas, gts, sr = load_clips(folder)
    bundle, settings = tiny_bundle(), RenderSettings(seed=10, steps=2)
    row = render_row(bundle, folder, settings, candidates=3)
    meta = metas[1]  # clip index 1: seeds 10 + 3 .. 10 + 5
    got = row(meta, gts[1], sr)
    prepared = prepare_video(folder / f"{meta['name']}.mp4", bundle)
    ranked = best_of_n(
        prepared, bundle, meta["cot"], replace(settings, seed=13), 3, DEFAULT_WEIGHTS, load_reward_heads()
    )
    assert sorted(c.seed for c in ranked) == [13, 14, 15]
    n = min(len(got), len(ranked[0].audio))
    np.testing.assert_array_equal(got[:n], ranked[0].audio[:n])


def test_follow_times_scores_both_takes_against_the_true_and_the_moved_events(tmp_path, monkeypatch):
    """With a stand-in renderer that sounds exactly the onsets its Temporal block names, the written take
    matches the true events and the moved take the moved ones; the command prints both."""

    import engine.pipeline
    import launch
    from engine.bench.run import follow_times
    from engine.pipeline import RenderSettings
    from engine.timeline import read_temporal

    folder = tmp_path / "split"
    metas = write_split("test-single", folder, 4, WorldConfig(duration=4.0), video=True)
    sr = 44100

    def clicks(prepared, cot, bundle, settings):
        audio = np.zeros((4 * sr, 2), np.float32)
        noise = (
            np.random.default_rng(0).standard_normal((400, 2)).astype(np.float32)
            * np.exp(-np.arange(400) / 80)[:, None]
        )
        for t in (t for g in read_temporal(cot["temporal"]).onsets for t in g):
            i = int(round(t * sr))
            if 0 <= i < len(audio) - 400:
                audio[i : i + 400] += 0.5 * noise
        return audio

    monkeypatch.setattr(engine.pipeline, "render", clicks)
    monkeypatch.setattr(engine.pipeline, "prepare_video", lambda video, bundle: None)
    result = follow_times(None, folder, RenderSettings(), 0.7)
    written, moved = result["rows"]["written"], result["rows"]["moved"]
    assert sum(len(m["events"]) for m in metas) >= 4
    assert written["true_f1_100"] > 0.8 and moved["moved_f1_100"] > 0.8  # each take sounds its own times
    assert moved["true_f1_100"] < 0.5 and written["moved_f1_100"] < 0.5  # and not the other's
    monkeypatch.setattr("engine.bundle.load_bundle", lambda name: None)
    assert launch.main(["bench", "--data", str(folder), "--time-shift", "0.7", "--limit", "2"]) == 0
