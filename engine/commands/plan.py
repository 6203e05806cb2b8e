"""``launch.py plan VIDEO``: the four CoT blocks of a video as JSON on stdout."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.commands.common import nonneg_int


def build(parser) -> None:
    parser.add_argument("video", metavar="VIDEO", help="video file (its audio, if any, is not used)")
    parser.add_argument("--model", default="default", help="model whose planner to use (name or folder)")
    parser.add_argument("--seed", type=nonneg_int, default=0, help="picks among equivalent phrasings")
    parser.add_argument(
        "--planner", default="default", choices=["default", "mllm"], help="the shipped planner or a multimodal LLM"
    )
    parser.add_argument("--mllm-model", help="--planner mllm: hub id or local folder (default Qwen2.5-VL-7B-Instruct)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.planner.default import load_planner

    planner = load_planner(args.model, args.planner, args.mllm_model)
    print(json.dumps(planner.plan(Path(args.video), seed=args.seed).to_dict(), indent=2))
    return 0
