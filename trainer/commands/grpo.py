"""``train grpo``: Fast-GRPO (or with --flow Flow-GRPO) of a model with the four reward heads
(`trainer.grpo.learn.GrpoConfig`), checked against FoleyBench before it is offered (``--bench-clips 0``:
not checked); resumable."""

from __future__ import annotations

import argparse
import sys

from engine.commands.common import ROOT, add_weights, nonneg_int, positive_int
from engine.commands.fields import add_fields, field_default, fields_of
from trainer.commands.common import add_bench_check, add_resume, bench_check, print_result, verdict
from trainer.grpo.learn import GrpoConfig


def build(parser) -> None:
    whole = {"type": positive_int}
    add_fields(
        parser,
        GrpoConfig,
        "model",
        "out",
        "prompts",
        "clips",
        "eval_prompts",
        "eval_clips",
        "dataset",
        "held_out",
        "duration",
        "iterations",
        "group",
        "steps",
        "window",
        out={"default": str(ROOT / field_default(GrpoConfig, "out"))},
        clips={"flags": ("--prompt-clips",), "type": positive_int},
        eval_clips=whole,
        iterations=whole,
        group=whole,
        steps={"flags": ("--sample-steps",), "type": positive_int},
        window=whole,
    )
    parser.add_argument("--flow", action="store_true", help="Flow-GRPO: the SDE on every step (window = all steps)")
    add_weights(parser, "reward weights")
    add_fields(
        parser,
        GrpoConfig,
        "per_reward_norm",
        "shared_prefix",
        "kl",
        "lr",
        "minibatch",
        "lora_rank",
        "eval_every",
        "seed",
        "threads",
        "max_minutes",
        minibatch={"flags": ("--batch",), "type": positive_int},
        lora_rank={"type": nonneg_int},
        eval_every={"type": nonneg_int},
        threads=whole,
    )
    add_bench_check(parser, "clips")  # the check's other settings: `trainer.bench_guard.BenchCheck`'s defaults
    add_resume(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trainer.grpo.learn import train_grpo

    fields = fields_of(args, GrpoConfig) | {"bench": bench_check(args)}
    cfg = GrpoConfig(**fields | ({"window": args.steps} if args.flow else {}))
    result = train_grpo(cfg, progress=lambda e: show(e, cfg.iterations), resume=args.resume)
    steps = [h for h in result["history"] if h.get("phase") == "train"]
    summary = {k: v for k, v in result.items() if k not in ("history", "policy", "window_starts")}
    offered = (result.get("bench_check") or {}).get("passed") is not False
    return print_result(summary | {"method": cfg.method, "last": steps[-1] if steps else {}, "offered": offered})


def show(e: dict, iterations: int) -> None:
    """One line on stderr per iteration and evaluation, and the FoleyBench verdict at the end."""
    if e.get("phase") == "done":
        print(f"FoleyBench check: {verdict(e.get('passed'))}", file=sys.stderr, flush=True)
    if e.get("phase") not in ("train", "eval"):
        return
    parts = [f"{k[7:]}={e[k]:.3f}" for k in e if k.startswith("reward_")]
    if "kl" in e:
        parts += [f"kl={e['kl']:.2e}", f"clip={e['clip_frac']:.3f}", f"nfe={e['policy_nfe_per_sample']:g}"]
    parts += [f"eval={e['eval_weighted']:.3f}"] if "eval_weighted" in e else []
    parts += [f"{e['seconds']:.1f}s"] if "seconds" in e else []
    print(f"grpo {e['iteration']}/{iterations} " + " ".join(parts), file=sys.stderr, flush=True)
