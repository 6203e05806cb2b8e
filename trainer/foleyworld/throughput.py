"""Generation speed of FoleyWorld: clips per second per core, in memory (no encoding or disk)."""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from trainer.foleyworld.ground_truth import write_cot
from trainer.foleyworld.scene import WorldConfig, sample_scene
from trainer.foleyworld.synth import render_audio


def measure_speed(cfg: WorldConfig, count: int = 50, video: bool = True, seed0: int = 0) -> dict:
    """Time scene drawing, audio synthesis, CoT writing and (optionally) frame rendering for ``count`` clips.

    Runs in this one process; run it with OMP_NUM_THREADS=1 for a per-core figure.
    """
    from trainer.foleyworld.video import render_frames

    parts = {"scene": 0.0, "audio": 0.0, "cot": 0.0, "video": 0.0}
    for i in range(count):
        t0 = time.perf_counter()
        scene = sample_scene(seed0 + i, cfg)
        t1 = time.perf_counter()
        render_audio(scene)
        t2 = time.perf_counter()
        write_cot(scene)
        t3 = time.perf_counter()
        if video:
            render_frames(scene)
        t4 = time.perf_counter()
        for k, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            parts[k] += dt
    total = sum(parts.values())
    return {
        "clips": count,
        "duration_s": cfg.duration,
        "fps": cfg.fps,
        "size": f"{cfg.width}x{cfg.height}",
        "sample_rate": cfg.sample_rate,
        "video": video,
        "seconds": round(total, 3),
        "clips_per_second": round(count / total, 2),
        "ms_per_clip": {k: round(1000 * v / count, 1) for k, v in parts.items()},
        "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "cpu": platform.processor() or platform.machine(),
        "numpy": np.__version__,
    }
