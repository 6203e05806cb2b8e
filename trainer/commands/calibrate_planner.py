"""``train calibrate-planner``: a planner file's per-class reading thresholds, chosen on FoleyWorld val clips."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.commands.common import ROOT, CliError, positive_int, progress
from engine.commands.fields import add_fields
from trainer.commands.common import add_threads, print_result, set_threads
from trainer.planner.calibrate import OBJECTIVES, calibrate


def build(parser) -> None:
    parser.add_argument("--planner-file", default=None, help="planner file (default: the shipped one)")
    parser.add_argument(
        "--out", default=None, help="the calibrated planner, .safetensors (default: beside it, *_calibrated)"
    )
    parser.add_argument("--calibration-clips", type=positive_int, default=300, help="FoleyWorld val clips")
    add_fields(
        parser,
        calibrate,
        "beta",
        "objective",
        beta={"flags": ("--event-beta",), "type": float, "help": "F-beta of events (> 1: recall)"},
        objective={"choices": list(OBJECTIVES), "help": "what the presence thresholds maximise"},
    )
    add_threads(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.bundle import MODELS_DIR, PLANNER_FILE

    set_threads(args)
    src = Path(args.planner_file or MODELS_DIR / "default" / PLANNER_FILE)
    out = Path(args.out or src.with_name(f"{src.stem}_calibrated.safetensors"))
    if out.suffix != ".safetensors":
        raise CliError(f"--out for the planner is a .safetensors file, got {out}")
    if args.beta <= 0:
        raise CliError(f"--event-beta must be > 0, got {args.beta:g}")
    work = ROOT / "data" / "planner-calibration"
    report = calibrate(
        src, args.calibration_clips, out, work, args.beta, progress("calibrate"), objective=args.objective
    )
    return print_result(report)
