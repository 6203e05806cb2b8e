"""The ``python launch.py train`` subcommands of a studio's own data: ingest, finetune, dpo, blend, house,
measure and measure-dpo (`add_arguments` declares their options on the ``train`` parser, `run` carries one out).

    train ingest --videos DIR [--sounds DIR] [--tags FILE.csv] --out DATASET      footage and library -> dataset
    train finetune --dataset DATASET --out DIR                                     LoRA fine-tune -> model folder
    train dpo --pairs FILE.json --out DIR   (launch.py: or --project NAME)         Flow-DPO on preference pairs
    train blend --tuned MODEL --strength S --out DIR                               a tune at strength S (0..1)
    train house --out DIR                                                          the procedural house library
    train measure --house DIR --tuned MODEL [--strengths 1,0.7] [--judge DIR]      house FD / CLAP~ and FoleyBench
    train measure-dpo --out DIR --dimension temporal                               pairs, DPO, held-out reward

Each returns a JSON-able dict (printed by launch.py); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.errors import UserInputError

COMMANDS = ("ingest", "finetune", "dpo", "blend", "house", "measure", "measure-dpo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `COMMANDS` (the shared ones, --model, --out, --steps, --batch, --lr, --seed... exist)."""
    g = parser.add_argument_group("ingest, finetune, dpo")
    g.add_argument("--videos", help="ingest: folder of videos with their own audio (<stem>.cot.json beside = its CoT)")
    g.add_argument("--sounds", help="ingest: folder of audio files; tags from the names or --tags")
    g.add_argument("--tags", help="ingest: CSV with the columns file,tags for the --sounds files")
    g.add_argument(
        "--replay",
        type=int,
        default=0,
        help="ingest: add this many FoleyWorld train clips (the start model's world) against forgetting",
    )
    g.add_argument("--window-seconds", type=float, default=10.0, help="ingest/dpo: seconds per training window")
    g.add_argument("--dataset", help="finetune/grpo: dataset folder written by train ingest")
    g.add_argument(
        "--distill",
        type=float,
        default=0.0,
        help="finetune: 0..1, weight of the start model's velocity in the target of replayed clips",
    )
    g.add_argument(
        "--guided-targets",
        action="store_true",
        help="finetune: train the studio's clips toward what the render's guided velocity should be",
    )
    g.add_argument("--pairs", help="dpo: pairs file (foley-pairs/1 JSON)")
    g.add_argument("--project", help="dpo: studio project whose starred and rejected takes are the pairs")
    g.add_argument("--beta", type=float, default=2000.0, help="dpo: inverse temperature of the preference")
    g.add_argument("--held-out", type=float, default=0.15, help="finetune/dpo/grpo: fraction of sources held out")
    g.add_argument("--patience", type=int, default=4, help="finetune/dpo: evaluations without improvement")
    g.add_argument("--max-minutes", type=float, default=None, help="finetune/dpo/grpo: stop after this training time")
    g.add_argument("--bench-clips", type=int, default=16, help="FoleyBench clips of the check (0: no check)")
    g.add_argument("--bench-duration", type=float, default=4.0, help="seconds per FoleyBench check clip")
    g.add_argument("--bench-steps", type=int, default=12, help="sampler steps of the FoleyBench check")
    h = parser.add_argument_group("house, measure, measure-dpo")
    h.add_argument("--per-class", type=int, default=40, help="house: videos per class")
    h.add_argument("--sounds-per-class", type=int, default=None, help="house: tagged sounds per class")
    h.add_argument("--test-per-class", type=int, default=10, help="house: held-out clips per class")
    h.add_argument("--house", help="measure: house library folder (its test/ part is rendered)")
    h.add_argument("--tuned", help="measure, blend: the tuned model folder")
    h.add_argument(
        "--judge",
        help="measure: also score the same renders with the metric models in this folder (a judge that knows "
        "the house classes: train metrics --house-per-class N --out DIR)",
    )
    h.add_argument("--strength", type=float, default=1.0, help="blend: 0 (the start model) .. 1 (the tune)")
    h.add_argument(
        "--half", action="store_true", help="blend: write the generator in float16, as the shipped bundles are"
    )
    h.add_argument("--strengths", default="1", help="measure: the tune's strengths, comma-separated (e.g. 1,0.7)")
    h.add_argument(
        "--tuned-guidance",
        default=None,
        metavar="CFG[:VIDEO[:RESCALE]],...",
        help="measure: the tune renders with this text guidance scale (picture scale, guidance rescale; default "
        "the render defaults, as the start model), its FoleyBench check too; several, comma-separated, are "
        "measured in one run",
    )
    h.add_argument("--dimension", default="temporal", help="measure-dpo: the dimension the designer prefers")
    h.add_argument("--pair-clips", type=int, default=24, help="measure-dpo: clips rendered for pairs")
    h.add_argument("--takes", type=int, default=4, help="measure-dpo: takes rendered per clip")
    h.add_argument("--pair-top", type=int, default=1, help="measure-dpo: K best takes x K worst a clip")
    h.add_argument("--held-out-clips", type=int, default=16, help="measure-dpo: held-out clips")


def _show(label: str):
    def show(done: int, total: int, *_rest) -> None:
        if done == total or done % max(1, total // 10) == 0:
            print(f"{label}: {done}/{total}", file=sys.stderr, flush=True)

    return show


def _show_entry(e: dict) -> None:
    """One line per log entry of a LoRA run."""
    if e.get("phase") == "train":
        extra = "".join(f" {k}={e[k]:.3f}" for k in ("margin", "accuracy") if k in e)
        print(
            f"step {e['step']}/{e['steps']} loss {e['loss']:.4f}{extra} lr {e['lr']:.2e}", file=sys.stderr, flush=True
        )
    elif e.get("phase") == "eval":
        mark = " (best)" if e["improved"] else ""
        parts = [f"{name} {e[k]:.4f}" for k, name in (("held_out_own", "own"), ("held_out_replay", "replay")) if k in e]
        parts = f" ({' '.join(parts)})" if parts else ""
        print(f"step {e['step']}: held-out loss {e['held_out_loss']:.4f}{parts}{mark}", file=sys.stderr, flush=True)
    elif e.get("phase") == "done":
        print(f"FoleyBench check: {_verdict(e.get('passed'))}", file=sys.stderr, flush=True)


def _verdict(passed) -> str:
    return {True: "passed", False: "FAILED (the model is written but not offered)", None: "not run"}[passed]


def ingest_command(args: argparse.Namespace) -> dict:
    from engine.models import load_bundle
    from engine.planner import has_planner, load_planner
    from trainer.ingest import IngestConfig, ingest, replay_folder, sound_folder, video_folder

    if not (args.videos or args.sounds) or not args.out:
        raise UserInputError("train ingest needs --videos DIR and/or --sounds DIR, and --out DATASET")
    taken: set[str] = set()
    sources = video_folder(args.videos, taken) if args.videos else []
    sources += sound_folder(args.sounds, args.tags, taken) if args.sounds else []
    if not sources:
        raise UserInputError("no video or audio files in the given folders")
    if args.replay < 0:
        raise UserInputError(f"--replay must be >= 0, got {args.replay}")
    if args.replay:  # the replayed clips live in the dataset's own folder
        sources += replay_folder(Path(args.out) / "replay", args.replay, taken, progress=_show("replay"))
    bundle = load_bundle(args.model)
    planner = load_planner(args.model).plan if args.videos and has_planner(args.model) else None
    report = ingest(args.out, bundle, sources, IngestConfig(window=args.window_seconds), planner, _show("ingest"))
    for s in report.skipped:
        print(f"skipped {s['file']}: {s['reason']}", file=sys.stderr)
    return report.summary()


def _lora_fields(args: argparse.Namespace, out_default: str) -> dict:
    from trainer.bench_guard import BenchCheck

    fields = dict(model=args.model, out=str(args.out or out_default), seed=args.seed, threads=args.threads)
    fields |= dict(held_out=args.held_out, patience=args.patience, max_minutes=args.max_minutes)
    fields |= {k: v for k, v in (("steps", args.steps), ("batch", args.batch), ("lr", args.lr)) if v}
    fields |= {k: v for k, v in (("warmup", args.warmup), ("eval_every", args.eval_every)) if v}
    if args.lora_rank:
        fields["lora_rank"] = args.lora_rank
    fields["lora_layers"] = args.lora_layers
    bench = BenchCheck(clips=args.bench_clips, duration=args.bench_duration, steps=args.bench_steps)
    return fields | {"bench": bench}


def _summary(result: dict) -> dict:
    keep = ("out", "finished", "method", "step", "resumed_from", "stopped", "best_step", "best_held_out_loss")
    out = {k: result.get(k) for k in keep}
    check = result.get("bench_check") or {}
    return out | {"offered": check.get("passed") is not False, "bench_check": check}


def finetune_command(args: argparse.Namespace) -> dict:
    from trainer.finetune import FinetuneConfig, finetune

    if not args.dataset:
        raise UserInputError("train finetune needs --dataset DATASET (made by train ingest)")
    cfg = FinetuneConfig(
        dataset=args.dataset, distill=args.distill, guided=args.guided_targets, **_lora_fields(args, "runs/finetune")
    )
    return _summary(finetune(cfg, progress=_show_entry, resume=args.resume))


def dpo_command(args: argparse.Namespace) -> dict:
    from trainer.dpo import DpoConfig, train_dpo

    if not args.pairs:
        raise UserInputError("train dpo needs --pairs FILE.json or --project NAME")
    cfg = DpoConfig(pairs=args.pairs, beta=args.beta, window=args.window_seconds, **_lora_fields(args, "runs/dpo"))
    return _summary(train_dpo(cfg, progress=_show_entry, resume=args.resume))


def blend_command(args: argparse.Namespace) -> dict:
    from trainer.bench_guard import BenchCheck
    from trainer.lora import blend

    if not args.tuned or not args.out:
        raise UserInputError("train blend needs --tuned MODEL (a tune of --model) and --out DIR")
    bench = BenchCheck(clips=args.bench_clips, duration=args.bench_duration, steps=args.bench_steps)
    verdict = blend(args.model, args.tuned, args.strength, args.out, bench, _show("bench"), half=args.half)
    offered = verdict.get("passed") is not False
    return {
        "out": str(args.out),
        "strength": args.strength,
        "float16": args.half,
        "offered": offered,
        "bench_check": verdict,
    }


def house_command(args: argparse.Namespace) -> dict:
    from trainer.house import write_library

    if not args.out:
        raise UserInputError("train house needs --out DIR")
    if min(args.per_class, args.test_per_class) < 1 or not 2.0 <= args.duration <= 12.0:
        raise UserInputError("need --per-class and --test-per-class >= 1 and --duration in 2..12 s")
    return write_library(
        args.out, args.per_class, args.duration, args.test_per_class, args.sounds_per_class, _show("house")
    )


def measure_command(args: argparse.Namespace) -> dict:
    from engine.pipeline import RenderSettings
    from trainer.bench_guard import BenchCheck
    from trainer.measure import house_markdown, measure_house

    if not args.house or not args.tuned:
        raise UserInputError("train measure needs --house DIR (from train house) and --tuned MODEL")
    test = Path(args.house) / "test"
    if not (test / "index.json").is_file():
        raise UserInputError(f"no house test clips in {test}; write them with: python launch.py train house")
    settings = RenderSettings(seed=args.seed, steps=args.sample_steps)  # --seed: the house and FoleyBench renders
    bench = BenchCheck(clips=args.bench_clips, duration=args.bench_duration, steps=args.sample_steps, seed=args.seed)
    try:
        strengths = tuple(float(v) for v in args.strengths.split(","))
    except ValueError:
        raise UserInputError(f"--strengths must be numbers separated by commas, got {args.strengths!r}") from None
    tuned_settings = tuned_guidance(settings, args.tuned_guidance)
    work = Path(args.out or Path(args.tuned) / "measure")
    result = measure_house(
        test, args.model, args.tuned, settings, bench, work, _show("measure"), strengths, tuned_settings, args.judge
    )
    print(house_markdown(result), file=sys.stderr)
    return result


def tuned_guidance(settings, text: str | None) -> tuple:
    """The tune's render settings from --tuned-guidance: ``settings`` with each comma-separated "CFG",
    "CFG:VIDEO" or "CFG:VIDEO:RESCALE" applied (what is not given stays as in ``settings``); ``(settings,)``
    without it."""
    from dataclasses import replace

    if text is None:
        return (settings,)
    out = []
    for item in text.split(","):
        parts = item.split(":")
        try:
            values = [float(v) for v in parts]
        except ValueError:
            values = []
        if not 1 <= len(values) <= 3 or len(parts) != len(values):
            raise UserInputError(
                f"--tuned-guidance must be CFG, CFG:VIDEO or CFG:VIDEO:RESCALE (numbers, comma-separated), got {text!r}"
            )
        kw = dict(zip(("cfg", "video_cfg", "rescale"), values))
        out.append(replace(settings, **kw))  # RenderSettings validates the scales
    if len(set(out)) != len(out):
        raise UserInputError(f"--tuned-guidance repeats a setting: {text!r}")
    return tuple(out)


def measure_dpo_command(args: argparse.Namespace) -> dict:
    from engine.pipeline import RenderSettings
    from engine.rewards import DIMENSIONS
    from trainer.dpo import DpoConfig
    from trainer.measure import measure_dpo

    if args.dimension not in DIMENSIONS:
        raise UserInputError(f"--dimension must be one of {', '.join(DIMENSIONS)}")
    fields = _lora_fields(args, "runs/dpo-measure/model")
    cfg = DpoConfig(pairs="(written by the measurement)", beta=args.beta, window=args.window_seconds, **fields)
    settings = RenderSettings(seed=args.seed, steps=args.sample_steps)
    return measure_dpo(
        cfg,
        args.dimension,
        args.pair_clips,
        args.takes,
        args.held_out_clips,
        settings,
        args.duration,
        _show("dpo"),
        args.pair_top,
    )


def run(args: argparse.Namespace) -> dict:
    """Carry out ``args.what`` (one of `COMMANDS`)."""
    table = {
        "ingest": ingest_command,
        "finetune": finetune_command,
        "dpo": dpo_command,
        "blend": blend_command,
        "house": house_command,
        "measure": measure_command,
        "measure-dpo": measure_dpo_command,
    }
    return table[args.what](args)
