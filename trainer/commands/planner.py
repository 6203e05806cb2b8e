"""``train planner``: the default planner on rendered FoleyWorld scenes (`trainer.planner.train.PlannerTrainConfig`);
checkpoints beside the output file, resumable."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.commands.common import ROOT, CliError, nonneg_int, positive_int
from engine.commands.fields import add_fields, fields_of
from engine.planner.network import LAYOUTS
from trainer.commands.common import add_resume, add_threads, print_result, set_threads, show_parts
from trainer.planner.train import PlannerTrainConfig


def build(parser) -> None:
    parser.add_argument(
        "--out", default=None, help="the planner file, .safetensors (default runs/planner/planner.safetensors)"
    )
    whole = {"type": positive_int}
    add_fields(
        parser,
        PlannerTrainConfig,
        "steps",
        "batch",
        "lr",
        "warmup",
        "seed",
        "stop_at",
        "init",
        "first_scene",
        "layout",
        "channels",
        "width",
        "flip",
        "device",
        "workers",
        steps=whole,
        batch=whole,
        warmup=whole,
        stop_at=whole,
        width=whole,
        workers=whole,
        seed={"type": int},
        first_scene={"type": nonneg_int},
        layout={"choices": list(LAYOUTS)},
    )
    add_threads(parser)
    add_resume(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trainer.planner.train import train_planner

    set_threads(args)
    out = Path(args.out or ROOT / "runs" / "planner" / "planner.safetensors")
    if out.suffix != ".safetensors":
        raise CliError(f"--out for the planner is a .safetensors file, got {out}")
    config = PlannerTrainConfig(**fields_of(args, PlannerTrainConfig))
    report = train_planner(out, config, resume=args.resume, progress=show_parts("planner"))
    return print_result({k: v for k, v in report.items() if k != "history"})
