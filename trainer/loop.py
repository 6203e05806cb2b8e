"""The one run loop of every training method: the bookkeeping around a method's steps, written once.

A method (`Method`) knows how to take one step, evaluate its current weights on held-out data, keep them as
the best, checkpoint its whole state and write its result. The loop (`run_loop`) owns the rest, the same for
every method (STYLE 14; MMAudio's ``Runner``, stable-audio-tools' training wrapper):

- the start model is evaluated before the first step (a run that never beats it can give it back);
- train log entries every ``log_every`` steps, their numbers averaged over the steps since the last one;
- held-out evaluations every ``eval_every`` steps and at the end; the best is tracked on one metric;
- early stopping after ``patience`` evaluations without a relative improvement of ``min_delta``;
- a training-time limit (``max_minutes``; the step it ends on is evaluated, as a normal end);
- ``stop_at`` (a pause: checkpoint, no result) and a cancel (``stop()``: checkpoint first, then return);
- checkpoints every ``ckpt_every`` steps, at the end and when a run stops; the `Record` (history, best,
  bad evaluations, stop reason, training seconds) rides in the checkpoint, so a resumed run continues
  with the same history and the same early-stopping state;
- the decision that a run is finished, and then the method's result (its FoleyBench guard included,
  `trainer.bench_guard.guard`), logged as a ``bench`` entry and reported as ``done``.

Multi-process methods (GRPO under accelerate) evaluate, log and write on the main process only; every
decision that ends a run (cancel, time limit, early stop) goes through `Method.agree`, so all processes
stop after the same step. Log entries carry ``step`` and ``phase`` (train, eval, bench) and ``steps``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Protocol

import numpy as np

from engine.errors import UserInputError
from trainer.run_state import save_training_state

Progress = Callable[[dict], None]  # every log entry: train steps, evaluations, the bench check, the end


@dataclass(frozen=True)
class Schedule:
    """When a run logs, evaluates, checkpoints and stops."""

    steps: int  # steps of the whole run (a method's learning-rate schedule ends here)
    eval_every: int = 0  # steps between held-out evaluations (0: only at the end)
    ckpt_every: int = 1  # steps between checkpoints
    log_every: int = 1  # steps between train log entries (their numbers averaged over the steps)
    patience: int = 0  # evaluations without improvement before early stopping (0: never stop early)
    min_delta: float = 0.0  # relative improvement of the metric that counts as one
    max_minutes: float | None = None  # end the run (evaluated, result written) after this much training time
    stop_at: int | None = None  # pause at this step (checkpoint, no result); a resume continues
    metric: str = "held_out_loss"  # the held-out metric the best and early stopping watch
    higher_is_better: bool = False  # whether a larger ``metric`` is better (a reward) or a smaller (a loss)
    eval_start: bool = True  # evaluate the start model before the first step

    def __post_init__(self) -> None:
        if min(self.steps, self.ckpt_every, self.log_every) < 1 or self.eval_every < 0 or self.patience < 0:
            raise UserInputError(f"need steps, ckpt_every, log_every >= 1, eval_every, patience >= 0: {self}")
        if self.min_delta < 0 or (self.max_minutes is not None and self.max_minutes <= 0):
            raise UserInputError(f"need min_delta >= 0 and max_minutes > 0: {self}")

    @property
    def end(self) -> int:
        """The step this session stops at: ``steps``, or ``stop_at`` when it is earlier."""
        return self.steps if self.stop_at is None else min(self.steps, self.stop_at)

    def eval_due(self, step: int) -> bool:
        """Whether the held-out data is evaluated after ``step`` steps (the time limit adds its own)."""
        return step == self.steps or (self.eval_every > 0 and step % self.eval_every == 0)


@dataclass
class Record:
    """The loop's own state, JSON-able: kept in the checkpoint's ``extra`` so a resume is exact."""

    history: list[dict] = field(default_factory=list)  # every log entry so far (train, eval, bench)
    best: float | None = None  # the best held-out metric so far (None: no evaluation yet)
    best_step: int = 0  # the step of that evaluation
    bad: int = 0  # evaluations since the last improvement
    stopped: str | None = None  # why the run ended before its last step (early stop, time limit)
    train_seconds: float = 0.0  # wall time of the steps so far (evaluations and checkpoints not counted)

    def to_extra(self) -> dict:
        return asdict(self)

    @classmethod
    def from_extra(cls, extra: dict | None) -> Record:
        """The record of a checkpoint's ``extra`` (other keys ignored; an old run's infinite best reads None)."""
        keep = {f.name: extra[f.name] for f in fields(cls) if f.name in (extra or {})}
        record = cls(**keep)
        if record.best is not None and not math.isfinite(record.best):
            record.best = None
        return record


class Method(Protocol):
    """What a training method gives the loop (`OneProcess` holds the single-process defaults)."""

    is_main: bool  # this process evaluates, logs and writes (always True with one process)

    def step(self, step: int) -> dict: ...  # train step ``step`` (0-based) -> its log fields

    def evaluate(self, step: int) -> dict | None: ...  # held-out metrics of the current weights; None: no data

    def keep_best(self) -> None: ...  # the current weights are the best evaluation so far (main process)

    def checkpoint(self, step: int, extra: dict) -> None: ...  # the whole state after ``step`` steps

    def agree(self, flag: bool) -> bool: ...  # the main process's ``flag``, on every process

    def finish(self, step: int, record: Record, progress: Progress | None) -> dict: ...  # result of a finished run


class OneProcess:
    """The multi-process part of `Method` for a method that runs in one process."""

    is_main = True

    def agree(self, flag: bool) -> bool:
        return flag


class PoolMethod(OneProcess):
    """A one-process method trained on batches drawn from a pool that the step index refreshes, whose whole
    state is a `trainer.run_state` dict, with no held-out data (the codec and the planner). A subclass sets
    ``state``, ``pool`` and ``ckpt`` and gives ``train_step(state, batch, step)``, ``restore`` and ``finish``."""

    state: dict  # the run_state training state (model, ema, optim, gen, config)
    pool: object  # has update(step) and batch(gen)
    ckpt: Path  # the checkpoint file

    def train_step(self, state: dict, batch, step: int) -> dict:
        raise NotImplementedError

    def step(self, step: int) -> dict:
        self.pool.update(step)
        return self.train_step(self.state, self.pool.batch(self.state["gen"]), step)

    def evaluate(self, step: int) -> None:
        return None

    def keep_best(self) -> None:
        """Nothing: no held-out evaluation."""

    def checkpoint(self, step: int, extra: dict) -> None:
        save_training_state(self.ckpt, {**self.state, "step": step, "extra": extra})


class Accelerated:
    """The multi-process part of `Method` for a method run by `accelerate` (``self.acc``: its Accelerator)."""

    acc: object  # accelerate.Accelerator (not imported here: the loop runs without accelerate too)

    @property
    def is_main(self) -> bool:
        return self.acc.is_main_process

    def agree(self, flag: bool) -> bool:
        """The main process's ``flag`` on every process, so all of them stop after the same step."""
        import torch

        local = torch.tensor([float(flag)], device=self.acc.device)
        return bool(self.acc.gather(local)[0].item())


@dataclass(frozen=True)
class Outcome:
    """How a session of `run_loop` ended."""

    step: int  # steps done (the run's, counted from its first session)
    finished: bool  # the run is over (all steps, early stop, time limit); False: paused or cancelled
    resumed_from: int  # the step this session started at
    record: Record  # the loop's state, history included
    result: dict = field(default_factory=dict)  # `Method.finish`'s result when finished


# --------------------------------------------------------------------------------------- bookkeeping


@dataclass
class _Books:
    """What the loop's named steps share: the method, its schedule and record, the log file."""

    method: Method
    schedule: Schedule
    record: Record
    log_path: Path | None  # None: the history is the record's only
    progress: Progress | None

    def log(self, entry: dict, training: bool = True) -> None:
        """``entry`` into the log file (main process); a ``training`` one also into the record's history
        and to ``progress`` (the bench verdict after the end is neither)."""
        entry = entry | {"steps": self.schedule.steps}
        if training:
            self.record.history.append(entry)
        if not self.method.is_main:
            return
        if self.log_path is not None:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
        if self.progress and training:
            self.progress(entry)

    def seconds(self) -> dict:
        return {"train_seconds": round(self.record.train_seconds, 3)}

    def log_train(self, step: int, window: list[dict], seconds: float) -> None:
        """One train entry for the steps of ``window``, their fields combined by `_mean`."""
        mean = {key: _mean([w[key] for w in window]) for key in window[-1]}
        sec = {"sec_per_step": seconds / len(window)}
        self.log({"step": step, "phase": "train", **mean} | sec | self.seconds())

    def evaluate(self, step: int) -> None:
        """A held-out evaluation (main process): logged, the best kept, the patience counted."""
        metrics = self.method.evaluate(step) if self.method.is_main else None
        if metrics is None:
            return
        rec, value = self.record, float(metrics[self.schedule.metric])
        if improved := _improves(value, rec.best, self.schedule):
            rec.best, rec.best_step, rec.bad = value, step, 0
            self.method.keep_best()
        else:
            rec.bad += 1
        tail = {"best_step": rec.best_step, "improved": improved} | self.seconds()
        self.log({"step": step, "phase": "eval", **metrics} | tail)

    def time_up(self) -> bool:
        limit = self.schedule.max_minutes
        return limit is not None and self.method.agree(self.record.train_seconds >= 60.0 * limit)

    def early_stop(self) -> bool:
        patience = self.schedule.patience
        return patience > 0 and self.method.agree(self.record.bad >= patience)

    def checkpoint(self, step: int) -> None:
        self.method.checkpoint(step, self.record.to_extra())


def _mean(values: list):
    """The mean of a log field over a window (a float); a one-step window's whole number stays one (an
    iteration count); lists (what each step saw: clips, window starts) are joined; strings, flags, None
    are the last step's."""
    last = values[-1]
    if isinstance(last, list):
        return [x for v in values for x in v]
    if last is None or isinstance(last, bool | str | tuple | dict):
        return last
    if len(values) == 1 and isinstance(last, int):
        return last
    return float(np.mean([float(v) for v in values]))


def _improves(value: float, best: float | None, schedule: Schedule) -> bool:
    """Whether ``value`` beats ``best`` by at least ``min_delta`` of it (any value beats no evaluation)."""
    if best is None:
        return True
    margin = schedule.min_delta * abs(best)
    return value > best + margin if schedule.higher_is_better else value < best - margin


# ---------------------------------------------------------------------------------------------- loop


def _train(books: _Books, start: int, stop: Callable[[], bool] | None) -> tuple[int, bool]:
    """Steps from ``start`` to the schedule's end, a stop or a cancel: -> (the step, cancelled)."""
    method, schedule, record = books.method, books.schedule, books.record
    step, end, window, t_log = start, schedule.end, [], time.perf_counter()
    while step < end and record.stopped is None:
        if stop is not None and method.agree(bool(stop())):
            books.checkpoint(step)  # cancelled: keep what was done
            return step, True
        t0 = time.perf_counter()
        window.append(method.step(step))
        record.train_seconds += time.perf_counter() - t0
        step += 1
        if step % schedule.log_every == 0 or step == end:
            books.log_train(step, window, time.perf_counter() - t_log)
            window, t_log = [], time.perf_counter()
        timed_out = books.time_up()
        if schedule.eval_due(step) or timed_out:
            books.evaluate(step)
            if books.early_stop():
                record.stopped = f"early stop: no held-out improvement in {schedule.patience} evaluations"
        if timed_out and record.stopped is None:
            record.stopped = f"time limit of {schedule.max_minutes:g} minutes"
        if step % schedule.ckpt_every == 0 or step == end or record.stopped:
            books.checkpoint(step)
    return step, False


def run_loop(
    method: Method,
    schedule: Schedule,
    record: Record,
    start: int,
    log_path: str | Path | None,
    progress: Progress | None = None,
    stop: Callable[[], bool] | None = None,
) -> Outcome:
    """Run (or continue, from ``start`` with the checkpoint's ``record``) ``method`` as ``schedule`` says,
    its log appended to ``log_path`` (JSON lines; None: no file); ``stop()`` returning True (checked before
    every step) ends the session after a checkpoint. A finished run ends with `Method.finish`."""
    books = _Books(method, schedule, record, None if log_path is None else Path(log_path), progress)
    if start == 0 and schedule.eval_start and not any(h.get("phase") == "eval" for h in record.history):
        books.evaluate(0)  # the start model
    step, cancelled = _train(books, start, stop)
    finished = not cancelled and (step >= schedule.steps or record.stopped is not None)
    if not finished:
        return Outcome(step, False, start, record)
    result = method.finish(step, record, progress)
    if "bench_check" in result:
        check = result["bench_check"]
        books.log({"step": step, "phase": "bench", "passed": check["passed"], "drops": check.get("drops")}, False)
    if progress and method.is_main:
        progress({"phase": "done", "step": step, "steps": schedule.steps} | _passed(result))
    return Outcome(step, True, start, record, result)


def _passed(result: dict) -> dict:
    return {"passed": result["bench_check"]["passed"]} if "bench_check" in result else {}


LOOP_FIELDS = ("step", "phase", "steps", "sec_per_step", "train_seconds")  # what the loop adds to a train entry


def parts_progress(report: Callable[[int, int, dict], None] | None, whole: bool = False) -> Progress | None:
    """The loop's progress for a ``report(step, steps, loss parts)`` (`trainer.commands.common.show_parts`):
    each train entry, without the loop's own fields unless ``whole``."""
    if report is None:
        return None

    def progress(entry: dict) -> None:
        if entry.get("phase") == "train":
            parts = entry if whole else {k: v for k, v in entry.items() if k not in LOOP_FIELDS}
            report(entry["step"], entry["steps"], parts)

    return progress
