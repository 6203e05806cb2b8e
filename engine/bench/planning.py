"""How well a planner reads a silent video, against FoleyWorld's ground truth (issue "The planner").

Per clip the planner's `SceneSketch` is compared with the scene that drew the clip:

- classes: the set of visible classes is exactly right (off-screen ambience cannot be seen and is left
  out of the truth), plus source recall and precision;
- events: ground-truth events of each found class matched one-to-one to the planner's events of that
  class within +-100 ms (greedy, nearest first); recall over impact events (the impact family) and over
  all discrete events, and precision over all predicted events;
- side: for each visible source the planner found, left / centre / right (x below -0.2, within, above
  0.2, the CoT writer's bins) of its position, the mean over its visible time; for moving sources also
  the direction of travel.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.planner.writer import SceneSketch

TOLERANCE_S = 0.1  # event match window, seconds (FoleyBench's onset F1 uses the same)


def side_of(x: float) -> str:
    """left / centre / right of a horizontal position (-1 left edge .. +1 right edge)."""
    return "left" if x < -0.2 else "right" if x > 0.2 else "centre"


def mean_visible_x(x0: float, x1: float, t0: float, t1: float, duration: float) -> float:
    """Mean position over the part of [0, duration] where a straight-line track is inside the frame."""
    t = np.linspace(0.0, duration, 200)
    x = x0 + (x1 - x0) * np.clip((t - t0) / max(t1 - t0, 1e-6), 0.0, 1.0)
    inside = np.abs(x) <= 1.0
    return float(x[inside].mean() if inside.any() else x.mean())


def match_events(truth: list[float], found: list[float], tol: float = TOLERANCE_S) -> int:
    """Number of one-to-one matches within ``tol`` seconds, closest pairs first."""
    pairs = sorted((abs(a - b), i, j) for i, a in enumerate(truth) for j, b in enumerate(found) if abs(a - b) <= tol)
    used_t, used_f, n = set(), set(), 0
    for _, i, j in pairs:
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
            n += 1
    return n


def compare(meta: dict, sketch: SceneSketch, families: dict[str, str]) -> dict:
    """Counts for one clip: ``meta`` is the clip's JSON, ``families`` maps class -> family."""
    truth = [s for s in meta["sources"] if not s["offscreen"]]
    found = {s.cls: s for s in sketch.sources}
    c = {"clips": 1, "classes_exact": int({s["cls"] for s in truth} == set(found)), "sources": len(truth)}
    c |= {"sources_found": 0, "predicted_sources": len(found), "side_total": 0, "side_ok": 0}
    c |= {"moving": 0, "direction_ok": 0, "events": 0, "events_hit": 0, "impact_events": 0, "impact_hit": 0}
    c["predicted_events"] = sum(len(s.events) for s in sketch.sources)
    dur = float(meta["duration"])
    for s in truth:
        hit = match_events(s["events"], found[s["cls"]].events) if s["cls"] in found else 0
        c["events"] += len(s["events"])
        c["events_hit"] += hit
        if families.get(s["cls"]) == "impact":
            c["impact_events"] += len(s["events"])
            c["impact_hit"] += hit
        if s["cls"] not in found:
            continue
        p = found[s["cls"]]
        c["sources_found"] += 1
        c["side_total"] += 1
        want = side_of(mean_visible_x(s["x0"], s["x1"], s["t_start"], s["t_end"], dur))
        c["side_ok"] += int(want == side_of(mean_visible_x(p.x0, p.x1, p.t_start, p.t_end, dur)))
        if s["x0"] != s["x1"]:
            c["moving"] += 1
            c["direction_ok"] += int(np.sign(s["x1"] - s["x0"]) == np.sign(p.x1 - p.x0))
    return c


def summarise(counts: dict) -> dict:
    """Rates from summed counts."""

    def rate(a: str, b: str) -> float | None:
        return round(counts[a] / counts[b], 4) if counts[b] else None

    return {
        "clips": counts["clips"],
        "classes_exact": rate("classes_exact", "clips"),
        "source_recall": rate("sources_found", "sources"),
        "source_precision": rate("sources_found", "predicted_sources"),
        "impact_events_within_100ms": rate("impact_hit", "impact_events"),
        "events_within_100ms": rate("events_hit", "events"),
        "event_precision": rate("events_hit", "predicted_events"),
        "side_correct": rate("side_ok", "side_total"),
        "direction_correct": rate("direction_ok", "moving"),
        "counts": counts,
    }


def planner_accuracy(
    read: Callable[[Path], SceneSketch],
    families: dict[str, str],
    folder: str | Path,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Accuracy of ``read(video) -> SceneSketch`` over the first ``limit`` clips of a written split."""
    folder = Path(folder)
    names = json.loads((folder / "index.json").read_text())["clips"][:limit]
    total: dict[str, int] = {}
    for k, name in enumerate(names):
        meta = json.loads((folder / f"{name}.json").read_text())
        for key, v in compare(meta, read(folder / f"{name}.mp4"), families).items():
            total[key] = total.get(key, 0) + v
        if progress:
            progress(k + 1, len(names))
    return summarise(total)
