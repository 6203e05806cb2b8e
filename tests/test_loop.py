"""The one run loop (`trainer.loop.run_loop`) with a fake method: no network, a fake clock (30 s a step),
held-out losses given per step, checkpoints kept as JSON. Start evaluation, log averaging, early stopping,
the time limit, stop_at, a cancel that checkpoints first, and a resume that continues the same record."""

from __future__ import annotations

import json
import math
import types

import pytest

import trainer.loop as loop
from trainer.loop import OneProcess, Record, Schedule, run_loop


class Clock:
    """A perf_counter that moves only when a step runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Fake(OneProcess):
    """A method whose "weights" are the number of steps taken; ``losses[k]``: held-out loss after k steps."""

    def __init__(self, losses: dict[int, float], clock: Clock, weights: int = 0) -> None:
        self.losses, self.clock, self.weights = losses, clock, weights
        self.best = None  # the weights kept as the best
        self.saved: list[tuple[int, dict]] = []  # (step, extra) of every checkpoint, as JSON
        self.finished_at = None  # the step `finish` was called at

    def step(self, step: int) -> dict:
        assert step == self.weights  # the loop asks for the steps in order, from where the state is
        self.weights += 1
        self.clock.now += 30.0
        return {"loss": 10.0 - step, "window": 2}

    def evaluate(self, step: int) -> dict:
        return {"held_out_loss": self.losses[step]}

    def keep_best(self) -> None:
        self.best = self.weights

    def checkpoint(self, step: int, extra: dict) -> None:
        self.saved.append((step, json.loads(json.dumps(extra))))

    def finish(self, step: int, record: Record, progress) -> dict:
        self.finished_at = step
        return {"kept": self.best, "bench_check": {"passed": None}}


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=c))
    return c


def _evals(record: Record) -> list[tuple[int, float, bool]]:
    return [(h["step"], h["held_out_loss"], h["improved"]) for h in record.history if h["phase"] == "eval"]


def test_start_evaluation_averaged_log_checkpoints_and_the_best(clock, tmp_path):
    fake = Fake({0: 1.0, 2: 0.8, 4: 0.9}, clock)
    seen = []
    schedule = Schedule(steps=4, eval_every=2, log_every=2, ckpt_every=2)
    end = run_loop(fake, schedule, Record(), 0, tmp_path / "log.jsonl", seen.append)
    assert end.finished and end.step == 4 and end.record.stopped is None
    assert _evals(end.record) == [(0, 1.0, True), (2, 0.8, True), (4, 0.9, False)]
    train = [h for h in end.record.history if h["phase"] == "train"]
    assert [(h["step"], h["loss"], h["window"], h["sec_per_step"]) for h in train] == [
        (2, 9.5, 2.0, 30.0),
        (4, 7.5, 2.0, 30.0),
    ]
    assert [h["train_seconds"] for h in train] == [60.0, 120.0]
    assert (end.record.best, end.record.best_step, end.record.bad) == (0.8, 2, 1)
    assert fake.best == 2 and fake.finished_at == 4 and end.result["kept"] == 2
    assert [s for s, _ in fake.saved] == [2, 4]
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert logged[:-1] == end.record.history and logged[-1]["phase"] == "bench"  # the verdict after the end
    assert seen[:-1] == end.record.history and seen[-1] == {"phase": "done", "step": 4, "steps": 4, "passed": None}


def test_early_stop_after_patience_evaluations_without_a_relative_improvement(clock, tmp_path):
    # min_delta 0.1: 0.95 does not beat 1.0 (needs < 0.9), 0.85 does, 0.80 and 0.79 do not (need < 0.765)
    fake = Fake({0: 1.0, 1: 0.95, 2: 0.85, 3: 0.80, 4: 0.79}, clock)
    schedule = Schedule(steps=10, eval_every=1, ckpt_every=100, patience=2, min_delta=0.1)
    end = run_loop(fake, schedule, Record(), 0, tmp_path / "log.jsonl")
    assert end.finished and end.step == 4 and fake.weights == 4
    assert end.record.stopped == "early stop: no held-out improvement in 2 evaluations"
    assert [e[2] for e in _evals(end.record)] == [True, False, True, False, False]
    assert (end.record.best_step, fake.best, fake.finished_at) == (2, 2, 4)
    assert [s for s, _ in fake.saved] == [4]  # the stop checkpoints


def test_the_time_limit_ends_the_run_on_an_evaluated_step(clock, tmp_path):
    fake = Fake({0: 1.0, 3: 0.5, 5: 0.4}, clock)
    schedule = Schedule(steps=10, eval_every=5, ckpt_every=100, max_minutes=1.5)  # 90 s: three 30 s steps
    end = run_loop(fake, schedule, Record(), 0, tmp_path / "log.jsonl")
    assert end.finished and end.step == 3 and end.record.stopped == "time limit of 1.5 minutes"
    assert end.record.train_seconds == 90.0 and _evals(end.record) == [(0, 1.0, True), (3, 0.5, True)]
    assert [s for s, _ in fake.saved] == [3] and fake.finished_at == 3
    again = run_loop(Fake({}, clock, 3), schedule, Record.from_extra(fake.saved[-1][1]), 3, tmp_path / "log.jsonl")
    assert again.finished and again.step == 3 and again.record.history == end.record.history  # nothing more to do


def test_stop_at_pauses_with_a_checkpoint_and_no_result(clock, tmp_path):
    fake = Fake({0: 1.0, 2: 0.9}, clock)
    end = run_loop(fake, Schedule(steps=6, eval_every=2, ckpt_every=10, stop_at=3), Record(), 0, tmp_path / "l")
    assert not end.finished and end.step == 3 and fake.finished_at is None and end.result == {}
    assert [s for s, _ in fake.saved] == [3] and _evals(end.record) == [(0, 1.0, True), (2, 0.9, True)]


def test_a_cancel_checkpoints_first(clock, tmp_path):
    fake = Fake({0: 1.0}, clock)
    schedule = Schedule(steps=6, eval_every=5, ckpt_every=5, log_every=1)
    end = run_loop(fake, schedule, Record(), 0, tmp_path / "log.jsonl", stop=lambda: fake.weights >= 2)
    assert not end.finished and end.step == 2 and fake.weights == 2 and fake.finished_at is None
    step, extra = fake.saved[-1]
    assert step == 2 and Record.from_extra(extra) == end.record
    assert [h["step"] for h in end.record.history] == [0, 1, 2]  # the start evaluation, two train entries


def test_a_resume_continues_the_same_record(clock, tmp_path):
    """Paused at step 3 with two evaluations without improvement, the resumed run stops early at step 4 as
    the straight one does: the patience count, the best and the history come back from the checkpoint."""
    losses = {0: 1.0, 1: 0.5, 2: 0.6, 3: 0.7, 4: 0.8, 5: 0.9}
    schedule = Schedule(steps=8, eval_every=1, ckpt_every=2, patience=3)
    straight = run_loop(Fake(losses, clock), schedule, Record(), 0, tmp_path / "a.jsonl")
    assert straight.finished and straight.step == 4 and straight.record.stopped.startswith("early stop")

    clock.now = 0.0
    first = Fake(losses, clock)
    paused = run_loop(first, Schedule(**vars(schedule) | {"stop_at": 3}), Record(), 0, tmp_path / "b.jsonl")
    assert not paused.finished and first.saved[-1][0] == 3 and paused.record.bad == 2
    step, extra = first.saved[-1]
    second = Fake(losses, clock, weights=step)
    resumed = run_loop(second, schedule, Record.from_extra(extra), step, tmp_path / "b.jsonl")
    assert resumed.finished and resumed.step == 4 and resumed.resumed_from == 3
    assert resumed.record == straight.record  # history, best 0.5 at step 1, 3 bad, stop reason, 120 s
    assert (resumed.record.best, resumed.record.best_step, resumed.record.train_seconds) == (0.5, 1, 120.0)
    lines = lambda name: (tmp_path / name).read_text().splitlines()  # noqa: E731
    assert lines("b.jsonl") == lines("a.jsonl")


def test_a_record_of_an_older_checkpoint_reads_its_infinite_best_as_none():
    record = Record.from_extra({"best": math.inf, "best_step": 0, "bad": 0, "history": [], "fingerprint": "x"})
    assert record == Record()
    with pytest.raises(Exception, match="steps"):
        Schedule(steps=0)
