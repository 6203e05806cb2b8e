"""``train pretrain``: the generator and video encoder on the feature cache (`trainer.pretrain.PretrainConfig`),
built first when it lacks --clips clips; resumable, and --snapshot writes the newest checkpoint's EMA models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.commands.common import ROOT, positive_int
from engine.commands.fields import add_fields, fields_of
from engine.generator import COT_MODES
from trainer.commands.common import add_resume, print_result
from trainer.commands.features import add_options as add_feature_options
from trainer.commands.features import build_cache
from trainer.pretrain import PretrainConfig


def build(parser) -> None:
    whole = {"type": positive_int}
    add_fields(
        parser,
        PretrainConfig,
        "preset",
        "cot_mode",
        "steps",
        "batch",
        "lr",
        "warmup",
        "seed",
        "out",
        "init",
        "recue",
        "timeline",
        "mixed_precision",
        "threads",
        "stop_at",
        preset={"help": "generator preset (engine.generator.GENERATOR_PRESETS: default, tiny, prismaudio...)"},
        cot_mode={"choices": list(COT_MODES)},
        steps=whole,
        batch=whole,
        warmup=whole,
        threads=whole,
        stop_at=whole,
        seed={"type": int},
        out={"default": None, "help": "output folder: weights, model.json, checkpoints (default runs/pretrain_MODE)"},
        mixed_precision={"choices": ["no", "bf16", "fp16"]},
    )
    add_feature_options(parser)
    parser.add_argument("--snapshot", default=None, help="write the newest checkpoint's EMA models to this folder")
    add_resume(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.video_encoder import VIDEO_ENCODER_PRESETS
    from trainer.feature_cache import load_index
    from trainer.pretrain import export_checkpoint, pretrain

    cache = Path(args.cache)
    if not (cache / "index.json").is_file() or len(load_index(cache)["clips"]) < args.count:
        build_cache(args)
    cfg = PretrainConfig(
        **fields_of(args, PretrainConfig)
        | {
            "video_preset": args.preset if args.preset in VIDEO_ENCODER_PRESETS else "default",
            "cache": str(cache),
            "out": str(args.out or ROOT / "runs" / f"pretrain_{args.cot_mode}"),
            "clips": args.count,
        }
    )
    if args.snapshot:
        return print_result({"snapshot": str(export_checkpoint(cfg, args.snapshot))})
    result = pretrain(cfg, progress=_show, resume=args.resume)
    last = result["history"][-1] if result["history"] else {}
    return print_result({k: v for k, v in result.items() if k != "history"} | {"loss": last.get("loss")})


def _show(done: int, total: int, entry: dict) -> None:
    print(
        f"pretrain: step {done}/{total} loss {entry['loss']:.4f} lr {entry['lr']:.2e} "
        f"{entry['sec_per_step']:.2f} s/step",
        file=sys.stderr,
        flush=True,
    )
