"""``train dpo --pairs FILE.json --out DIR`` (or ``--project NAME``): Flow-DPO on preference pairs
(`trainer.dpo.DpoConfig`), checked against FoleyBench before it is offered.

``--project`` reads a studio project's starred and rejected takes; the trainer cannot open the studio's
projects (``trainer`` never imports ``app``), so ``launch.py`` provides ``args.project_pairs(name, out)``."""

from __future__ import annotations

import argparse

from engine.commands.fields import add_fields, fields_of
from engine.errors import UserInputError
from trainer.commands.common import add_lora, lora_fields, print_result, show_entry, summary
from trainer.dpo import DpoConfig

OUT = "runs/dpo"  # default output folder of a DPO run (its pairs file from --project goes there too)


def build(parser) -> None:
    add_fields(
        parser,
        DpoConfig,
        "pairs",
        "beta",
        "window",
        pairs={"default": None, "help": "pairs file (foley-pairs/1 JSON)"},
        window={"flags": ("--window-seconds",)},
    )
    parser.add_argument("--project", help="studio project whose starred and rejected takes are the pairs")
    add_lora(parser, DpoConfig, out=OUT)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from trainer.dpo import train_dpo

    if args.project:
        if getattr(args, "project_pairs", None) is None:
            raise UserInputError("--project needs the studio's projects; run it through launch.py")
        args.pairs = str(args.project_pairs(args.project, Path(args.out) / "pairs_source.json"))
    if not args.pairs:
        raise UserInputError("train dpo needs --pairs FILE.json or --project NAME")
    fields = fields_of(args, DpoConfig) | lora_fields(args)
    return print_result(summary(train_dpo(DpoConfig(**fields), progress=show_entry, resume=args.resume)))
