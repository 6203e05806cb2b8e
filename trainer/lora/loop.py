"""The training loop shared by LoRA fine-tuning (`trainer.finetune`) and Flow-DPO (`trainer.dpo`).

A method supplies an `Objective`: the lengths of its training items (for the data order), a loss of one
batch and a held-out evaluation. The loop is a few named steps (batch, policy step, evaluate and early
stopping, checkpoint, finish) with the overfitting guards the issue asks for:

- a held-out part of the data is evaluated before the first step (the start model) and every
  ``eval_every`` steps with fixed noise and times, so two evaluations differ only by the weights; the
  adapters of the best evaluation are kept (a run that never beats the start model gives it back);
- early stopping: after ``patience`` evaluations without an improvement of at least ``min_delta``
  (relative), or after ``max_minutes`` of training, the run ends and the best adapters are the result;
- before the result is offered, FoleyBench on the original classes compares it with the start model
  (`trainer.bench_guard`); the verdict is written into the model's manifest.

Resumable exactly: the data order is a pure function of (seed, step) (`trainer.pretrain.BatchOrder`),
so is every step's noise (`trainer.pretrain.step_rng`) and learning rate (`trainer.run_state.cosine_lr`),
and one safetensors checkpoint (`trainer.run_state.save_training_state`) holds the model with its
adapters, AdamW's moments, the best adapters and the evaluation history. A run that is killed resumes
from its last checkpoint; one that is cancelled (``stop()``) checkpoints first. The result is ``out/``:
a model folder (adapters merged) beside ``checkpoint.safetensors`` and ``train_log.jsonl``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from engine.bundle import ModelBundle, load_bundle
from engine.errors import UserInputError
from trainer.bench_guard import BenchCheck, check_against_base
from trainer.grpo.learn import ParamEma
from trainer.lora.adapters import LORA_LAYERS, lora_generator, merged_generator, save_tuned, tuned_bundle
from trainer.pretrain import BatchOrder, step_rng
from trainer.run_state import cosine_lr, load_training_state, save_training_state

CHECKPOINT = "checkpoint.safetensors"
LOG = "train_log.jsonl"
Progress = Callable[[dict], None]  # every log entry: train steps, evaluations, the bench check, the end


@dataclass(frozen=True)
class LoraTrainConfig:
    """What every LoRA run shares (defaults: a CPU fine-tune of the shipped model)."""

    model: str = "default"  # start model: a name under assets/models or a model folder
    out: str = "runs/finetune"  # output folder: checkpoint, log, and at the end the tuned model
    steps: int = 1500  # optimiser steps (the cosine schedule ends here)
    batch: int = 8  # items per step (at most the training items)
    lr: float = 1e-4  # peak AdamW learning rate of the adapters
    warmup: int = 50  # linear warm-up steps
    min_lr_ratio: float = 0.1  # final learning rate as a fraction of lr
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # max global gradient norm
    lora_rank: int = 16  # adapter rank r
    lora_alpha: float | None = None  # adapter scale numerator (default r: scale 1)
    lora_layers: str = "all"  # which linears get adapters (`trainer.lora.adapters.LORA_LAYERS`: all, cross, cross-kv)
    held_out: float = 0.15  # fraction of the sources held out for evaluation (whole sources)
    eval_every: int = 50  # steps between held-out evaluations
    patience: int = 4  # evaluations without improvement before early stopping (0: never stop early)
    min_delta: float = 0.002  # relative improvement that counts
    max_minutes: float | None = None  # stop (as early stopping) after this much training time
    ckpt_every: int = 50  # steps between checkpoints
    log_every: int = 10  # steps between train-loss log entries (averaged over them)
    bucket: int = 8  # batches per length-sorting group of the data order
    seed: int = 0  # seeds the adapters, the split, the data order and every step's noise
    threads: int | None = None  # torch CPU threads (None: leave as is)
    stop_at: int | None = None  # stop (checkpoint, no model) at this step; resume later
    bench: BenchCheck = BenchCheck()  # FoleyBench against the start model before the result is offered

    def __post_init__(self) -> None:
        if min(self.steps, self.batch, self.eval_every, self.ckpt_every, self.log_every, self.lora_rank) < 1:
            raise UserInputError(f"steps, batch, eval_every, ckpt_every, log_every, lora_rank must be >= 1: {self}")
        if self.lr <= 0 or self.patience < 0 or self.min_delta < 0 or not 0 <= self.held_out < 1:
            raise UserInputError(f"need lr > 0, patience >= 0, min_delta >= 0, 0 <= held_out < 1: {self}")
        if self.lora_layers not in LORA_LAYERS:
            raise UserInputError(f"unknown LoRA layers {self.lora_layers!r}; choose {', '.join(LORA_LAYERS)}")


class Objective(Protocol):
    """What a method gives the loop."""

    lengths: np.ndarray  # (N,) latent frames of each training item (the data order groups similar lengths)

    def fingerprint(self) -> str: ...  # identifies the training data (a resumed run must see the same)

    def loss(self, policy: torch.nn.Module, ids: list[int], rng: torch.Generator) -> tuple[torch.Tensor, dict]: ...

    def evaluate(self, policy: torch.nn.Module) -> dict | None: ...  # {"held_out_loss", ...}; None: no held-out data


MakeObjective = Callable[[ModelBundle, LoraTrainConfig], Objective]
MUST_MATCH = ("model", "batch", "lora_rank", "lora_alpha", "lora_layers", "held_out", "seed", "bucket")


# ------------------------------------------------------------------------------------------- setup


def _setup(cfg: LoraTrainConfig, make: MakeObjective, resume: bool) -> dict:
    """Bundle, objective, policy, AdamW, best snapshot and run bookkeeping; restored from the checkpoint."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    bundle = load_bundle(cfg.model)
    objective = make(bundle, cfg)
    batch = min(cfg.batch, len(objective.lengths))
    order = BatchOrder(lengths=objective.lengths, batch=batch, bucket=cfg.bucket, seed=cfg.seed, start=0, stop=0)
    torch.manual_seed(cfg.seed)  # the adapters' random A
    policy = lora_generator(bundle.generator, cfg.lora_rank, cfg.lora_alpha, cfg.lora_layers)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    best = ParamEma(policy)  # the adapters of the best held-out evaluation (a decay-0 "average")
    run = {"fingerprint": objective.fingerprint(), "best": math.inf, "best_step": 0, "bad": 0, "history": []}
    run |= {"stopped": None, "train_seconds": 0.0}
    state = {"model": policy, "ema": best, "optim": optimizer, "gen": None, "step": 0, "config": cfg, "extra": run}
    start, ckpt = 0, out / CHECKPOINT
    if not resume:
        ckpt.unlink(missing_ok=True)
        (out / LOG).unlink(missing_ok=True)
    elif ckpt.is_file():
        start = _restore(ckpt, state, run["fingerprint"])
    s = {"bundle": bundle, "objective": objective, "order": order, "policy": policy, "optimizer": optimizer}
    return s | {"best": best, "state": state, "start": start, "trainable": trainable}


def _restore(ckpt: Path, state: dict, fingerprint: str) -> int:
    try:
        step = load_training_state(ckpt, state, must_match=MUST_MATCH, defaults={"lora_layers": "all"})
    except ValueError as exc:
        raise UserInputError(f"{exc}; use --no-resume or another --out") from None
    if state["extra"].get("fingerprint") != fingerprint:
        raise UserInputError("the checkpoint was trained on other data (the data or a CoT changed); use --no-resume")
    return step


# -------------------------------------------------------------------------------------------- steps


def train_step(s: dict, cfg: LoraTrainConfig, step: int) -> dict:
    """One optimiser step on batch ``step`` of the data order."""
    policy, optimizer = s["policy"], s["optimizer"]
    for group in optimizer.param_groups:  # a pure function of the step: a resumed run gets the same
        group["lr"] = cosine_lr(step, cfg.lr, cfg.warmup, cfg.steps, cfg.min_lr_ratio)
    policy.train()
    loss, logs = s["objective"].loss(policy, s["order"].batch_at(step), step_rng(cfg.seed, step, 0))
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(s["trainable"], cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": float(loss.detach()), "grad_norm": float(grad_norm), "lr": optimizer.param_groups[0]["lr"]} | logs


def evaluate(s: dict, cfg: LoraTrainConfig, step: int) -> dict | None:
    """Held-out metrics of the live adapters; keeps them when they are the best so far (early stopping)."""
    policy, run = s["policy"], s["state"]["extra"]
    policy.eval()
    with torch.no_grad():
        metrics = s["objective"].evaluate(policy)
    if metrics is None:
        return None
    value = float(metrics["held_out_loss"])
    improved = value < run["best"] - cfg.min_delta * abs(run["best"]) if math.isfinite(run["best"]) else True
    if improved:
        run["best"], run["best_step"], run["bad"] = value, step, 0
        s["best"].update(policy, 0.0)  # lerp by 1: a copy of the adapters
    else:
        run["bad"] += 1
    return {"step": step, "phase": "eval", **metrics, "best_step": run["best_step"], "improved": improved}


def _stop_reason(cfg: LoraTrainConfig, run: dict) -> str | None:
    if cfg.patience and run["bad"] >= cfg.patience:
        return f"early stop: no held-out improvement in {cfg.patience} evaluations"
    if cfg.max_minutes is not None and run["train_seconds"] >= 60.0 * cfg.max_minutes:
        return f"time limit of {cfg.max_minutes:g} minutes"
    return None


def save_checkpoint(s: dict, cfg: LoraTrainConfig, step: int) -> None:
    save_training_state(Path(cfg.out) / CHECKPOINT, s["state"] | {"step": step})


def _log(cfg: LoraTrainConfig, run: dict, entry: dict, progress: Progress | None) -> None:
    entry = entry | {"steps": cfg.steps}
    run["history"].append(entry)
    with open(Path(cfg.out) / LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
    if progress:
        progress(entry)


# --------------------------------------------------------------------------------------------- loop


def _loop(s: dict, cfg: LoraTrainConfig, progress: Progress | None, stop: Callable[[], bool] | None) -> int:
    """Steps from the restored one until the end, early stopping, ``stop_at`` or a cancel: -> the step."""
    run, step = s["state"]["extra"], s["start"]
    end = min(cfg.steps, cfg.stop_at) if cfg.stop_at is not None else cfg.steps
    if step == 0 and not any(h["phase"] == "eval" for h in run["history"]):
        entry = evaluate(s, cfg, 0)  # the start model: a run that never beats it gives it back unchanged
        if entry is not None:
            _log(cfg, run, entry, progress)
    window, tw = [], time.perf_counter()
    while step < end and run["stopped"] is None:
        if stop is not None and stop():
            break
        t0 = time.perf_counter()
        window.append(train_step(s, cfg, step))
        run["train_seconds"] += time.perf_counter() - t0
        step += 1
        if step % cfg.log_every == 0 or step == end:
            mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
            sec = (time.perf_counter() - tw) / len(window)
            _log(cfg, run, {"step": step, "phase": "train", **mean, "sec_per_step": sec} | _seconds(run), progress)
            window, tw = [], time.perf_counter()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            entry = evaluate(s, cfg, step)
            if entry is not None:
                _log(cfg, run, entry, progress)
            run["stopped"] = _stop_reason(cfg, run)
        if step % cfg.ckpt_every == 0 or step == end or run["stopped"]:
            save_checkpoint(s, cfg, step)
    if step < end and run["stopped"] is None:  # cancelled: keep what was done
        save_checkpoint(s, cfg, step)
    return step


def _seconds(run: dict) -> dict:
    return {"train_seconds": round(run["train_seconds"], 3)}


def finish(s: dict, cfg: LoraTrainConfig, step: int, progress: Progress | None, extra: dict) -> dict:
    """The best adapters merged into a copy of the start generator, checked against the start model on
    FoleyBench, and written to ``out/`` as a model folder (the verdict in its manifest)."""
    run, bundle, policy = s["state"]["extra"], s["bundle"], s["policy"]
    has_best = math.isfinite(run["best"])
    saved = s["best"].copy_to(policy) if has_best else None
    try:
        generator = merged_generator(policy)
    finally:
        if saved is not None:
            s["best"].restore(policy, saved)
    report = (lambda d, n: progress({"phase": "bench", "done": d, "total": n, "step": step})) if progress else None
    tuned = tuned_bundle(bundle, generator, "tuned")
    verdict = check_against_base(bundle, tuned, cfg.bench, Path(cfg.out) / "bench", report)
    _log(cfg, run, {"step": step, "phase": "bench", "passed": verdict["passed"], "drops": verdict.get("drops")}, None)
    summary = {"steps_done": step, "stopped": run["stopped"], "best_step": run["best_step"] if has_best else None}
    summary |= {"best_held_out_loss": run["best"] if has_best else None, "train_seconds": run["train_seconds"]}
    manifest_extra = extra | {"config": _jsonable(cfg), "start_model": cfg.model, "result": summary}
    save_tuned(bundle, generator, cfg.out, manifest_extra | {"bench_check": verdict})
    return summary | {"bench_check": verdict}


def _jsonable(cfg) -> dict:
    return json.loads(json.dumps(asdict(cfg), default=str))


def train_lora(
    cfg: LoraTrainConfig,
    make: MakeObjective,
    method: str,
    progress: Progress | None = None,
    resume: bool = True,
    stop: Callable[[], bool] | None = None,
) -> dict:
    """Run (or resume) a LoRA run; returns ``{"out", "finished", "step", "resumed_from", "stopped",
    "history", ...}`` and, when finished, the bench verdict (``bench_check``) and the summary."""
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        s = _setup(cfg, make, resume)
        run = s["state"]["extra"]
        step = _loop(s, cfg, progress, stop)
        finished = step >= cfg.steps or run["stopped"] is not None
        out = {"out": cfg.out if finished else None, "finished": finished, "step": step, "resumed_from": s["start"]}
        out |= {"method": method, "stopped": run["stopped"], "history": run["history"], "policy": s["policy"]}
        if finished:
            out |= finish(s, cfg, step, progress, {"method": method})
            if progress:
                progress({"phase": "done", "step": step, "steps": cfg.steps, "passed": out["bench_check"]["passed"]})
        return out
    finally:
        torch.set_num_threads(old_threads)
