"""Flow-DPO: the loss in exact cases, the pairs file, and training on tiny pairs raising the margin by which
the policy (against its frozen reference, the base with adapters disabled) prefers the winners."""

from __future__ import annotations

import json
import math

import pytest
import torch

from engine.bundle import load_bundle
from engine.errors import UserInputError
from engine.media import write_wav
from engine.pipeline import RenderSettings, prepare_video, render
from tests import train_data
from trainer.bench_guard import BenchCheck
from trainer.dpo import DpoConfig, DpoObjective, PreferencePair, read_pairs, train_dpo, write_pairs
from trainer.lora.adapters import lora_generator
from trainer.losses import flow_dpo_loss

pytestmark = pytest.mark.usefixtures("one_thread")
LOG2 = math.log(2.0)


def test_dpo_loss_in_exact_cases():
    e = torch.tensor([0.3, 1.2, 0.05])
    same, margin = flow_dpo_loss(e, e, e * 2, e * 2, beta=50.0)  # winner == loser: Delta_w == Delta_l
    assert float(same) == pytest.approx(LOG2) and torch.equal(margin, torch.zeros(3))
    ref, _ = flow_dpo_loss(e, e + 1, e, e + 1, beta=50.0)  # policy == reference: every Delta is 0
    assert float(ref) == pytest.approx(LOG2)
    closer, m = flow_dpo_loss(e - 0.01, e, e, e, beta=50.0)  # the policy fits the winner better than the reference
    assert float(closer) < LOG2 and bool((m > 0).all())
    exact, _ = flow_dpo_loss(torch.tensor([0.0]), torch.tensor([0.2]), torch.tensor([0.1]), torch.tensor([0.1]), 10.0)
    assert float(exact) == pytest.approx(-math.log(1 / (1 + math.exp(-0.5 * 10.0 * 0.2))))  # -log sigmoid(beta/2 * m)
    further, _ = flow_dpo_loss(e + 0.01, e, e, e, beta=50.0)
    assert float(further) > LOG2
    with pytest.raises(ValueError, match="four"):
        flow_dpo_loss(e, e[:2], e, e, 1.0)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Two takes (seeds 1 and 2, 2 sampler steps) of each of three clips: the seed-1 take is the winner."""
    root = tmp_path_factory.mktemp("dpo")
    model = train_data.model_folder(root)
    metas = train_data.videos(root / "videos", 3)
    bundle, out = load_bundle(model), []
    for m in metas:
        video = root / "videos" / f"{m['name']}.mp4"
        prepared = prepare_video(video, bundle)
        takes = [root / f"{m['name']}_{s}.wav" for s in (1, 2)]
        for path, seed in zip(takes, (1, 2)):
            write_wav(path, render(prepared, m["cot"], bundle, RenderSettings(seed=seed, steps=2)), 44100, "FLOAT")
        out.append(PreferencePair(str(video), m["cot"], str(takes[0]), str(takes[1]), m["name"]))
    return {"root": root, "model": model, "file": write_pairs(root / "pairs.json", out), "pairs": out}


def test_pairs_file_round_trip_and_errors(pairs, tmp_path):
    assert read_pairs(pairs["file"]) == pairs["pairs"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "foley-pairs/1", "pairs": [{"video": "v.mp4"}]}))
    with pytest.raises(UserInputError, match="lacks cot, winner, loser"):
        read_pairs(bad)
    bad.write_text("[]")
    with pytest.raises(UserInputError, match="not a pairs file"):
        read_pairs(bad)


def test_dpo_raises_the_margin_on_tiny_pairs(pairs, tmp_path):
    base = dict(model=str(pairs["model"]), out=str(tmp_path / "run"), pairs=str(pairs["file"]), steps=8, batch=2)
    base |= dict(lr=1e-2, warmup=1, eval_every=4, log_every=2, held_out=0.0, lora_rank=4)
    cfg = DpoConfig(**base, beta=1.0, bench=BenchCheck(clips=0))  # a small beta: the tiny pairs do not saturate
    bundle = load_bundle(cfg.model)
    objective = DpoObjective(bundle, cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        start = objective.evaluate(lora_generator(bundle.generator, 4), objective.train_ids)
    assert start["margin"] == 0.0 and start["held_out_loss"] == pytest.approx(LOG2)  # B = 0: policy == reference
    result = train_dpo(cfg, resume=False)
    with torch.no_grad():
        end = objective.evaluate(result["policy"].eval(), objective.train_ids)
    assert end["margin"] > 0 and end["held_out_loss"] < LOG2 and end["accuracy"] > 0.5
    losses = [h["loss"] for h in result["history"] if h["phase"] == "train"]
    assert losses[-1] < losses[0]
    manifest = json.loads((tmp_path / "run" / "model.json").read_text())
    assert manifest["extra"]["method"] == "flow-dpo" and load_bundle(tmp_path / "run").name == "run"


def test_held_out_pairs_are_whole_clips_and_are_evaluated(pairs, tmp_path):
    cfg = DpoConfig(
        model=str(pairs["model"]),
        out=str(tmp_path / "run"),
        pairs=str(pairs["file"]),
        steps=2,
        batch=1,
        eval_every=1,
        held_out=0.34,
        lora_rank=2,
        bench=BenchCheck(clips=0),
    )
    result = train_dpo(cfg, resume=False)
    objective = DpoObjective(load_bundle(cfg.model), cfg)
    held = {objective.entries[i]["group"] for i in objective.held_ids}
    assert len(held) == 1 and not held & {objective.entries[i]["group"] for i in objective.train_ids}
    evals = [h for h in result["history"] if h["phase"] == "eval"]
    assert [e["step"] for e in evals] == [0, 1, 2]  # the start model first
    assert all({"margin", "accuracy", "held_out_loss"} <= set(e) for e in evals)


def test_preference_pairs_star_the_best_takes_against_the_worst_and_keep_the_takes(pairs, tmp_path, monkeypatch):
    import trainer.measure as measure

    calls, original = [], measure._score
    monkeypatch.setattr(measure, "_score", lambda *a: calls.append(a[-1].seed) or original(*a))
    settings, out = RenderSettings(seed=3, steps=2), tmp_path / "p"
    model = str(pairs["model"])
    made = read_pairs(measure.preference_pairs(model, out, "temporal", 2, 4, settings, 2.0, top=2))
    assert sorted(calls) == [3, 3, 4, 4, 5, 5, 6, 6]  # four seeds a clip
    for name in {p.group for p in made}:
        scores = [s["temporal"] for s in json.loads((out / "takes" / f"{name}.json").read_text())["scores"]]
        ranked = sorted(range(4), key=lambda j: -scores[j])
        mine = [p for p in made if p.group == name]
        assert 0 < len(mine) <= 4
        for p in mine:
            w, lo = (int(f.rsplit("_", 1)[1].split(".")[0]) for f in (p.winner, p.loser))
            assert w in ranked[:2] and lo in ranked[2:] and scores[w] > scores[lo]
    again = read_pairs(measure.preference_pairs(model, out, "temporal", 2, 4, settings, 2.0, top=1))
    assert len(calls) == 8 and 0 < len(again) <= 2  # the takes were reused, not rendered again
    with pytest.raises(UserInputError, match="pair-top"):
        measure.preference_pairs(model, out, "temporal", 2, 4, settings, 2.0, top=3)


def test_paired_gain_counts_the_clips_that_improved_and_brackets_the_mean():
    import trainer.measure as measure

    same = measure.paired_gain([0.2, 0.4, 0.6], [0.3, 0.5, 0.7])
    assert same["mean"] == pytest.approx(0.1) and same["improved"] == 3 and same["of"] == 3
    assert same["ci95"] == pytest.approx([0.1, 0.1])  # every resample has the same mean
    mixed = measure.paired_gain([0.5] * 40, [0.5 + (0.1 if k % 4 else -0.1) for k in range(40)])
    assert mixed["improved"] == 30 and mixed["mean"] == pytest.approx(0.05)
    low, high = mixed["ci95"]
    assert 0.0 < low < 0.05 < high < 0.1
