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
) -> dict:
    """Time ``runs`` end-to-end renders of ``video`` with the bundle ``model``; returns the figures.

    steps, cfg: sampling steps and guidance scale (default: `RenderSettings`' defaults, what users get);
    options: further `RenderSettings` keywords (``guidance_interval``, ``video_cfg``, ``declick``, ``gate``...).

    Result: ``{"model", "video_seconds", "runs", "steps", "cfg", "guidance_interval", "video_cfg", "declick",
    "gate", "shift", "threads", "load_s", "first_s", "median_s" (of the runs after the first; the first alone
    when runs == 1), "times_s", "peak_mb"}``.
    """
    from engine.media import write_wav
    from engine.models import load_bundle
    from engine.pipeline import RenderSettings, _prepare_cached, prepare_video, render

    defaults = RenderSettings()
    steps = defaults.steps if steps is None else steps
    cfg = defaults.cfg if cfg is None else cfg
    settings = RenderSettings(steps=steps, cfg=cfg, **(options or {}))
    t0 = time.perf_counter()
    bundle = load_bundle(model)
    load_s = time.perf_counter() - t0
    times, duration = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(runs):
            _prepare_cached.cache_clear()
            t0 = time.perf_counter()
            prepared = prepare_video(video, bundle)
            audio = render(prepared, BENCH_COT, bundle, replace(settings, seed=k))
            write_wav(Path(tmp) / f"take{k}.wav", audio, bundle.sample_rate)
            times.append(time.perf_counter() - t0)
            duration = prepared.duration
            if progress:
                progress(k + 1, runs)
    rest = times[1:] or times
    return {
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
        "first_s": round(times[0], 3),
        "median_s": round(statistics.median(rest), 3),
        "times_s": [round(t, 3) for t in times],
        "peak_mb": round(peak_memory_mb(), 1),
    }


def plan_speed(model: str, video: str | Path, runs: int = 5) -> dict:
    """Time ``runs`` plans of ``video`` by the planner of ``model`` (decode, network, writing the
    blocks; the planner is loaded once before). Result: ``{"runs", "load_s", "first_s", "median_s",
    "times_s"}`` with the median over the runs after the first (the first alone when runs == 1)."""
    from engine.planner import load_planner

    t0 = time.perf_counter()
    planner = load_planner(model)
    load_s = time.perf_counter() - t0
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        planner.plan(video)
        times.append(time.perf_counter() - t0)
    rest = times[1:] or times
    return {
        "runs": runs,
        "load_s": round(load_s, 3),
        "first_s": round(times[0], 3),
        "median_s": round(statistics.median(rest), 3),
        "times_s": [round(t, 3) for t in times],
    }
