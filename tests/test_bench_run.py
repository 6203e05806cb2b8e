"""FoleyBench on a small written split, with the shipped metric models."""

from __future__ import annotations

import pytest

from engine.bench.run import bench_split, load_metric_models, markdown_table
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
