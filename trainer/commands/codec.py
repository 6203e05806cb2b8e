"""``train codec``: the stereo codec on FoleyWorld crops (`trainer.codec_training.CodecTrainConfig`); checkpoints
beside the output file, resumable."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.commands.common import DEFAULT_CODEC, positive_int
from engine.commands.fields import add_fields, fields_of
from trainer.codec_training import CodecTrainConfig, train_codec
from trainer.commands.common import add_resume, print_result, show_parts


def build(parser) -> None:
    parser.add_argument("--codec", default=None, help=f"the output file (default {DEFAULT_CODEC})")
    whole = {"type": positive_int}
    add_fields(
        parser,
        CodecTrainConfig,
        "preset",
        "steps",
        "batch",
        "crop_seconds",
        "lr",
        "seed",
        steps=whole,
        batch=whole,
        seed={"type": int},
    )
    add_resume(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.codec or DEFAULT_CODEC)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = train_codec(out, resume=args.resume, progress=show_parts("codec"), **fields_of(args, CodecTrainConfig))
    return print_result({k: v for k, v in report.items() if k != "history"})
