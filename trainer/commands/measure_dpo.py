"""``train measure-dpo --out DIR --dimension temporal``: pairs rendered by the start model and judged on one
dimension, Flow-DPO on them, and that dimension's held-out reward before and after (`trainer.measure.measure_dpo`)."""

from __future__ import annotations

import argparse

from engine.commands.fields import add_fields, fields_of
from engine.errors import UserInputError
from engine.pipeline import RenderSettings
from trainer.commands.common import add_lora, lora_fields, print_result, show
from trainer.commands.measure import add_render
from trainer.dpo import DpoConfig
from trainer.foleyworld.scene import WorldConfig
from trainer.measure import measure_dpo


def build(parser) -> None:
    parser.add_argument("--dimension", default="temporal", help="the dimension the designer prefers")
    parser.add_argument("--pair-clips", type=int, default=24, help="clips rendered for pairs")
    parser.add_argument("--takes", type=int, default=4, help="takes rendered per clip")
    add_fields(
        parser, measure_dpo, "top", top={"flags": ("--pair-top",), "type": int, "help": "K best x K worst a clip"}
    )
    parser.add_argument("--held-out-clips", type=int, default=16, help="held-out clips")
    add_fields(parser, WorldConfig, "duration", duration={"help": "seconds per FoleyWorld clip"})
    add_render(parser, "steps")  # --seed: the LoRA run's, the renders' too
    add_fields(parser, DpoConfig, "beta", "window", window={"flags": ("--window-seconds",)})
    add_lora(parser, DpoConfig, out="runs/dpo-measure/model")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.rewards import DIMENSIONS

    if args.dimension not in DIMENSIONS:
        raise UserInputError(f"--dimension must be one of {', '.join(DIMENSIONS)}")
    fields = fields_of(args, DpoConfig) | lora_fields(args) | {"pairs": "(written by the measurement)"}
    settings = RenderSettings(seed=args.seed, steps=args.render_steps)
    result = measure_dpo(
        DpoConfig(**fields),
        args.dimension,
        args.pair_clips,
        args.takes,
        args.held_out_clips,
        settings,
        args.duration,
        show("dpo"),
        args.top,
    )
    return print_result(result)
