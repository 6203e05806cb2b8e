"""Per-class reading thresholds of the default planner, chosen on FoleyWorld ``val`` clips.

The planner network's visibility and event probabilities are not equally sharp for every class: one
global threshold names some sources too readily (footsteps beside rain, wind beside a passing car) and
misses most events of others (bird chirps, bell strikes). Calibration runs the network once over ``clips``
val clips (their mp4 files, decoded as a user's video is) and keeps its outputs, then chooses, on a grid:

- **presence**: one threshold per class by coordinate ascent on the share of clips whose visible classes
  are named exactly (the planner bench's "classes exact", `engine.bench.planning`), or on the mean
  Jaccard overlap of named and visible classes (``objective="jaccard"``: a clip of three sources with two
  named counts in part), or on the mean F2 score of named against visible classes (``objective="f2"``:
  a missed source costs more than a spurious one), every other class's threshold held, class after class,
  until a whole round changes nothing;
- **events**: for each class with discrete events, the threshold that maximises the F-beta score of its
  events matched one to one within 100 ms, over the clips where the calibrated presence names the class
  (events of a class named but absent count against precision, events of a class present but not named
  against recall). beta > 1 favours recall.

The thresholds travel in the planner file (`engine.planner.network.PlannerNet.thresholds`); `engine.planner.default`
reads with them. Test clips are never used here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.bench.planning import match_events
from engine.errors import UserInputError
from engine.planner.default import ReadSettings, choose_sources, class_events, probabilities
from engine.planner.network import PlannerNet, load_planner_net, save_planner

PRESENT_GRID = tuple(round(0.2 + 0.05 * k, 2) for k in range(15))  # 0.20 .. 0.90
EVENT_GRID = tuple(round(0.1 + 0.05 * k, 2) for k in range(15))  # 0.10 .. 0.80


@dataclass
class ClipOutputs:
    """What calibration needs of one clip: per-class visibility score, event probabilities and the truth."""

    score: np.ndarray  # (C,) max over frames of the smoothed visibility
    event_prob: np.ndarray  # (F, C)
    truth: frozenset[int]  # classes visible in the clip
    events: dict[int, list[float]]  # class -> true event times (visible sources)
    duration: float


def clip_outputs(net: PlannerNet, frames: np.ndarray, meta: dict, settings: ReadSettings) -> ClipOutputs:
    """Run ``net`` on one clip's frames (F, S, S, 3) and keep what the thresholds act on."""
    cfg = net.config
    index = {c.name: k for k, c in enumerate(cfg.classes)}
    with torch.no_grad():
        heads = probabilities(net(torch.from_numpy(frames)[None])[0], cfg.rate, settings)
    visible = [s for s in meta["sources"] if not s["offscreen"] and s["cls"] in index]
    events: dict[int, list[float]] = {}
    for s in visible:
        events.setdefault(index[s["cls"]], []).extend(float(t) for t in s["events"])
    return ClipOutputs(
        score=heads["visible"].max(axis=0),
        event_prob=heads["event_prob"],
        truth=frozenset(index[s["cls"]] for s in visible),
        events=events,
        duration=float(meta["duration"]),
    )


def named(score: np.ndarray, thresholds: np.ndarray, max_sources: int) -> frozenset[int]:
    """The classes `engine.planner.default.read_scene` names: the strongest at or over their thresholds (at most
    ``max_sources``), or the single strongest when none is."""
    return frozenset(choose_sources(score, thresholds, max_sources))


def exact_rate(clips: list[ClipOutputs], thresholds: np.ndarray, max_sources: int) -> float:
    """Share of clips whose named classes are exactly the visible ones."""
    return float(np.mean([named(c.score, thresholds, max_sources) == c.truth for c in clips]))


def jaccard(clips: list[ClipOutputs], thresholds: np.ndarray, max_sources: int) -> float:
    """Mean over clips of |named & visible| / |named | visible|: partly right counts in part."""
    out = []
    for c in clips:
        got = named(c.score, thresholds, max_sources)
        out.append(len(got & c.truth) / max(1, len(got | c.truth)))
    return float(np.mean(out))


def recall_f2(clips: list[ClipOutputs], thresholds: np.ndarray, max_sources: int) -> float:
    """Mean over clips of the F2 score of named against visible classes: a missed source costs four times
    what a spurious one does (a CoT that leaves a source out leaves it out of the take)."""
    out = []
    for c in clips:
        got = named(c.score, thresholds, max_sources)
        out.append(event_f_beta(len(got & c.truth), len(c.truth), len(got), 2.0))
    return float(np.mean(out))


OBJECTIVES = {"exact": exact_rate, "jaccard": jaccard, "f2": recall_f2}


def fit_presence(
    clips: list[ClipOutputs],
    start: np.ndarray,
    max_sources: int,
    grid=PRESENT_GRID,
    rounds: int = 6,
    objective: str = "exact",
) -> np.ndarray:
    """Per-class presence thresholds by coordinate ascent on ``objective`` (`OBJECTIVES`; ties keep the
    current value)."""
    score = OBJECTIVES[objective]
    t = start.astype(float).copy()
    best = score(clips, t, max_sources)
    for _ in range(rounds):
        changed = False
        for c in range(len(t)):
            for v in grid:
                trial = t.copy()
                trial[c] = v
                rate = score(clips, trial, max_sources)
                if rate > best + 1e-12:
                    best, t, changed = rate, trial, True
        if not changed:
            break
    return t


def event_f_beta(hits: int, truth: int, found: int, beta: float) -> float:
    """F-beta of matched items, events or classes (0 when nothing was found or nothing was there)."""
    if hits == 0:
        return 0.0
    p, r = hits / found, hits / truth
    return (1 + beta**2) * p * r / (beta**2 * p + r)


def fit_events(
    clips: list[ClipOutputs],
    presence: np.ndarray,
    net: PlannerNet,
    settings: ReadSettings,
    beta: float = 1.0,
    grid=EVENT_GRID,
) -> dict[int, float]:
    """Per-class event thresholds maximising `event_f_beta` (ties: the value nearest the global default)."""
    cfg, out = net.config, {}
    names = [named(c.score, presence, settings.max_sources) for c in clips]
    for k, info in enumerate(cfg.classes):
        if info.kind not in ("discrete", "mixed"):
            continue
        truth = sum(len(c.events.get(k, [])) for c in clips)
        if truth == 0:
            continue
        scored = []
        for v in grid:
            hits = found = 0
            for clip, chosen in zip(clips, names):
                if k not in chosen:
                    continue
                got = class_events(clip.event_prob[:, k], info, cfg.rate, clip.duration, v, settings)
                found += len(got)
                hits += match_events(clip.events.get(k, []), got)
            scored.append((event_f_beta(hits, truth, found, beta), -abs(v - settings.event), v))
        out[k] = max(scored)[2]
    return out


def calibrate(
    planner_file: str | Path,
    clips: int,
    out: str | Path,
    work: str | Path,
    beta: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
    world=None,
    objective: str = "exact",
) -> dict:
    """Calibrate ``planner_file`` on the first ``clips`` FoleyWorld val clips (written to ``work`` once;
    ``world``: their `WorldConfig`, default FoleyWorld's) and write it with its thresholds to ``out``
    (written whole, then renamed). -> a report."""
    from engine.video_io import load_video
    from trainer.foleyworld.scene import WorldConfig
    from trainer.foleyworld.splits import write_split

    if clips < 20:
        raise UserInputError(f"calibration needs at least 20 val clips, got {clips}")
    if objective not in OBJECTIVES:
        raise UserInputError(f"unknown presence objective {objective!r}; choose {' or '.join(OBJECTIVES)}")
    net = load_planner_net(planner_file)
    net.thresholds = {}  # calibrate from the global defaults
    settings, cfg = ReadSettings(), net.config
    folder, duration = Path(work), (world or WorldConfig()).duration
    index = folder / "index.json"
    names = json.loads(index.read_text())["clips"] if index.is_file() else []
    same = len(names) >= clips and json.loads((folder / f"{names[0]}.json").read_text())["duration"] == duration
    if not same:  # the clips are written once and reused by the next calibration
        write_split("val", folder, clips, world)
    data = []
    for k, name in enumerate(json.loads(index.read_text())["clips"][:clips]):
        meta = json.loads((folder / f"{name}.json").read_text())
        frames = load_video(folder / f"{name}.mp4", rate=cfg.rate, size=cfg.size).frames
        data.append(clip_outputs(net, np.ascontiguousarray(frames), meta, settings))
        if progress:
            progress(k + 1, clips)
    start = np.full(len(cfg.classes), settings.present)
    presence = fit_presence(data, start, settings.max_sources, objective=objective)
    events = fit_events(data, presence, net, settings, beta)
    names = [c.name for c in cfg.classes]
    net.thresholds = {
        "present": {names[c]: float(v) for c, v in enumerate(presence)},
        "event": {names[c]: float(v) for c, v in events.items()},
    }
    save_planner(net, out)
    return {
        "out": str(out),
        "clips": clips,
        "beta": beta,
        "objective": objective,
        **{
            f"{name}_val": {
                "before": fn(data, start, settings.max_sources),
                "after": fn(data, presence, settings.max_sources),
            }
            for name, fn in (("classes_exact", exact_rate), ("jaccard", jaccard), ("f2", recall_f2))
        },
        "thresholds": net.thresholds,
    }
