"""``train house --out DIR``: the procedural house library (videos, tagged sounds, held-out test clips) that
measures fine-tuning (`trainer.house.write_library`)."""

from __future__ import annotations

import argparse

from engine.commands.fields import add_fields, fields_of
from engine.errors import UserInputError
from trainer.commands.common import print_result, show
from trainer.house import write_library


def build(parser) -> None:
    parser.add_argument("--out", help="the library folder")
    add_fields(
        parser,
        write_library,
        "per_class",
        "duration",
        "test_per_class",
        "sounds_per_class",
        per_class={"type": int, "help": "videos per class"},
        duration={"type": float, "help": "seconds per clip (2-12)"},
        test_per_class={"type": int, "help": "held-out clips per class"},
        sounds_per_class={"type": int, "help": "tagged sounds per class"},
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.out:
        raise UserInputError("train house needs --out DIR")
    if min(args.per_class, args.test_per_class) < 1 or not 2.0 <= args.duration <= 12.0:
        raise UserInputError("need --per-class and --test-per-class >= 1 and --duration in 2..12 s")
    return print_result(write_library(progress=show("house"), **fields_of(args, write_library)))
