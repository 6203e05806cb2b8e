"""The ``bench`` modes that need the trainer: ``speed`` (end-to-end renders of a 9 s FoleyWorld clip) and
``grpo-runs`` (the held-out reward against training time of a Fast-GRPO and a Flow-GRPO run)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.bench.timing import render_speed
from engine.commands.bench import add_model
from engine.commands.common import CliError, positive_int, print_json, progress, sampling_kw
from engine.commands.fields import field_default


def build_speed(parser) -> None:
    parser.add_argument(
        "--runs",
        "--speed",
        dest="runs",
        type=positive_int,
        default=field_default(render_speed, "runs"),
        metavar="N",
        help="time N end-to-end renders of a 9 s clip (decode, encode, sample, decode, write) and report the median "
        "wall time and the peak memory (default: %(default)s)",
    )
    parser.add_argument(
        "--candidates",
        type=positive_int,
        default=field_default(render_speed, "candidates"),
        metavar="N",
        help="also time each run as a best-of-N render (N takes scored by the reward heads, the best written), "
        "alternating with the single take, and report the ratio of their medians (default: %(default)s)",
    )
    add_model(parser, "", names=("steps", "cfg"))
    parser.set_defaults(func=run_speed)


def build_grpo_runs(parser) -> None:
    parser.add_argument(
        "--runs",
        "--grpo-runs",
        dest="runs",
        required=True,
        metavar="FAST,FLOW",
        help="two GRPO run folders (Fast-GRPO, Flow-GRPO from the same start); reports the time Fast-GRPO takes to "
        "reach Flow-GRPO's final held-out reward",
    )
    parser.add_argument("--figure", default=None, metavar="PNG", help="write the reward-time figure here")
    parser.add_argument("--smooth", type=positive_int, default=1, help="trailing mean over this many evaluations")
    parser.set_defaults(func=run_grpo_runs)


def run_speed(args: argparse.Namespace) -> int:
    """The render-speed benchmark on a 9 s FoleyWorld test clip written to a temporary folder."""
    import tempfile

    from engine.bench.timing import plan_speed
    from engine.media import write_mp4
    from engine.planner.default import has_planner
    from trainer.foleyworld.scene import WorldConfig
    from trainer.foleyworld.splits import make_clip
    from trainer.foleyworld.video import render_frames

    clip = make_clip("test-single", 0, WorldConfig(duration=9.0))
    cfg = clip.scene.config
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "clip.mp4"
        write_mp4(video, render_frames(clip.scene), cfg.fps, clip.audio.audio, cfg.sample_rate)
        report = render_speed(
            args.model,
            video,
            runs=args.runs,
            steps=args.steps,
            cfg=args.cfg,
            progress=progress("speed"),
            options=sampling_kw(args),
            candidates=args.candidates,
        )
        if has_planner(args.model):
            report["plan"] = plan_speed(args.model, video, runs=args.runs)
    print(json.dumps(report))
    return 0


def run_grpo_runs(args: argparse.Namespace) -> int:
    from trainer.grpo.compare import compare, figure

    runs = [r for r in args.runs.split(",") if r]
    if len(runs) != 2:
        raise CliError(f"--grpo-runs takes two run folders, FAST,FLOW; got {args.runs!r}")
    report = compare(*runs, smooth=args.smooth)
    if args.figure:
        report["figure"] = str(figure(*runs, args.figure, smooth=args.smooth))
    return print_json(report)
