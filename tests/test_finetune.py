"""LoRA flow-matching fine-tuning on a tiny model and dataset: the loss falls, early stopping triggers and
keeps the best adapters, a killed run resumes with the same data order and ends exactly as a straight run,
the FoleyBench check's verdict, and the result is a model folder that renders."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine.bundle import load_bundle
from engine.pipeline import RenderSettings, prepare_video, render
from tests import train_data
from trainer.bench_guard import BenchCheck, check_against_base, compare
from trainer.finetune import FinetuneConfig, FlowObjective, finetune
from trainer.ingest import IngestConfig, ingest, sound_folder, video_folder
from trainer.lora.adapters import lora_generator

pytestmark = pytest.mark.usefixtures("one_thread")
NO_BENCH = BenchCheck(clips=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    model = train_data.model_folder(root)
    metas = train_data.videos(root / "videos", 3)
    train_data.sounds(root / "sounds")
    taken: set[str] = set()
    sources = video_folder(root / "videos", taken) + sound_folder(root / "sounds", taken=taken)
    ingest(root / "data", load_bundle(model), sources, IngestConfig(window=1.0))
    return {"root": root, "model": model, "dataset": root / "data", "metas": metas}


def _cfg(data, out, **kw) -> FinetuneConfig:
    base = dict(model=str(data["model"]), out=str(out), dataset=str(data["dataset"]), steps=6, batch=2, lr=1e-2)
    base |= dict(warmup=1, eval_every=2, ckpt_every=2, log_every=1, held_out=0.3, lora_rank=4, bench=NO_BENCH)
    return FinetuneConfig(**(base | kw))


def test_fine_tuning_lowers_the_loss_on_the_training_windows(data, tmp_path):
    cfg = _cfg(data, tmp_path / "run", steps=20, eval_every=10, lr=3e-2)
    bundle = load_bundle(cfg.model)
    on_train = FlowObjective(bundle, cfg)
    on_train.held_ids = on_train.train_ids  # evaluate the training windows with the fixed noise and times
    torch.manual_seed(cfg.seed)
    with torch.no_grad():
        before = on_train.evaluate(lora_generator(bundle.generator, cfg.lora_rank))["held_out_loss"]
    result = finetune(cfg, resume=False)
    with torch.no_grad():
        after = on_train.evaluate(result["policy"].eval())["held_out_loss"]
    assert after < 0.9 * before, (before, after)
    evals = [h for h in result["history"] if h["phase"] == "eval"]
    assert [e["step"] for e in evals] == [0, 10, 20] and all(np.isfinite(e["held_out_loss"]) for e in evals)
    trainable = {n for n, p in result["policy"].named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)  # only the adapters trained
    start = load_bundle(cfg.model).generator.state_dict()
    assert all(not p.requires_grad for p in load_bundle(cfg.model).generator.parameters())  # shared bundle untouched
    tuned = load_bundle(tmp_path / "run").generator.state_dict()
    assert start.keys() == tuned.keys() and any(not torch.equal(start[k], tuned[k]) for k in start)


def test_early_stopping_ends_the_run_and_keeps_the_best_adapters(data, tmp_path):
    cfg = _cfg(data, tmp_path / "run", steps=20, patience=2, min_delta=10.0)  # no evaluation after the first counts
    result = finetune(cfg, resume=False)
    assert result["finished"] and result["step"] == 4 and result["stopped"].startswith("early stop")
    assert result["best_step"] == 0  # the start model's evaluation, before the first step
    manifest = json.loads((tmp_path / "run" / "model.json").read_text())
    assert manifest["extra"]["result"]["best_step"] == 0 and manifest["extra"]["method"] == "lora-finetune"
    start, tuned = (load_bundle(m).generator.state_dict() for m in (cfg.model, tmp_path / "run"))
    assert all(torch.equal(start[k], tuned[k]) for k in start)  # never beaten: the start model comes back


def test_a_run_that_improves_keeps_a_later_evaluation(data, tmp_path):
    result = finetune(_cfg(data, tmp_path / "run", steps=20, eval_every=10, lr=3e-2, patience=0), resume=False)
    evals = {h["step"]: h["held_out_loss"] for h in result["history"] if h["phase"] == "eval"}
    assert result["best_step"] in (10, 20) and evals[result["best_step"]] < evals[0]


def test_a_killed_run_resumes_from_its_checkpoint_with_the_same_data_order(data, tmp_path, monkeypatch):
    seen: list[tuple[int, ...]] = []
    original = FlowObjective.loss
    monkeypatch.setattr(
        FlowObjective, "loss", lambda self, p, ids, rng: seen.append(tuple(ids)) or original(self, p, ids, rng)
    )
    straight = finetune(_cfg(data, tmp_path / "a"), resume=False)
    order, seen[:] = list(seen), []

    def crash(entry: dict) -> None:
        if entry.get("phase") == "train" and entry["step"] == 5:  # after step 5; the last checkpoint is step 4
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(_cfg(data, tmp_path / "b"), progress=crash, resume=False)
    assert not (tmp_path / "b" / "model.json").exists()
    resumed = finetune(_cfg(data, tmp_path / "b"), resume=True)
    assert resumed["resumed_from"] == 4 and resumed["finished"]
    assert seen == order[:5] + order[4:]  # step 5 ran twice: before the kill and after the resume
    a, b = straight["policy"].state_dict(), resumed["policy"].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    evals = lambda r: [(h["step"], h["held_out_loss"]) for h in r["history"] if h["phase"] == "eval"]  # noqa: E731
    assert evals(straight) == evals(resumed)
    ga, gb = (load_bundle(tmp_path / x).generator.state_dict() for x in "ab")
    assert all(torch.equal(ga[k], gb[k]) for k in ga)
    with pytest.raises(Exception, match="no-resume"):
        finetune(_cfg(data, tmp_path / "b", batch=3), resume=True)


def test_cross_attention_adapters_change_only_the_cross_attention(data, tmp_path):
    result = finetune(_cfg(data, tmp_path / "kv", steps=4, held_out=0.0, lora_layers="cross-kv"), resume=False)
    trainable = {n for n, p in result["policy"].named_parameters() if p.requires_grad}
    assert trainable and all(".cross.kv." in n and "lora_" in n for n in trainable)
    start, tuned = (
        load_bundle(data["model"]).generator.state_dict(),
        load_bundle(tmp_path / "kv").generator.state_dict(),
    )
    changed = {k for k in start if not torch.equal(start[k], tuned[k])}
    assert changed and all(k.endswith("cross.kv.weight") for k in changed)  # merged into the key-value weights alone
    with pytest.raises(Exception, match="lora_layers"):  # a checkpoint of other layers is not resumed
        finetune(_cfg(data, tmp_path / "kv", steps=4, held_out=0.0, lora_layers="cross"), resume=True)
    with pytest.raises(Exception, match="unknown LoRA layers"):
        _cfg(data, tmp_path / "x", lora_layers="mlp")


def test_a_cancelled_run_checkpoints_and_resumes(data, tmp_path):
    calls = iter(range(100))
    result = finetune(_cfg(data, tmp_path / "c", ckpt_every=100), stop=lambda: next(calls) >= 3, resume=False)
    assert not result["finished"] and result["step"] == 3 and result["out"] is None
    resumed = finetune(_cfg(data, tmp_path / "c", ckpt_every=100), resume=True)
    assert resumed["resumed_from"] == 3 and resumed["finished"]


def test_the_tuned_model_is_a_model_folder_that_renders(data, tmp_path):
    finetune(_cfg(data, tmp_path / "run", steps=2), resume=False)
    bundle = load_bundle(tmp_path / "run")
    assert bundle.name == "run" and bundle.generator.config == load_bundle(data["model"]).generator.config
    video = data["root"] / "videos" / f"{data['metas'][0]['name']}.mp4"
    prepared = prepare_video(video, bundle)
    audio = render(prepared, data["metas"][0]["cot"], bundle, RenderSettings(seed=1, steps=2))
    assert audio.shape == (prepared.n_samples, 2) and np.isfinite(audio).all() and np.abs(audio).max() > 0


def test_the_bench_check_compares_relative_drops_with_a_floor():
    base = {"class_acc": 0.8, "clap": 0.5, "onset_f1_100": 0.02}
    ok = compare(base, {"class_acc": 0.76, "clap": 0.55, "onset_f1_100": 0.02}, 0.10, 0.05)
    assert (
        ok["passed"] and ok["drops"]["class_acc"] == pytest.approx(0.05) and ok["drops"]["clap"] == pytest.approx(-0.1)
    )
    bad = compare(base, {"class_acc": 0.8, "clap": 0.5, "onset_f1_100": 0.0}, 0.10, 0.05)
    assert not bad["passed"] and bad["worst"] == "onset_f1_100" and bad["drops"]["onset_f1_100"] == pytest.approx(0.4)


def test_the_bench_check_of_a_model_against_itself_passes(data, tmp_path):
    bundle = load_bundle(data["model"])
    verdict = check_against_base(bundle, bundle, BenchCheck(clips=2, duration=2.0, steps=2), tmp_path / "bench")
    assert verdict["passed"] is True and all(d == 0 for d in verdict["drops"].values())
    assert verdict["base"] == verdict["tuned"] and (tmp_path / "bench" / "index.json").is_file()


def test_train_finetune_command(data, tmp_path, capsys):
    from tests.test_pipeline import _cli

    args = ["train", "finetune", "--dataset", data["dataset"], "--model", data["model"], "--steps", "2"]
    args += ["--batch", "2", "--lora-rank", "2", "--eval-every", "1", "--bench-clips", "0", "--threads", "1"]
    rc, out, err = _cli(*args, "--out", tmp_path / "run", capsys=capsys)
    assert rc == 0, err
    line = json.loads(out)
    assert line["finished"] and line["method"] == "lora-finetune" and line["step"] == 2 and line["offered"]
    assert "held-out loss" in err and (tmp_path / "run" / "model.json").is_file()
    rc, out, err = _cli(*args[:-2], "--held-out", "1.5", "--out", tmp_path / "bad", capsys=capsys)
    assert rc == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_blend_sets_a_tunes_strength_between_the_start_model_and_the_tune(data, tmp_path):
    from engine.errors import UserInputError
    from trainer.lora.adapters import blend

    finetune(_cfg(data, tmp_path / "tune", steps=4, lr=3e-2, patience=0), resume=False)
    start, tune = (load_bundle(m).generator.state_dict() for m in (data["model"], tmp_path / "tune"))
    moved = [k for k in start if not torch.equal(start[k], tune[k])]
    assert moved
    for s in (0.0, 0.5, 1.0):
        verdict = blend(str(data["model"]), str(tmp_path / "tune"), s, tmp_path / f"b{s}", NO_BENCH)
        assert verdict["passed"] is None  # no clips: no check
        mixed = load_bundle(tmp_path / f"b{s}").generator.state_dict()
        for k in moved:
            want = start[k].float() + s * (tune[k].float() - start[k].float())
            assert torch.allclose(mixed[k].float(), want, atol=1e-3 * float(want.abs().max()) + 1e-6), k
    manifest = json.loads((tmp_path / "b0.5" / "model.json").read_text())
    assert manifest["extra"]["method"] == "blend" and manifest["extra"]["strength"] == 0.5
    blend(str(data["model"]), str(tmp_path / "tune"), 1.0, tmp_path / "half", NO_BENCH, half=True)
    weights = load_file(tmp_path / "half" / "generator.safetensors")
    assert {w.dtype for w in weights.values() if torch.is_floating_point(w)} == {torch.float16}
    full = load_bundle(tmp_path / "b1.0").generator.state_dict()
    for k, w in load_bundle(tmp_path / "half").generator.state_dict().items():  # the tune, rounded to float16
        assert torch.equal(w.float(), full[k].half().float()), k
    assert json.loads((tmp_path / "half" / "model.json").read_text())["extra"]["float16"] is True
    with pytest.raises(UserInputError, match="strength"):
        blend(str(data["model"]), str(tmp_path / "tune"), 1.5, tmp_path / "bad", NO_BENCH)
    with pytest.raises(UserInputError, match="not tuned from"):
        blend("default", str(tmp_path / "tune"), 0.5, tmp_path / "bad", NO_BENCH)


def test_distillation_targets_the_start_models_velocity_on_replayed_clips_only(data, tmp_path):
    from trainer.foleyworld.scene import WorldConfig
    from trainer.ingest import replay_folder

    taken: set[str] = set()
    world = WorldConfig(duration=train_data.DURATION, width=48, height=48)
    sources = replay_folder(tmp_path / "replay", 2, taken, world) + video_folder(data["root"] / "videos", taken)
    ingest(tmp_path / "mixed", load_bundle(data["model"]), sources, IngestConfig(window=1.0))
    bundle = load_bundle(data["model"])

    def losses(distill: float, null_anchor: float = 0.0) -> dict[bool, float]:
        cfg = _cfg(data, tmp_path / "run", dataset=str(tmp_path / "mixed"), held_out=0.0, distill=distill)
        objective = FlowObjective(bundle, replace(cfg, null_anchor=null_anchor))
        flags = [objective.data.is_replay(i) for i in objective.train_ids]
        assert sum(flags) == 4 and len(flags) == 10  # 2 replayed clips and 3 of the studio's, 2 windows each
        torch.manual_seed(0)
        policy = lora_generator(bundle.generator, 4)  # B = 0: the policy is the start model
        out = {}
        for replay in (True, False):
            ids = [k for k, f in enumerate(flags) if f is replay][:3]
            loss, logs = objective.loss(policy, ids, torch.Generator().manual_seed(5))
            assert logs.get("anchored_rows", 0.0) == (float(replay) if distill else 0.0)
            out[replay] = float(loss.detach())
        return out

    gt, half, full = losses(0.0), losses(0.5), losses(1.0)
    assert gt[True] > 0 and gt[False] > 0
    assert half[True] == pytest.approx(0.25 * gt[True], rel=1e-4)  # (v - (v + gt) / 2)^2 = (v - gt)^2 / 4
    assert full[True] < 1e-10 and losses(1.0, null_anchor=1.0)[True] < 1e-10  # its own velocity, any conditions
    assert half[False] == gt[False] and full[False] == gt[False]  # the studio's own windows keep their target
    assert losses(0.5, null_anchor=1.0)[True] != pytest.approx(half[True])  # shown without picture and text
    with pytest.raises(Exception, match="distill"):
        _cfg(data, tmp_path / "run", distill=1.5)


def test_measure_house_renders_the_start_model_once_and_a_tune_at_each_strength(data, tmp_path):
    from engine.bench.run import load_clips
    from engine.bundle import save_bundle
    from trainer.house import write_library
    from trainer.lora.adapters import tuned_bundle
    from trainer.measure import house_markdown, mean_level, measure_house

    write_library(tmp_path / "house", per_class=1, duration=2.0, test_per_class=2, sounds_per_class=0)
    truth = load_clips(tmp_path / "house" / "test")[1]
    bundle = load_bundle(data["model"])
    moved = copy.deepcopy(bundle.generator).float()  # a copy whose weights then move
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(0.05 * torch.randn_like(p))
    tuned = save_bundle(tuned_bundle(bundle, moved.eval(), "moved"), tmp_path / "moved")
    settings, check = RenderSettings(seed=3, steps=2), BenchCheck(clips=2, duration=2.0, steps=2)
    calls = []
    result = measure_house(
        tmp_path / "house" / "test",
        str(data["model"]),
        str(tuned),
        settings,
        check,
        tmp_path / "work",
        lambda done, total: calls.append(total),
        strengths=(1.0, 0.0),
    )
    assert result["house_clips"] == 8 and list(result["house"]) == ["base", "tuned", "tuned at 0"]
    full, none = result["tunes"]
    assert (full["strength"], full["name"], none["strength"]) == (1.0, "tuned", 0.0)
    # at strength 0 the tune is the start model: the same renders, so the same scores and no drop
    assert result["house"]["tuned at 0"] == result["house"]["base"] and none["fd_drop"] == 0.0
    assert none["foleybench"]["passed"] and all(d == 0 for d in none["foleybench"]["drops"].values())
    assert result["house"]["tuned"]["fd"] != result["house"]["base"]["fd"]
    assert full["foleybench"]["tuned"] != full["foleybench"]["base"]
    assert len(calls) == 8 * 3 + 2 * 4  # three models over the eight house clips, the start model's renders made once
    ref = result["reference"]
    assert ref["house audio"]["fd"] == pytest.approx(0.0, abs=1e-3) and ref["codec"]["fd"] > 0.0
    assert ref["house audio"]["level"] == pytest.approx(mean_level(truth)) and np.isfinite(ref["codec"]["level"])
    assert all(t["guidance"] == result["settings"]["base"] for t in result["tunes"])
    text = house_markdown(result)
    assert "tuned at 0: FD drop 0.0%" in text and text.count("| FoleyBench |") == 2
    assert "| (house audio) |" in text and "| (codec) |" in text and "guidance" not in text
    with pytest.raises(Exception, match="strengths"):
        house = tmp_path / "house" / "test"
        measure_house(house, str(data["model"]), str(tuned), settings, check, tmp_path / "w", strengths=(1.5,))


def test_measure_house_renders_the_tune_with_its_own_guidance(data, tmp_path):
    from engine.errors import UserInputError
    from trainer.commands.measure import tuned_guidance
    from trainer.house import write_library
    from trainer.measure import house_markdown, measure_house

    write_library(tmp_path / "house", per_class=1, duration=2.0, test_per_class=2, sounds_per_class=0)
    settings, check = RenderSettings(seed=3, steps=2), BenchCheck(clips=2, duration=2.0, steps=2)
    (plain,) = tuned_guidance(settings, "1")
    assert (plain.cfg, plain.video_cfg, plain.seed, plain.steps) == (1.0, settings.video_cfg, 3, 2)
    split, rescaled = tuned_guidance(settings, "1.5:2,1.5:2:0.7")
    assert (split.cfg, split.video_cfg, split.rescale) == (1.5, 2.0, settings.rescale)
    assert (rescaled.cfg, rescaled.video_cfg, rescaled.rescale) == (1.5, 2.0, 0.7)
    assert tuned_guidance(settings, None) == (settings,)
    for bad in ("x", "1:2:3", "1:2:0.5:1", "1:", "-1", "1,1", "2,"):
        with pytest.raises(UserInputError):
            tuned_guidance(settings, bad)
    model = str(data["model"])  # the start model as its own "tune" at strength 0: only the guidance differs
    house = tmp_path / "house" / "test"
    hows = (settings, plain)
    from engine.bench.metric_nets import ASSETS

    result = measure_house(
        house, model, model, settings, check, tmp_path / "w", strengths=(0.0,), tuned_settings=hows, judge=ASSETS
    )
    same, other = result["tunes"]
    judge = result["judge"]  # the shipped metric models as the judge: the same numbers for the same renders
    assert judge["folder"] == str(ASSETS) and judge["house"] == result["house"]
    assert judge["reference"] == result["reference"] and set(judge["tunes"]) == {same["name"], other["name"]}
    assert judge["tunes"][other["name"]]["fd_drop"] == other["fd_drop"]
    assert (same["name"], other["name"]) == ("tuned at 0", "tuned at 0 (cfg 1, video 5)")
    assert other["guidance"]["cfg"] == 1.0 and result["settings"]["base"]["cfg"] == settings.cfg
    assert result["house"]["tuned at 0"]["fd"] == pytest.approx(result["house"]["base"]["fd"])  # the same renders
    assert result["house"][other["name"]]["fd"] != result["house"]["base"]["fd"]  # other renders
    assert same["foleybench"]["tuned"] == same["foleybench"]["base"]
    assert other["foleybench"]["tuned"] != other["foleybench"]["base"]  # the check renders it with its guidance
    text = house_markdown(result)
    assert "a tune's name gives its own" in text and "tuned at 0 (cfg 1, video 5): FD drop" in text
    assert f"scored by the metric models in {ASSETS}" in text and text.count("frog_croak FD / CLAP~") == 2
    with pytest.raises(FileNotFoundError, match="metric models missing"):  # before any render
        measure_house(house, model, model, settings, check, tmp_path / "w", judge=tmp_path / "nothing")


def test_mean_level_is_the_mean_rms_level_in_dbfs():
    from trainer.measure import mean_level

    square = np.where(np.arange(1000) % 2, 1.0, -1.0)[:, None].repeat(2, 1).astype(np.float32)  # (N, 2)
    assert mean_level([square]) == pytest.approx(0.0, abs=1e-9)
    assert mean_level([0.5 * square, square]) == pytest.approx(-10 * np.log10(4) / 2, abs=1e-6)
    assert mean_level([np.zeros((10, 2), np.float32)]) == pytest.approx(-120.0)


def test_the_compensated_target_makes_the_guided_velocity_the_flow_matching_target():
    from engine.sampling import guided
    from trainer.finetune import guidance_compensated_target

    g = torch.Generator().manual_seed(3)
    target, v_t, v_u = (torch.randn(2, 4, 6, generator=g) for _ in range(3))
    t = torch.full((2,), 0.7)
    split = guidance_compensated_target(target, v_t, v_u, 3.5, 5.0)
    v = guided(lambda x, s: (split, v_t, v_u), 3.5, video_scale=5.0)(target, t)
    assert torch.allclose(v, target, atol=1e-5)
    plain = guidance_compensated_target(target, None, v_u, 3.5, None)
    assert torch.allclose(guided(lambda x, s: (plain, v_u), 3.5)(target, t), target, atol=1e-5)
    # the conditional branch moves by 1 / s_v of the target's change
    moved = guidance_compensated_target(target + 1.0, v_t, v_u, 3.5, 5.0)
    assert torch.allclose(moved - split, torch.full_like(split, 0.2), atol=1e-6)
    with pytest.raises(Exception, match="guidance"):
        guidance_compensated_target(target, v_t, v_u, 3.5, 0.0)


def test_guided_targets_change_only_the_studio_windows_with_picture_and_text(data, tmp_path):
    bundle = load_bundle(data["model"])
    torch.manual_seed(0)
    policy = lora_generator(bundle.generator, 4)

    def run(guided: bool):
        objective = FlowObjective(bundle, _cfg(data, tmp_path / "run", held_out=0.0, guided=guided))
        flags = [bool(objective.data[i]["video"]) for i in objective.train_ids]
        out = {}
        for video in (True, False):
            ids = [k for k, f in enumerate(flags) if f is video][:4]
            loss, logs = objective.loss(policy, ids, torch.Generator().manual_seed(11))
            out[video] = (float(loss.detach()), logs.get("guided_rows"))
        return out

    plain, guided = run(False), run(True)
    assert plain[True][1] is None and guided[True][1] > 0  # some video rows inside the guidance interval
    assert guided[True][0] != pytest.approx(plain[True][0])
    assert guided[False] == (plain[False][0], 0.0)  # text-audio pairs keep the flow-matching target

    def held_out(guided: bool) -> float:  # the studio's video windows, evaluated as the render samples them
        objective = FlowObjective(bundle, _cfg(data, tmp_path / "run", held_out=0.0, guided=guided))
        objective.held_ids = [i for i in objective.train_ids if objective.data[i]["video"]]
        with torch.no_grad():
            return objective.evaluate(policy)["held_out_loss"]

    on_guided, on_plain = held_out(True), held_out(False)
    assert np.isfinite(on_guided) and on_guided != pytest.approx(on_plain)


def test_a_timeline_model_gets_each_windows_part_of_its_sources_temporal_track(data):
    from engine.cot import Cot
    from engine.timeline import timeline_track
    from trainer.dataset import TrainDataset, collate_for

    rate = 44100 / 2048
    ds = TrainDataset(data["dataset"], "decomposed", timeline_rate=rate)
    j = next(j for j, s in enumerate(ds.sources) if s["kind"] == "video" and len(s["windows"]) > 1)
    ds.cots[j] = Cot(semantic="knocks", temporal="Knocks at 0.2, 1.4 s", aesthetic="", spatial="")
    ids = [i for i, (jj, _) in enumerate(ds.entries) if jj == j]
    whole = timeline_track(ds.cots[j].temporal, 200, rate)
    for i in ids:
        w = ds.entries[i][1]
        start = round(w["start"] * rate)
        got = ds[i]["timeline"]
        np.testing.assert_allclose(got, whole[start : start + len(got)], atol=1e-6)
    assert any(round(ds.entries[i][1]["start"] * rate) > 0 for i in ids)  # a later window: the times shifted
    assert sum(ds[i]["timeline"][:, 0].max() > 0.5 for i in ids) == 2  # each knock in the window it falls in
    batch = collate_for(ds)([ds[i] for i in ids[:2]])
    assert batch["timeline"].shape == (2, batch["z"].shape[2], whole.shape[1])
    assert "timeline" not in collate_for(ds)([TrainDataset(data["dataset"], "decomposed")[ids[0]]])
