"""``train finetune --dataset DATASET --out DIR``: a LoRA fine-tune on an ingested dataset
(`trainer.finetune.FinetuneConfig`), checked against FoleyBench before it is offered."""

from __future__ import annotations

import argparse

from engine.commands.fields import add_fields, fields_of
from engine.errors import UserInputError
from trainer.commands.common import add_lora, lora_fields, print_result, show_entry, summary
from trainer.finetune import FinetuneConfig


def build(parser) -> None:
    add_fields(
        parser,
        FinetuneConfig,
        "dataset",
        "distill",
        "guided",
        dataset={"default": None},
        guided={"flags": ("--guided-targets",)},
    )
    add_lora(parser, FinetuneConfig)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trainer.finetune import finetune

    if not args.dataset:
        raise UserInputError("train finetune needs --dataset DATASET (made by train ingest)")
    fields = fields_of(args, FinetuneConfig) | lora_fields(args)
    return print_result(summary(finetune(FinetuneConfig(**fields), progress=show_entry, resume=args.resume)))
