"""``train features``: build (or grow, or just check) the generator's feature cache
(`trainer.feature_cache.FeatureConfig`): --clips train clips from --first-scene."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.commands.common import DEFAULT_CODEC, ROOT, CliError, nonneg_int, positive_int, progress
from engine.commands.fields import add_fields, field_default
from trainer.commands.common import print_result
from trainer.feature_cache import FeatureConfig
from trainer.pretrain import PretrainConfig


def build(parser) -> None:
    add_options(parser)
    parser.set_defaults(func=run)


def add_options(parser) -> None:
    """The cache's options (``train pretrain`` builds a missing cache with them too)."""
    add_fields(parser, PretrainConfig, "cache", cache={"default": str(ROOT / field_default(PretrainConfig, "cache"))})
    add_fields(
        parser,
        FeatureConfig,
        "count",
        "start",
        count={"flags": ("--clips",), "type": positive_int},
        start={"flags": ("--first-scene",), "type": nonneg_int, "help": "train scene index of the first clip"},
    )
    parser.add_argument("--codec", default=None, help=f"codec file (default {DEFAULT_CODEC})")
    parser.add_argument(
        "--cues", default=None, help="planner file whose frame-wise cues join the sync features (engine.sync)"
    )


def build_cache(args: argparse.Namespace) -> dict:
    """Build the cache the options describe; -> what the command prints."""
    from trainer.feature_cache import build_features

    codec = Path(args.codec or DEFAULT_CODEC)
    if not codec.is_file():
        raise CliError(f"codec file {codec} not found; pass --codec FILE (a codec trained by trainer.codec_training)")
    cues = Path(args.cues) if args.cues else None
    if cues is not None and not cues.is_file():
        raise CliError(f"planner file {cues} not found; pass --cues FILE (a planner trained by `train planner`)")
    cfg = FeatureConfig(start=args.start, count=args.count)
    index = build_features(args.cache, codec, cfg, progress=progress("features"), planner_path=cues)
    return {"cache": str(args.cache), "clips": len(index["clips"]), "codec": str(codec), "cues": args.cues}


def run(args: argparse.Namespace) -> int:
    return print_result(build_cache(args))
