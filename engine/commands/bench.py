"""``launch.py bench MODE ...``: benchmarks on a written FoleyWorld split (DESIGN: ``bench [--split NAME]
[--limit N] [--model ...]``). Modes: ``table`` (the FoleyBench table, the default), ``rewards``, ``follow-times``,
``planner``; ``trainer.commands`` adds ``speed`` and ``grpo-runs``, which need the trainer's data.

The modes were once flags of one parser, and those spellings still work: ``bench --speed 5``,
``bench --grpo-runs A,B``, ``bench --planner``, ``bench --time-shift S`` and ``bench --rewards`` choose that
mode, anything else without a mode is ``table`` (`old_spellings`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.commands.common import (
    ROOT,
    CliError,
    add_sampling_options,
    add_weights,
    guidance,
    nonneg_int,
    positive_int,
    progress,
    sampling_kw,
)
from engine.commands.fields import add_fields
from engine.pipeline import RenderSettings

SPLITS = ("val", "test-single", "test-multi")  # FoleyWorld splits a benchmark runs on
OLD_MODE_FLAGS = {  # an old flag -> the mode it chose, in the order the old single parser tested them
    "--speed": "speed",
    "--grpo-runs": "grpo-runs",
    "--planner": "planner",
    "--time-shift": "follow-times",
    "--rewards": "rewards",
}
SWITCHES = ("--planner", "--rewards")  # old mode flags that took no value (dropped when they choose the mode)


def old_spellings(args: list[str]) -> list[str]:
    """``bench``'s argument list with the mode named: an old mode flag chooses its mode, else ``table``."""
    if args and (not args[0].startswith("-") or args[0] in ("-h", "--help")):
        return args  # a mode is named (or help on the modes is asked for)
    for flag, mode in OLD_MODE_FLAGS.items():
        if any(a == flag or a.startswith(flag + "=") for a in args):
            return [mode, *(a for a in args if a not in SWITCHES)]
    return ["table", *args]


def build(parser) -> None:
    parser.rewrite = old_spellings


def add_split(parser) -> None:
    """--split, --data and --limit: the clips a mode runs on."""
    parser.add_argument("--split", default="test-single", choices=SPLITS)
    parser.add_argument("--data", help="split folder (default data/<split>)")
    parser.add_argument("--limit", type=positive_int, default=None, help="use the first N clips")


def add_model(parser, what: str, names: tuple[str, ...] = ("seed", "steps", "cfg", "rescale")) -> None:
    """--model, and the render settings of the model's takes (``names``: `RenderSettings` fields)."""
    parser.add_argument("--model", default="default", help="model name under assets/models or a model folder")
    add_fields(
        parser,
        RenderSettings,
        *names,
        seed={"type": nonneg_int, "help": f"{what}seed of clip k is seed + k"},
        steps={"type": positive_int, "help": f"{what}sampling steps"},
        cfg={"type": guidance, "help": f"{what}guidance scale"},
        rescale={"help": f"{what}guidance rescale in 0 .. 1"},
    )
    add_sampling_options(parser, what)


def build_table(parser) -> None:
    """``bench table`` (and ``bench rewards``): one row per audio source over the split's clips."""
    add_split(parser)
    parser.add_argument(
        "--rows",
        default="ground_truth,shuffled,noise",
        help="comma-separated rows: ground_truth, shuffled, noise, codec (the model's codec reconstruction), "
        "model (the model's renders of the split's videos with the ground-truth CoT); rewards: also late, mirrored",
    )
    add_model(parser, "model row: ")
    parser.add_argument(
        "--cot", default="truth", choices=["truth", "planner"], help="model row: ground-truth CoT or the planner's"
    )
    parser.add_argument(
        "--candidates", type=positive_int, default=1, help="model row: best of N seeds by the weighted reward"
    )
    add_weights(parser, "model row: best-of-N weights; rewards: weights of the total")
    parser.set_defaults(func=run_table, rewards=False)


def build_rewards(parser) -> None:
    build_table(parser)
    parser.set_defaults(rewards=True)


def build_follow_times(parser) -> None:
    add_split(parser)
    add_model(parser, "")
    parser.add_argument(
        "--time-shift",
        type=float,
        required=True,
        metavar="S",
        help="render each clip with its Temporal block's times as written and moved by S seconds (same seed) and "
        "score both takes' onsets against the true and the moved events",
    )
    parser.set_defaults(func=run_follow_times)


def build_planner(parser) -> None:
    add_split(parser)
    parser.add_argument("--model", default="default", help="model whose planner reads the clips (name or folder)")
    parser.set_defaults(func=run_planner)


def split_folder(args: argparse.Namespace) -> Path:
    """The split's folder, checked."""
    data = Path(args.data or ROOT / "data" / args.split)
    if not (data / "index.json").is_file():
        raise CliError(
            f"no FoleyWorld split at {data}; write one with: python launch.py world --split {args.split} "
            f"--count 200 --out {data}"
        )
    return data


def settings_of(args: argparse.Namespace) -> RenderSettings:
    return RenderSettings(seed=args.seed, steps=args.steps, cfg=args.cfg, rescale=args.rescale, **sampling_kw(args))


def run_table(args: argparse.Namespace) -> int:
    """FoleyBench rows (or with ``rewards`` the reward heads' scores) on a written split."""
    from engine.bench.run import bench_split, markdown_table

    data = split_folder(args)
    rows = args.rows.split(",")
    extra = {}
    if "codec" in rows:
        extra["codec"] = _codec_row(args.model)
    if "model" in rows:
        from engine.bench.run import render_row
        from engine.bundle import load_bundle
        from engine.planner.default import load_planner

        bundle = load_bundle(args.model)
        planner = load_planner(args.model) if args.cot == "planner" else None
        extra["model"] = render_row(bundle, data, settings_of(args), planner, args.candidates, args.weights)
    if args.rewards:  # the reward heads instead of the FoleyBench metrics
        from engine.bench.rewards import reward_markdown, reward_table

        result = reward_table(data, rows, args.weights, args.limit, extra_rows=extra, progress=progress("rewards"))
        print(json.dumps(result))
        print(reward_markdown(result), file=sys.stderr)
        return 0
    result = bench_split(data, rows=rows, limit=args.limit, extra_rows=extra, progress=progress(f"bench {args.split}"))
    if "model" in result["rows"]:  # name the row after the model and where its CoT came from
        name = f"model {args.model}" + (" (planner CoT)" if args.cot == "planner" else "")
        name += f" (best of {args.candidates})" if args.candidates > 1 else ""
        result["rows"] = {(name if k == "model" else k): v for k, v in result["rows"].items()}
    print(json.dumps(result))
    print(markdown_table(result), file=sys.stderr)
    return 0


def _codec_row(model: str) -> dict:
    from engine.bench.run import codec_row
    from engine.bundle import MODELS_DIR
    from engine.codec import load_codec

    folder = Path(model) if Path(model).is_dir() else MODELS_DIR / model
    if not (folder / "codec.safetensors").is_file():
        raise CliError(f"no codec in {folder}; train one with: python launch.py train codec")
    return codec_row(load_codec(folder / "codec.safetensors").eval())


def run_follow_times(args: argparse.Namespace) -> int:
    """Renders with the Temporal block's times as written and moved by --time-shift, scored against both."""
    from engine.bench.run import follow_times, follow_times_table
    from engine.bundle import load_bundle

    data = split_folder(args)
    bundle = load_bundle(args.model)
    result = follow_times(
        bundle, data, settings_of(args), args.time_shift, args.limit, progress=progress("follow times")
    )
    result["model"] = args.model
    print(json.dumps(result))
    print(follow_times_table(result), file=sys.stderr)
    return 0


def run_planner(args: argparse.Namespace) -> int:
    """How well the model's planner reads the split's silent videos."""
    from engine.bench.planning import planner_accuracy
    from engine.planner.default import load_planner

    data = split_folder(args)
    planner = load_planner(args.model)
    families = {c.name: c.family for c in planner.net.config.classes}
    result = planner_accuracy(planner.read, families, data, args.limit, progress=progress(f"plan {args.split}"))
    print(json.dumps({"split": args.split, "model": args.model, **result}))
    return 0
