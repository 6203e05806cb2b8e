"""What several ``train`` methods share: progress printers on stderr, the JSON result, the options of a LoRA
run (`trainer.lora.method.LoraTrainConfig`) and of the FoleyBench check (`trainer.bench_guard.BenchCheck`)."""

from __future__ import annotations

import argparse
import json
import sys

from engine.commands.common import json_safe, positive_int
from engine.commands.fields import add_fields, fields_of
from trainer.bench_guard import BenchCheck
from trainer.lora.adapters import LORA_LAYERS
from trainer.lora.method import LoraTrainConfig


def print_result(result: dict) -> int:
    """A method's result as one JSON line on stdout (non-finite numbers as null); exit code 0."""
    print(json.dumps(json_safe(result)), flush=True)
    return 0


def show(label: str):
    """Progress ``(done, total, ...)`` on stderr, a line every 10 %."""

    def report(done: int, total: int, *_rest) -> None:
        if done == total or done % max(1, total // 10) == 0:
            print(f"{label}: {done}/{total}", file=sys.stderr, flush=True)

    return report


def show_parts(label: str):
    """Progress ``(step, total, loss parts)`` on stderr, one line per report."""

    def report(step: int, total: int, parts: dict) -> None:
        print(f"{label} {step}/{total} " + " ".join(f"{k}={v:.3f}" for k, v in parts.items()), file=sys.stderr)

    return report


def add_resume(parser) -> None:
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True, help="continue a run")


def add_threads(parser) -> None:
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: as is)")


def set_threads(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


# -------------------------------------------------------------------------------------------- LoRA runs


def add_bench_check(parser, *names: str) -> None:
    """--bench-clips, --bench-duration, --bench-steps (``names``): the FoleyBench check of a tune."""
    kinds = {"clips": {"type": int}, "steps": {"type": int}}
    add_fields(parser, BenchCheck, *names, prefix="bench_", **{k: v for k, v in kinds.items() if k in names})


def bench_check(args: argparse.Namespace, **fields) -> BenchCheck:
    return BenchCheck(**fields_of(args, BenchCheck, prefix="bench_") | fields)


def add_lora(parser, config: type = LoraTrainConfig, out: str | None = None) -> None:
    """The options every LoRA run shares (defaults: ``config``'s; ``out``: the default output folder)."""
    whole = {"type": positive_int}
    add_fields(
        parser,
        config,
        "model",
        "out",
        "steps",
        "batch",
        "lr",
        "warmup",
        "lora_rank",
        "lora_layers",
        "held_out",
        "eval_every",
        "patience",
        "max_minutes",
        "seed",
        "threads",
        out={"default": out} if out else {},
        steps=whole,
        batch=whole,
        warmup=whole,
        lora_rank=whole,
        eval_every=whole,
        threads=whole,
        lora_layers={"choices": list(LORA_LAYERS)},
    )
    add_bench_check(parser, "clips", "duration", "steps")
    add_resume(parser)


def lora_fields(args: argparse.Namespace) -> dict:
    """The `LoraTrainConfig` keywords of a LoRA run's options, its FoleyBench check included."""
    return fields_of(args, LoraTrainConfig) | {"bench": bench_check(args)}


def show_entry(e: dict) -> None:
    """One line per log entry of a LoRA run."""
    if e.get("phase") == "train":
        extra = "".join(f" {k}={e[k]:.3f}" for k in ("margin", "accuracy") if k in e)
        print(
            f"step {e['step']}/{e['steps']} loss {e['loss']:.4f}{extra} lr {e['lr']:.2e}", file=sys.stderr, flush=True
        )
    elif e.get("phase") == "eval":
        mark = " (best)" if e["improved"] else ""
        parts = [f"{name} {e[k]:.4f}" for k, name in (("held_out_own", "own"), ("held_out_replay", "replay")) if k in e]
        parts = f" ({' '.join(parts)})" if parts else ""
        print(f"step {e['step']}: held-out loss {e['held_out_loss']:.4f}{parts}{mark}", file=sys.stderr, flush=True)
    elif e.get("phase") == "done":
        print(f"FoleyBench check: {verdict(e.get('passed'))}", file=sys.stderr, flush=True)


def verdict(passed) -> str:
    return {True: "passed", False: "FAILED (the model is written but not offered)", None: "not run"}[passed]


def summary(result: dict) -> dict:
    """What a LoRA run prints: where it went, how it ended, and whether its result is offered."""
    keep = ("out", "finished", "method", "step", "resumed_from", "stopped", "best_step", "best_held_out_loss")
    out = {k: result.get(k) for k in keep}
    check = result.get("bench_check") or {}
    return out | {"offered": check.get("passed") is not False, "bench_check": check}
