"""``train metrics``: the FoleyBench metric models (class, CLAP~ embedding, quality), trained on FoleyWorld."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.commands.common import ROOT, CliError, nonneg_int, positive_int, progress
from engine.commands.fields import add_fields
from trainer.commands.common import print_result
from trainer.metric_models import train_metric_models


def build(parser) -> None:
    parser.add_argument("--out", default=None, help="folder of the models (default assets/bench)")
    parser.add_argument("--clips", type=positive_int, default=2400, help="training clips to generate")
    parser.add_argument("--epochs", type=positive_int, default=10, help="passes over the clips")
    add_fields(
        parser,
        train_metric_models,
        "seed",
        "house_per_class",
        seed={"type": int, "help": "seeds the clips and the weights"},
        house_per_class={
            "type": nonneg_int,
            "help": "add this many clips of each house class (a judge for train measure --judge; needs --out)",
        },
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.house_per_class and not args.out:
        raise CliError("a judge that knows the house classes goes in its own folder: give --out DIR")
    report = train_metric_models(
        out_dir=Path(args.out or ROOT / "assets" / "bench"),
        n_train=args.clips,
        epochs=args.epochs,
        seed=args.seed,
        progress=progress("train metrics"),
        house_per_class=args.house_per_class,
    )
    return print_result(report)
