"""``launch.py world``: write a FoleyWorld split (mp4 + wav + json per clip), or time the generator (--speed)."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.commands.common import CliError, nonneg_int, positive_int, print_json, progress
from engine.commands.fields import add_fields, fields_of
from trainer.foleyworld.scene import WorldConfig

FORMAT = ("duration", "fps", "width", "height", "sample_rate")  # the `WorldConfig` fields the options set


def build(parser) -> None:
    parser.add_argument("--split", default="train", choices=["train", "val", "test-single", "test-multi"])
    parser.add_argument("--out", help="folder to write the clips into")
    parser.add_argument("--count", type=positive_int, default=10, help="number of clips")
    parser.add_argument("--start", type=nonneg_int, default=0, help="index of the first clip")
    whole = {"type": positive_int}
    add_fields(parser, WorldConfig, *FORMAT, width=whole, height=whole, sample_rate=whole)
    parser.add_argument("--random-duration", action="store_true", help="draw each clip's length in [2, 12] s")
    parser.add_argument("--no-video", action="store_true", help="write only the WAV and JSON")
    parser.add_argument("--speed", action="store_true", help="measure clips per second per core instead of writing")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write a split, or measure generation speed."""
    try:
        cfg = WorldConfig(**fields_of(args, WorldConfig))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.speed:
        from trainer.foleyworld.throughput import measure_speed

        return print_json(measure_speed(cfg, count=args.count, video=not args.no_video))
    if not args.out:
        raise CliError("world needs --out DIR (or --speed to time the generator)")
    from trainer.foleyworld.splits import write_split

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} exists and is not a folder")
    metas = write_split(
        args.split,
        out,
        args.count,
        cfg,
        start=args.start,
        video=not args.no_video,
        random_duration=args.random_duration,
        progress=progress(f"world {args.split}"),
    )
    return print_json({"split": args.split, "out": str(out), "clips": len(metas)})
