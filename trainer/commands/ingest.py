"""``train ingest --videos DIR [--sounds DIR] [--tags FILE.csv] --out DATASET``: footage and a tagged sound
library cut into training windows (`trainer.ingest`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.commands.fields import add_fields
from engine.errors import UserInputError
from trainer.commands.common import print_result, show
from trainer.ingest import IngestConfig


def build(parser) -> None:
    parser.add_argument("--videos", help="folder of videos with their own audio (<stem>.cot.json beside = its CoT)")
    parser.add_argument("--sounds", help="folder of audio files; tags from the names or --tags")
    parser.add_argument("--tags", help="CSV with the columns file,tags for the --sounds files")
    parser.add_argument(
        "--replay",
        type=int,
        default=0,
        help="add this many FoleyWorld train clips (the start model's world) against forgetting",
    )
    add_fields(parser, IngestConfig, "window", window={"flags": ("--window-seconds",)})
    parser.add_argument("--out", help="the dataset folder")
    parser.add_argument("--model", default="default", help="start model (name or folder): its codec and planner")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.bundle import load_bundle
    from engine.planner.default import has_planner, load_planner
    from trainer.ingest import ingest, replay_folder, sound_folder, video_folder

    if not (args.videos or args.sounds) or not args.out:
        raise UserInputError("train ingest needs --videos DIR and/or --sounds DIR, and --out DATASET")
    taken: set[str] = set()
    sources = video_folder(args.videos, taken) if args.videos else []
    sources += sound_folder(args.sounds, args.tags, taken) if args.sounds else []
    if not sources:
        raise UserInputError("no video or audio files in the given folders")
    if args.replay < 0:
        raise UserInputError(f"--replay must be >= 0, got {args.replay}")
    if args.replay:  # the replayed clips live in the dataset's own folder
        sources += replay_folder(Path(args.out) / "replay", args.replay, taken, progress=show("replay"))
    bundle = load_bundle(args.model)
    planner = load_planner(args.model).plan if args.videos and has_planner(args.model) else None
    report = ingest(args.out, bundle, sources, IngestConfig(window=args.window), planner, show("ingest"))
    for s in report.skipped:
        print(f"skipped {s['file']}: {s['reason']}", file=sys.stderr)
    return print_result(report.summary())
