"""``launch.py score VIDEO AUDIO [--cot FILE.json]``: the four reward scores of a take against its video and
CoT, and their weighted total, as JSON on stdout."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.commands.common import add_weights, json_safe, read_take


def build(parser) -> None:
    parser.add_argument("video", metavar="VIDEO", help="the video the take is for")
    parser.add_argument("audio", metavar="AUDIO", help="the take: WAV/FLAC (or a media file with an audio track)")
    parser.add_argument("--cot", help="CoT JSON file; default: the model's planner, else the generic fallback")
    add_weights(parser, "weights of the total")
    parser.add_argument("--model", default="default", help="model whose planner writes the CoT when --cot is not given")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.cot import load_cot
    from engine.pipeline import FALLBACK_COT
    from engine.planner.default import has_planner, load_planner
    from engine.rewards import as_view, load_reward_heads, weighted_total

    video = Path(args.video)
    audio, sr = read_take(Path(args.audio))
    view = as_view(video)  # a bad video fails here, before anything loads
    if args.cot:
        cot, source = load_cot(args.cot), "file"
    elif has_planner(args.model):
        cot, source = load_planner(args.model).plan(video), "planner"
        print(f"note: no --cot given; the CoT comes from the planner of model {args.model!r}", file=sys.stderr)
    else:
        cot, source = FALLBACK_COT, "fallback"
        print(
            f"note: no --cot given and model {args.model!r} has no planner; using the generic fallback CoT",
            file=sys.stderr,
        )
    scores, info = load_reward_heads().score_take(audio, sr, view, cot)
    line = {"video": str(video), "audio": str(args.audio), "cot_source": source, "weights": args.weights}
    line |= {
        "scores": {k: round(v, 4) for k, v in scores.items()},
        "total": round(weighted_total(scores, args.weights), 4),
    }
    print(json.dumps(json_safe(line | {"details": info})))
    return 0
