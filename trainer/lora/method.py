"""The LoRA training method shared by fine-tuning (`trainer.finetune`) and Flow-DPO (`trainer.dpo`).

A method supplies an `Objective`: the lengths of its training items (for the data order), a loss of one
batch and a held-out evaluation. `LoraMethod` turns it into a `trainer.loop.Method` (policy step,
held-out evaluation, best adapters, checkpoint, finish) and the one run loop (`trainer.loop.run_loop`)
does the bookkeeping, with the overfitting guards the issue asks for:

- a held-out part of the data is evaluated before the first step (the start model) and every
  ``eval_every`` steps with fixed noise and times, so two evaluations differ only by the weights; the
  adapters of the best evaluation are kept (a run that never beats the start model gives it back);
- early stopping: after ``patience`` evaluations without an improvement of at least ``min_delta``
  (relative), or after ``max_minutes`` of training, the run ends and the best adapters are the result;
- before the result is offered, FoleyBench on the original classes compares it with the start model
  (`trainer.bench_guard.guard`); the verdict is written into the model's manifest.

Resumable exactly: the data order is a pure function of (seed, step) (`trainer.pretrain.BatchOrder`),
so is every step's noise (`trainer.pretrain.step_rng`) and learning rate (`trainer.run_state.cosine_lr`),
and one safetensors checkpoint (`trainer.run_state.save_training_state`) holds the model with its
adapters, AdamW's moments, the best adapters and the loop's record (`trainer.loop.Record`). A run that is killed resumes
from its last checkpoint; one that is cancelled (``stop()``) checkpoints first. The result is ``out/``:
a model folder (adapters merged) beside ``checkpoint.safetensors`` and ``train_log.jsonl``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from engine.bundle import ModelBundle, load_bundle
from engine.errors import UserInputError
from trainer.bench_guard import BenchCheck, guard
from trainer.grpo.learn import ParamEma
from trainer.loop import OneProcess, Progress, Record, Schedule, run_loop
from trainer.lora.adapters import LORA_LAYERS, lora_generator, merged_generator, save_tuned, tuned_bundle
from trainer.pretrain import BatchOrder, step_rng
from trainer.run_state import cosine_lr, load_training_state, save_training_state

CHECKPOINT = "checkpoint.safetensors"
LOG = "train_log.jsonl"


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


# ------------------------------------------------------------------------------------------ method


class LoraMethod(OneProcess):
    """A LoRA run as the loop drives it: the bundle, the objective, the policy with its adapters, AdamW and
    the best adapters (`setup` builds it, restored from the checkpoint)."""

    def __init__(self, cfg: LoraTrainConfig, make: MakeObjective, method: str) -> None:
        self.cfg, self.method = cfg, method
        self.bundle = load_bundle(cfg.model)
        self.objective = make(self.bundle, cfg)
        batch = min(cfg.batch, len(self.objective.lengths))
        lengths, seed = self.objective.lengths, cfg.seed
        self.order = BatchOrder(lengths=lengths, batch=batch, bucket=cfg.bucket, seed=seed, start=0, stop=0)
        torch.manual_seed(cfg.seed)  # the adapters' random A
        self.policy = lora_generator(self.bundle.generator, cfg.lora_rank, cfg.lora_alpha, cfg.lora_layers)
        self.trainable = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.best = ParamEma(self.policy)  # the adapters of the best held-out evaluation (a decay-0 "average")
        self.fingerprint = self.objective.fingerprint()

    def state(self, step: int, extra: dict | None = None) -> dict:
        """The training state as `trainer.run_state.save_training_state` takes it."""
        state = {"model": self.policy, "ema": self.best, "optim": self.optimizer, "gen": None, "step": step}
        return state | {"config": self.cfg, "extra": (extra or {}) | {"fingerprint": self.fingerprint}}

    def restore(self, ckpt: Path) -> tuple[int, Record]:
        """The step and the loop's record of the checkpoint ``ckpt`` (weights, moments, best restored)."""
        state = self.state(0)
        try:
            step = load_training_state(ckpt, state, must_match=MUST_MATCH, defaults={"lora_layers": "all"})
        except ValueError as exc:
            raise UserInputError(f"{exc}; use --no-resume or another --out") from None
        if state["extra"].get("fingerprint") != self.fingerprint:
            changed = "the checkpoint was trained on other data (the data or a CoT changed)"
            raise UserInputError(f"{changed}; use --no-resume")
        return step, Record.from_extra(state["extra"])

    def step(self, step: int) -> dict:
        """One optimiser step on batch ``step`` of the data order."""
        cfg, policy, optimizer = self.cfg, self.policy, self.optimizer
        for group in optimizer.param_groups:  # a pure function of the step: a resumed run gets the same
            group["lr"] = cosine_lr(step, cfg.lr, cfg.warmup, cfg.steps, cfg.min_lr_ratio)
        policy.train()
        loss, logs = self.objective.loss(policy, self.order.batch_at(step), step_rng(cfg.seed, step, 0))
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        lr = optimizer.param_groups[0]["lr"]
        return {"loss": float(loss.detach()), "grad_norm": float(grad_norm), "lr": lr} | logs

    def evaluate(self, step: int) -> dict | None:
        """Held-out metrics of the live adapters (``held_out_loss`` and the objective's own)."""
        self.policy.eval()
        with torch.no_grad():
            return self.objective.evaluate(self.policy)

    def keep_best(self) -> None:
        self.best.update(self.policy, 0.0)  # lerp by 1: a copy of the adapters

    def checkpoint(self, step: int, extra: dict) -> None:
        save_training_state(Path(self.cfg.out) / CHECKPOINT, self.state(step, extra))

    def finish(self, step: int, record: Record, progress: Progress | None) -> dict:
        """The best adapters merged into a copy of the start generator, checked against the start model on
        FoleyBench, and written to ``out/`` as a model folder (the verdict in its manifest)."""
        cfg, has_best = self.cfg, record.best is not None
        saved = self.best.copy_to(self.policy) if has_best else None
        try:
            generator = merged_generator(self.policy)
        finally:
            if saved is not None:
                self.best.restore(self.policy, saved)
        tuned = tuned_bundle(self.bundle, generator, "tuned")
        verdict = guard(self.bundle, tuned, cfg.bench, Path(cfg.out) / "bench", step, progress)
        summary = {"steps_done": step, "stopped": record.stopped, "best_step": record.best_step if has_best else None}
        summary |= {"best_held_out_loss": record.best, "train_seconds": record.train_seconds}
        manifest_extra = {"method": self.method, "config": _jsonable(cfg), "start_model": cfg.model, "result": summary}
        save_tuned(self.bundle, generator, cfg.out, manifest_extra | {"bench_check": verdict})
        return summary | {"bench_check": verdict}


def schedule(cfg: LoraTrainConfig) -> Schedule:
    """The loop's schedule of a LoRA run: held-out loss, lower is better, the start model evaluated."""
    every = dict(eval_every=cfg.eval_every, ckpt_every=cfg.ckpt_every, log_every=cfg.log_every)
    stops = dict(patience=cfg.patience, min_delta=cfg.min_delta, max_minutes=cfg.max_minutes, stop_at=cfg.stop_at)
    return Schedule(steps=cfg.steps, **every, **stops, metric="held_out_loss", higher_is_better=False)


def setup(cfg: LoraTrainConfig, make: MakeObjective, method: str, resume: bool) -> tuple[LoraMethod, int, Record]:
    """The method, the step it starts at and the loop's record (restored from ``out/`` when resuming)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    lora = LoraMethod(cfg, make, method)
    ckpt = out / CHECKPOINT
    if not resume:
        ckpt.unlink(missing_ok=True)
        (out / LOG).unlink(missing_ok=True)
    elif ckpt.is_file():
        return (lora, *lora.restore(ckpt))
    return lora, 0, Record()


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
        lora, start, record = setup(cfg, make, method, resume)
        end = run_loop(lora, schedule(cfg), record, start, Path(cfg.out) / LOG, progress, stop)
        out = {"out": cfg.out if end.finished else None, "finished": end.finished, "step": end.step}
        out |= {"resumed_from": start, "method": method, "stopped": record.stopped, "history": record.history}
        return out | {"policy": lora.policy} | end.result
    finally:
        torch.set_num_threads(old_threads)
