"""``train blend --tuned MODEL --strength S --out DIR``: a tune of --model at strength S (0: the start model,
1: the tune), checked against FoleyBench before it is offered."""

from __future__ import annotations

import argparse

from engine.errors import UserInputError
from trainer.commands.common import add_bench_check, bench_check, print_result, show


def build(parser) -> None:
    parser.add_argument("--model", default="default", help="the start model the tune was made from (name or folder)")
    parser.add_argument("--tuned", help="the tuned model folder")
    parser.add_argument("--strength", type=float, default=1.0, help="0 (the start model) .. 1 (the tune)")
    parser.add_argument(
        "--half", action="store_true", help="write the generator in float16, as the shipped bundles are"
    )
    parser.add_argument("--out", help="the blended model folder")
    add_bench_check(parser, "clips", "duration", "steps")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trainer.lora.adapters import blend

    if not args.tuned or not args.out:
        raise UserInputError("train blend needs --tuned MODEL (a tune of --model) and --out DIR")
    verdict = blend(args.model, args.tuned, args.strength, args.out, bench_check(args), show("bench"), half=args.half)
    offered = verdict.get("passed") is not False
    result = {"out": str(args.out), "strength": args.strength, "float16": args.half, "offered": offered}
    return print_result(result | {"bench_check": verdict})
