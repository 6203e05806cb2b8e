"""The render-speed benchmark: end-to-end takes of one video, timed the way a user waits for them.

Each timed run decodes the video afresh (the decode cache is cleared), computes the motion features,
encodes the CoT, samples the latents, decodes them to audio and writes a 24-bit WAV. The model bundle
is loaded once before the runs (the studio keeps it loaded); the first run also loads the text encoder
and is reported on its own. Peak memory is the process's maximum resident set size, everything
loaded included.
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from engine.cot import Cot

BENCH_COT = Cot(
    semantic="Wooden blocks knock together on a table, with a small metal bell.",
    temporal="Three sharp knocks at about 1, 3.5 and 6 seconds; the bell rings once near 7.5 seconds.",
    aesthetic="Dry, close and clean, a short room tail.",
    spatial="The blocks are left of centre; the bell is on the right.",
)


def peak_memory_mb() -> float:
    """Maximum resident set size of this process so far, in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def render_speed(
    model: str,
    video: str | Path,
    runs: int = 5,
    steps: int | None = None,
    cfg: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    options: dict | None = None,
    candidates: int = 1,
) -> dict:
    """Time ``runs`` end-to-end renders of ``video`` with the bundle ``model``; returns the figures.

    steps, cfg: sampling steps and guidance scale (default: `RenderSettings`' defaults, what users get);
    options: further `RenderSettings` keywords (``guidance_interval``, ``video_cfg``, ``declick``, ``gate``...).
    candidates > 1: each run is also timed as a best-of-N render (`engine.best_of_n`: N takes, scored by the
    reward heads, the best written), alternating with the single take so that both see the same machine.

    Result: ``{"model", "video_seconds", "runs", "steps", "cfg", "guidance_interval", "video_cfg", "declick",
    "gate", "shift", "threads", "load_s", "first_s", "median_s" (of the runs after the first; the first alone
    when runs == 1), "times_s", "peak_mb"}``, and with candidates > 1 ``"candidates"``, ``"best_of"`` (the same
    timing fields of the best-of-N renders) and ``"ratio"`` (their median over the single take's).
    """
    from engine.bundle import load_bundle
    from engine.pipeline import RenderSettings
    from engine.rewards import load_reward_heads

    defaults = RenderSettings()
    steps = defaults.steps if steps is None else steps
    cfg = defaults.cfg if cfg is None else cfg
    settings = RenderSettings(steps=steps, cfg=cfg, **(options or {}))
    t0 = time.perf_counter()
    bundle = load_bundle(model)
    heads = load_reward_heads() if candidates > 1 else None
    load_s = time.perf_counter() - t0
    times, best_times, duration = [], [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(runs):
            t, duration = _timed_take(bundle, video, replace(settings, seed=k), Path(tmp) / f"take{k}.wav")
            times.append(t)
            if heads is not None:
                take = Path(tmp) / f"best{k}.wav"
                best_times.append(_timed_take(bundle, video, replace(settings, seed=k), take, candidates, heads)[0])
            if progress:
                progress(k + 1, runs)
    report = {
        "model": bundle.name,
        "video_seconds": round(duration, 3),
        "runs": runs,
        "steps": steps,
        "cfg": cfg,
        "guidance_interval": list(settings.guidance_interval),
        "video_cfg": settings.video_cfg,
        "declick": settings.declick,
        "gate": settings.gate,
        "shift": settings.shift,
        "threads": torch.get_num_threads(),
        "load_s": round(load_s, 3),
    } | _timing(times)
    if best_times:
        best = _timing(best_times)
        report |= {"candidates": candidates, "best_of": best, "ratio": round(best["median_s"] / report["median_s"], 2)}
    return report | {"peak_mb": round(peak_memory_mb(), 1)}


def _timed_take(bundle, video, settings, out: Path, candidates: int = 1, heads=None) -> tuple[float, float]:
    """(seconds, video seconds) of one cold end-to-end take: decode (cache cleared), render (best of
    ``candidates`` by ``heads`` when more than one), write a 24-bit WAV."""
    from engine.best_of_n import best_of_n
    from engine.media import write_wav
    from engine.pipeline import prepare_video, render
    from engine.prepared import clear_prepared_cache
    from engine.rewards import DEFAULT_WEIGHTS

    clear_prepared_cache()
    t0 = time.perf_counter()
    prepared = prepare_video(video, bundle)
    if candidates > 1:
        audio = best_of_n(prepared, bundle, BENCH_COT, settings, candidates, DEFAULT_WEIGHTS, heads)[0].audio
    else:
        audio = render(prepared, BENCH_COT, bundle, settings)
    write_wav(out, audio, bundle.sample_rate)
    return time.perf_counter() - t0, prepared.duration


def _timing(times: list[float]) -> dict:
    """first_s, median_s (of the runs after the first; the first alone for one run) and times_s."""
    rest = times[1:] or times
    return {
        "first_s": round(times[0], 3),
        "median_s": round(statistics.median(rest), 3),
        "times_s": [round(t, 3) for t in times],
    }


def plan_speed(model: str, video: str | Path, runs: int = 5) -> dict:
    """Time ``runs`` plans of ``video`` by the planner of ``model`` (decode, network, writing the
    blocks; the planner is loaded once before). Result: ``{"runs", "load_s", "first_s", "median_s",
    "times_s"}`` with the median over the runs after the first (the first alone when runs == 1)."""
    from engine.planner.default import load_planner

    t0 = time.perf_counter()
    planner = load_planner(model)
    load_s = time.perf_counter() - t0
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        planner.plan(video)
        times.append(time.perf_counter() - t0)
    return {"runs": runs, "load_s": round(load_s, 3)} | _timing(times)
