"""Fast-GRPO against Flow-GRPO from their training logs: held-out weighted reward against training wall time.

Each run's ``train_log.jsonl`` (`trainer.grpo.learn.train_grpo`) holds, at every evaluation, the held-out mean
weighted reward of the EMA policy (``eval_weighted``) and the training seconds so far (``train_seconds``:
rollouts, scoring and policy steps; the evaluations themselves are not counted). `compare` reads two runs
started from the same model with the same rewards and answers the question of the paper's speed claim: how
long Fast-GRPO takes to reach the held-out reward Flow-GRPO ends with, as a share of Flow-GRPO's time.
A held-out reward on a few clips moves by a point or so between evaluations with no learning behind it, so
both curves can be read through a trailing mean of ``smooth`` evaluations (1: as logged).
`figure` draws both curves (matplotlib, written whole, then renamed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from engine.atomic import atomic_path
from engine.errors import UserInputError

LOG = "train_log.jsonl"


def read_curve(run: str | os.PathLike) -> dict:
    """One run's evaluations: ``seconds`` and ``reward`` (E,) arrays in log order, the window width and the
    policy function evaluations per sample of its iterations (their means over the log)."""
    path = Path(run) / LOG
    if not path.is_file():
        raise UserInputError(f"no GRPO training log at {path}")
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    evals = [e for e in entries if "eval_weighted" in e]
    if len(evals) < 2:
        raise UserInputError(f"{path} has {len(evals)} held-out evaluations; a curve needs at least 2 (--eval-every)")
    steps = [e for e in entries if "policy_nfe_per_sample" in e]
    return {
        "run": str(run),
        "seconds": np.array([float(e.get("train_seconds", 0.0)) for e in evals]),
        "reward": np.array([float(e["eval_weighted"]) for e in evals]),
        "iterations": int(max(e.get("iteration", 0) for e in entries)),
        "window": float(np.mean([e["window"] for e in steps])) if steps else None,
        "policy_nfe_per_sample": float(np.mean([e["policy_nfe_per_sample"] for e in steps])) if steps else None,
    }


def trailing_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Mean of each value and the up to ``k - 1`` before it (k = 1: ``x`` itself)."""
    if k < 1:
        raise UserInputError(f"the smoothing takes k >= 1 evaluations, got {k}")
    if k == 1:
        return np.asarray(x, float).copy()
    c = np.concatenate([[0.0], np.cumsum(x)])
    lo = np.maximum(np.arange(len(x)) + 1 - k, 0)
    return (c[1:] - c[lo]) / (np.arange(len(x)) + 1 - lo)


def time_to_reach(curve: dict, target: float) -> float | None:
    """Training seconds of the first evaluation at or above ``target`` (None: never reached)."""
    hit = np.flatnonzero(curve["reward"] >= target - 1e-12)
    return float(curve["seconds"][hit[0]]) if hit.size else None


def compare(fast: str | os.PathLike, flow: str | os.PathLike, smooth: int = 1) -> dict:
    """The report: each run's curve summary, Flow-GRPO's final held-out reward and training time, the time
    Fast-GRPO takes to reach that reward and its share of Flow-GRPO's time (None when it never does); the
    rewards through `trailing_mean` of ``smooth`` evaluations."""
    return _report(read_curve(fast), read_curve(flow), smooth)


def _report(fast: dict, flow: dict, smooth: int) -> dict:
    """`compare` of two curves as `read_curve` returns them (left as they are)."""
    a, b = ({**c, "reward": trailing_mean(c["reward"], smooth)} for c in (fast, flow))
    target, flow_s = float(b["reward"][-1]), float(b["seconds"][-1])
    reach = time_to_reach(a, target)

    def summary(c: dict) -> dict:
        keep = ("run", "iterations", "window", "policy_nfe_per_sample")
        out = {k: c[k] for k in keep}
        return out | {
            "start_reward": float(c["reward"][0]),
            "final_reward": float(c["reward"][-1]),
            "best_reward": float(c["reward"].max()),
            "train_seconds": float(c["seconds"][-1]),
        }

    return {
        "smooth": smooth,
        "fast": summary(a),
        "flow": summary(b),
        "flow_final_reward": target,
        "fast_seconds_to_flow_final": reach,
        "time_share": None if reach is None or flow_s <= 0 else reach / flow_s,
    }


def figure(
    fast: str | os.PathLike, flow: str | os.PathLike, out: str | os.PathLike, smooth: int = 1, title: str = ""
) -> Path:
    """PNG of both curves (the evaluations as dots, their trailing mean as a line) with Flow-GRPO's final
    reward as a dashed line and Fast-GRPO's crossing marked."""
    from matplotlib.figure import Figure

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UserInputError(f"the figure is a .png file, got {out}")
    a, b = read_curve(fast), read_curve(flow)
    report = _report(a, b, smooth)
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    for c, name, colour in ((a, "Fast-GRPO", "tab:blue"), (b, "Flow-GRPO", "tab:orange")):
        nfe = c["policy_nfe_per_sample"]
        label = name + (f" ({nfe:g} policy NFE / sample)" if nfe is not None else "")
        ax.plot(c["seconds"] / 60, c["reward"], "o", ms=2.5, alpha=0.35, color=colour)
        ax.plot(c["seconds"] / 60, trailing_mean(c["reward"], smooth), "-", color=colour, label=label)
    ax.axhline(report["flow_final_reward"], color="tab:orange", ls="--", lw=0.8, label="Flow-GRPO final")
    if report["fast_seconds_to_flow_final"] is not None:
        ax.axvline(report["fast_seconds_to_flow_final"] / 60, color="tab:blue", ls=":", lw=0.8)
    ax.set_xlabel("training wall time (min)")
    ax.set_ylabel("held-out weighted reward")
    ax.set_title(title or "Fast-GRPO against Flow-GRPO from the same start")
    ax.legend(loc="lower right", fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, ".tmp.png") as tmp:
        fig.savefig(tmp, dpi=130)
    return out
