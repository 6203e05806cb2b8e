"""``train measure --house DIR --tuned MODEL``: house FD / CLAP~ and FoleyBench of a tuned model against its
start model, at one or more strengths and guidance settings (`trainer.measure.measure_house`)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from engine.commands.common import positive_int
from engine.commands.fields import add_fields
from engine.errors import UserInputError
from engine.pipeline import RenderSettings
from trainer.commands.common import add_bench_check, add_threads, bench_check, print_result, set_threads, show


def build(parser) -> None:
    parser.add_argument("--house", help="house library folder (its test/ part is rendered)")
    parser.add_argument("--tuned", help="the tuned model folder")
    parser.add_argument("--model", default="default", help="the start model (name or folder)")
    add_render(parser)
    parser.add_argument("--strengths", default="1", help="the tune's strengths, comma-separated (e.g. 1,0.7)")
    parser.add_argument(
        "--tuned-guidance",
        default=None,
        metavar="CFG[:VIDEO[:RESCALE]],...",
        help="the tune renders with this text guidance scale (picture scale, guidance rescale; default the render "
        "defaults, as the start model), its FoleyBench check too; several, comma-separated, are measured in one run",
    )
    parser.add_argument(
        "--judge",
        help="also score the same renders with the metric models in this folder (a judge that knows the house "
        "classes: train metrics --house-per-class N --out DIR)",
    )
    add_bench_check(parser, "clips", "duration")
    parser.add_argument("--out", help="working folder (default <tuned>/measure)")
    add_threads(parser)
    parser.set_defaults(func=run)


def add_render(parser, *names: str) -> None:
    """--seed and --sample-steps (``names``: seed, steps): how the measurements render (`RenderSettings`)."""
    add_fields(
        parser,
        RenderSettings,
        *(names or ("seed", "steps")),
        seed={
            "flags": ("--seed",),
            "type": int,
            "help": "seed of the renders (clip k: seed + k), of the FoleyBench check's too",
        },
        steps={"flags": ("--sample-steps",), "type": positive_int, "help": "sampler steps of every render"},
        prefix="render_",
    )


def run(args: argparse.Namespace) -> int:
    from trainer.measure import house_markdown, measure_house

    if not args.house or not args.tuned:
        raise UserInputError("train measure needs --house DIR (from train house) and --tuned MODEL")
    test = Path(args.house) / "test"
    if not (test / "index.json").is_file():
        raise UserInputError(f"no house test clips in {test}; write them with: python launch.py train house")
    set_threads(args)
    settings = RenderSettings(seed=args.render_seed, steps=args.render_steps)
    bench = bench_check(args, steps=args.render_steps, seed=args.render_seed)
    try:
        strengths = tuple(float(v) for v in args.strengths.split(","))
    except ValueError:
        raise UserInputError(f"--strengths must be numbers separated by commas, got {args.strengths!r}") from None
    tuned_settings = tuned_guidance(settings, args.tuned_guidance)
    work = Path(args.out or Path(args.tuned) / "measure")
    result = measure_house(
        test, args.model, args.tuned, settings, bench, work, show("measure"), strengths, tuned_settings, args.judge
    )
    print(house_markdown(result), file=sys.stderr)
    return print_result(result)


def tuned_guidance(settings: RenderSettings, text: str | None) -> tuple[RenderSettings, ...]:
    """The tune's render settings from --tuned-guidance: ``settings`` with each comma-separated "CFG",
    "CFG:VIDEO" or "CFG:VIDEO:RESCALE" applied (what is not given stays as in ``settings``); ``(settings,)``
    without it."""
    if text is None:
        return (settings,)
    out = []
    for item in text.split(","):
        parts = item.split(":")
        try:
            values = [float(v) for v in parts]
        except ValueError:
            values = []
        if not 1 <= len(values) <= 3 or len(parts) != len(values):
            raise UserInputError(
                f"--tuned-guidance must be CFG, CFG:VIDEO or CFG:VIDEO:RESCALE (numbers, comma-separated), got {text!r}"
            )
        kw = dict(zip(("cfg", "video_cfg", "rescale"), values))
        out.append(replace(settings, **kw))  # RenderSettings validates the scales
    if len(set(out)) != len(out):
        raise UserInputError(f"--tuned-guidance repeats a setting: {text!r}")
    return tuple(out)
