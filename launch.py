#!/usr/bin/env python
"""The single entry point of the foley studio.

    python launch.py                 start the studio (127.0.0.1:7860)
    python launch.py world ...       write a FoleyWorld split (mp4 + wav + json per clip), or time the generator
    python launch.py bench ...       FoleyBench on a split: table as JSON on stdout and markdown on stderr
    python launch.py train ...       training commands (metrics: the FoleyBench metric models)

Bad input ends with a one-line error on stderr and exit code 2; set FOLEY_DEBUG=1 to see tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
# OpenMP threads that spin while waiting make every torch op slow on a busy 2-core machine; set before
# torch is imported (passive waiting costs nothing measurable when the machine is idle).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class CliError(Exception):
    """Bad command-line input; printed as one line."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected zero or more, got {value}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line (the CLI contract), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message}\n")


def _world_config(args: argparse.Namespace):
    from trainer.foleyworld.scene import WorldConfig

    try:
        return WorldConfig(
            duration=args.duration, fps=args.fps, width=args.width, height=args.height, sample_rate=args.sample_rate
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None


def cmd_world(args: argparse.Namespace) -> int:
    """Write a split, or measure generation speed."""
    cfg = _world_config(args)
    if args.speed:
        from trainer.foleyworld.speed import measure_speed

        result = measure_speed(cfg, count=args.count, video=not args.no_video)
        print(json.dumps(result))
        return 0
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
        progress=_progress(f"world {args.split}"),
    )
    print(json.dumps({"split": args.split, "out": str(out), "clips": len(metas)}))
    return 0


def _progress(label: str):
    def show(done: int, total: int) -> None:
        if sys.stderr.isatty() or done == total or done % max(1, total // 20) == 0:
            print(f"\r{label}: {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    return show


def cmd_bench(args: argparse.Namespace) -> int:
    """FoleyBench calibration rows on a written split (ground truth, shuffled, noise)."""
    from engine.bench.run import bench_split, markdown_table

    data = Path(args.data or ROOT / "data" / args.split)
    if not (data / "index.json").is_file():
        raise CliError(
            f"no FoleyWorld split at {data}; write one with: python launch.py world --split {args.split} "
            f"--count 200 --out {data}"
        )
    result = bench_split(data, rows=args.rows.split(","), limit=args.limit, progress=_progress(f"bench {args.split}"))
    print(json.dumps(result))
    print(markdown_table(result), file=sys.stderr)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Training subcommands."""
    if args.what == "metrics":
        from trainer.metric_models import train_metric_models

        report = train_metric_models(
            out_dir=Path(args.out),
            n_train=args.clips,
            epochs=args.epochs,
            seed=args.seed,
            progress=_progress("train metrics"),
        )
        print(json.dumps(report))
        return 0
    raise CliError(f"unknown training command {args.what!r}")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="launch.py", description="Foley authoring studio.")
    sub = p.add_subparsers(dest="command", parser_class=OneLineParser)

    w = sub.add_parser("world", help="write a FoleyWorld split or time the generator")
    w.add_argument("--split", default="train", choices=["train", "val", "test-single", "test-multi"])
    w.add_argument("--out", help="folder to write the clips into")
    w.add_argument("--count", type=_positive_int, default=10, help="number of clips")
    w.add_argument("--start", type=_nonneg_int, default=0, help="index of the first clip")
    w.add_argument("--duration", type=float, default=9.0, help="clip length in seconds (2-12)")
    w.add_argument("--random-duration", action="store_true", help="draw each clip's length in [2, 12] s")
    w.add_argument("--fps", type=float, default=24.0)
    w.add_argument("--width", type=_positive_int, default=96)
    w.add_argument("--height", type=_positive_int, default=96)
    w.add_argument("--sample-rate", type=_positive_int, default=44100)
    w.add_argument("--no-video", action="store_true", help="write only the WAV and JSON")
    w.add_argument("--speed", action="store_true", help="measure clips per second per core instead of writing")
    w.set_defaults(func=cmd_world)

    b = sub.add_parser("bench", help="FoleyBench on a written split")
    b.add_argument("--split", default="test-single", choices=["val", "test-single", "test-multi"])
    b.add_argument("--data", help="split folder (default data/<split>)")
    b.add_argument("--limit", type=_positive_int, default=None, help="use the first N clips")
    b.add_argument("--rows", default="ground_truth,shuffled,noise", help="comma-separated rows to compute")
    b.set_defaults(func=cmd_bench)

    t = sub.add_parser("train", help="training commands")
    t.add_argument("what", choices=["metrics"], help="metrics: train the FoleyBench metric models")
    t.add_argument("--out", default=str(ROOT / "assets" / "bench"), help="where the weights go")
    t.add_argument("--clips", type=_positive_int, default=2400, help="training clips to generate")
    t.add_argument("--epochs", type=_positive_int, default=10)
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        from app.studio import launch_studio

        return launch_studio()
    from engine.errors import UserInputError

    try:
        return args.func(args)
    except (CliError, UserInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI boundary: one line, never a traceback
        if os.environ.get("FOLEY_DEBUG"):
            raise
        print(f"error: {exc.__class__.__name__}: {exc} (set FOLEY_DEBUG=1 for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
