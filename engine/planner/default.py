"""The default planner: four CoT blocks from a silent video, offline, in well under a second on CPU.

`PlannerNet` says frame by frame which sources are visible, where, how large, how intense, and when a
sound event happens; `read_scene` turns that into a `SceneSketch` (sources with positions, movement
and event times) and `engine.planner.writer` writes the blocks in the words the generator was trained on.
What a picture cannot show (the room, the tone, the noise floor of the recording) is written as a
neutral middle; the designer edits it. The multimodal-LLM backend lives in `engine.planner.mllm`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.bundle import PLANNER_FILE, resolve_model
from engine.cot import Cot, validate_cot
from engine.errors import UserInputError
from engine.planner.network import HEADS, ClassInfo, PlannerNet, activate, load_planner_net
from engine.planner.writer import CURVE_RATE, SceneSketch, SourceSketch, write_blocks
from engine.video_io import load_video

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class ReadSettings:
    """Thresholds that turn frame-wise outputs into a scene (chosen on FoleyWorld val clips)."""

    present: float = 0.5  # a class is in the scene when its smoothed visibility reaches this
    smooth_s: float = 0.5  # seconds of the moving average over visibility
    event: float = 0.5  # a local maximum of the event probability at least this is an event
    gap_ratio: float = 0.8  # events of one class closer than gap_ratio x its min_gap are merged
    max_sources: int = 3  # at most this many visible sources are described
    present_by: dict[str, float] = field(default_factory=dict)  # per-class `present`, where calibrated
    event_by: dict[str, float] = field(default_factory=dict)  # per-class `event`, where calibrated

    def present_of(self, cls: str) -> float:
        return self.present_by.get(cls, self.present)

    def event_of(self, cls: str) -> float:
        return self.event_by.get(cls, self.event)

    @classmethod
    def of(cls, net: PlannerNet) -> ReadSettings:
        """The defaults with the per-class thresholds ``net`` carries (`PlannerNet.thresholds`)."""
        t = net.thresholds
        return cls(present_by=dict(t.get("present", {})), event_by=dict(t.get("event", {})))


def _moving_average(p: np.ndarray, width: int) -> np.ndarray:
    """(F, C) -> (F, C) centred moving average over ``width`` frames (edges averaged over what exists)."""
    if width <= 1:
        return p
    kernel = np.ones(width)
    num = np.stack([np.convolve(p[:, c], kernel, mode="same") for c in range(p.shape[1])], axis=1)
    den = np.convolve(np.ones(len(p)), kernel, mode="same")[:, None]
    return num / den


def pick_events(prob: np.ndarray, rate: float, threshold: float, min_gap: float) -> list[float]:
    """Event times (s) from one class's per-frame event probability (F,): local maxima at least
    ``threshold``, strongest first, none within ``min_gap`` s of a stronger one, each refined to a
    fraction of a frame by the parabola through its neighbours."""
    f = len(prob)
    left = np.concatenate([[-1.0], prob[:-1]])  # neighbour before each frame (none before the first)
    right = np.concatenate([prob[1:], [-1.0]])
    peaks = np.flatnonzero((prob >= threshold) & (prob >= left) & (prob > right))  # a plateau counts once
    kept: list[float] = []
    for k in sorted(peaks, key=lambda k: -prob[k]):
        k = int(k)
        a, b, c = prob[max(k - 1, 0)], prob[k], prob[min(k + 1, f - 1)]
        denom = a - 2 * b + c
        delta = float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5)) if denom < -1e-9 else 0.0
        t = (k + delta) / rate
        if all(abs(t - u) >= min_gap for u in kept):
            kept.append(round(t, 3))
    return sorted(kept)


def class_events(
    prob: np.ndarray, info: ClassInfo, rate: float, duration: float, threshold: float, s: ReadSettings
) -> list[float]:
    """The events of one class within the clip from its per-frame event probability (F,)."""
    return [t for t in pick_events(prob, rate, threshold, s.gap_ratio * info.min_gap) if t <= duration]


def _track(x: np.ndarray, w: np.ndarray, times: np.ndarray) -> tuple[float, float]:
    """Weighted straight-line fit x = a + b t over the visible frames: (a, b)."""
    if w.sum() < 1e-6 or len(np.unique(times[w > 0])) < 2:
        return float(np.median(x)), 0.0
    b, a = np.polyfit(times, x, 1, w=np.sqrt(w))
    return float(a), float(b)


def _curve(level: np.ndarray, rate: float, duration: float) -> list[float]:
    """Per-frame level (F,) -> control points at CURVE_RATE covering the clip plus one second."""
    n = int(np.ceil((duration + 1.0) * CURVE_RATE)) + 1
    t = np.arange(len(level)) / rate
    return [round(float(v), 3) for v in np.interp(np.arange(n) / CURVE_RATE, t, level)]


def _source(
    info: ClassInfo,
    heads: dict[str, np.ndarray],
    c: int,
    vis: np.ndarray,
    rate: float,
    duration: float,
    s: ReadSettings,
) -> SourceSketch:
    """One visible class -> its sketch: position or straight-line track, size, events, level curve."""
    times = np.arange(len(vis)) / rate
    w = vis * (vis >= s.present_of(info.name))  # weight of each frame in the position and size estimates
    if w.sum() < 1e-6:
        w = vis
    x, size = heads["x"][:, c], heads["size"][:, c]
    mean_size = float(np.average(size, weights=w + 1e-9))
    src = SourceSketch(info.name, info.family, info.kind, 0.0, 0.0, mean_size, 0.0, duration)
    if info.moving:
        a, b = _track(x, w, times)
        if info.family == "moving" and abs(b) > 1e-3:  # crosses the whole frame: from off screen to off screen
            side = np.sign(b)
            src.x0, src.x1 = -1.4 * side, 1.4 * side
            src.t_start, src.t_end = (src.x0 - a) / b, (src.x1 - a) / b
        else:
            src.x0, src.x1 = float(np.clip(a, -0.85, 0.85)), float(np.clip(a + b * duration, -0.85, 0.85))
    else:
        src.x0 = src.x1 = float(np.average(x, weights=w + 1e-9))
    if info.kind in ("discrete", "mixed"):
        src.events = class_events(heads["event_prob"][:, c], info, rate, duration, s.event_of(info.name), s)
    if info.kind in ("continuous", "mixed"):
        src.curve = _curve(heads["level"][:, c], rate, duration)
    return src


def read_scene(
    out: torch.Tensor,
    classes: tuple[ClassInfo, ...],
    rate: float,
    duration: float,
    settings: ReadSettings | None = None,
) -> SceneSketch:
    """Network outputs (F, C, H) for one clip -> the `SceneSketch` the writer needs."""
    s = settings or ReadSettings()
    if out.ndim != 3 or out.shape[1] != len(classes) or out.shape[2] != len(HEADS):
        raise ValueError(f"expected outputs (F, {len(classes)}, {len(HEADS)}), got {out.shape=}")
    heads = probabilities(out, rate, s)
    vis = heads["visible"]  # (F, C)
    present = np.array([s.present_of(c.name) for c in classes])
    order = choose_sources(vis.max(axis=0), present, s.max_sources)
    sources = [_source(classes[c], heads, c, vis[:, c], rate, duration, s) for c in order]
    return SceneSketch(duration=duration, sources=sources)


def probabilities(out: torch.Tensor, rate: float, s: ReadSettings) -> dict[str, np.ndarray]:
    """Network outputs (F, C, H) -> the `activate`d heads as arrays, with ``visible`` (the visibility
    probability smoothed over ``s.smooth_s``) and ``event_prob`` (F, C) each."""
    heads = {k: v.detach().float().numpy() for k, v in activate(out).items()}
    heads["visible"] = _moving_average(1.0 / (1.0 + np.exp(-heads["present"])), max(1, round(s.smooth_s * rate)))
    heads["event_prob"] = 1.0 / (1.0 + np.exp(-heads["event"]))
    return heads


def choose_sources(score: np.ndarray, present: np.ndarray, max_sources: int) -> list[int]:
    """The classes a scene names from their peak visibility (C,): the strongest at or over their
    thresholds ``present`` (C,), at most ``max_sources``; every video gets a plan, so when none is, the
    single strongest."""
    order = [int(c) for c in np.argsort(-score) if score[c] >= present[c]][:max_sources]
    return order or [int(np.argmax(score))]


class DefaultPlanner:
    """The embedded planner: `plan(video) -> Cot`, plus `read(video) -> SceneSketch` for evaluation."""

    def __init__(self, net: PlannerNet, settings: ReadSettings | None = None) -> None:
        self.net = net.eval()
        self.settings = settings or ReadSettings.of(net)

    @classmethod
    def load(cls, path: str | os.PathLike) -> DefaultPlanner:
        """From a planner file, or a model folder holding `PLANNER_FILE`."""
        p = Path(path)
        if p.is_dir():
            p = p / PLANNER_FILE
            if not p.is_file():
                raise UserInputError(
                    f"model folder {p.parent} has no planner ({PLANNER_FILE}); "
                    "pass --cot FILE.json or train one with: python launch.py train planner"
                )
        return cls(load_planner_net(p))

    @torch.no_grad()
    def read_frames(self, frames: np.ndarray, duration: float) -> SceneSketch:
        """(F, S, S, 3) uint8 frames at the planner's rate -> scene sketch."""
        cfg = self.net.config
        out = self.net(torch.from_numpy(np.ascontiguousarray(frames))[None])[0]  # (F, C, H)
        return read_scene(out, cfg.classes, cfg.rate, duration, self.settings)

    def read(self, video: str | os.PathLike, progress: Progress | None = None) -> SceneSketch:
        """Decode ``video`` and read its scene; raises `UserInputError` for unusable files."""
        cfg = self.net.config
        if progress:
            progress(0.0, "reading the video")
        clip = load_video(video, rate=cfg.rate, size=cfg.size)
        if clip.info.duration <= 0:
            raise UserInputError(f"{Path(video).name} has zero length")
        if progress:
            progress(0.5, "looking for sources and events")
        scene = self.read_frames(clip.frames, clip.info.duration)
        if progress:
            progress(1.0, "planned")
        return scene

    def plan(self, video: str | os.PathLike, progress: Progress | None = None, seed: int = 0) -> Cot:
        """The four CoT blocks for ``video``; ``seed`` picks among equivalent phrasings."""
        cot = write_blocks(self.read(video, progress), np.random.default_rng(seed))
        return validate_cot(cot.to_dict())  # the one gate every CoT passes (length limits included)


def has_planner(model: str | os.PathLike) -> bool:
    """True when the model folder named or given by ``model`` ships a planner."""
    return (resolve_model(model) / PLANNER_FILE).is_file()


def load_planner(model: str | os.PathLike = "default", backend: str = "default", mllm_model: str | None = None):
    """A planner with ``plan(video, progress=None, seed=0) -> Cot``.

    backend "default": the planner shipped in the model folder ``model`` (a name under assets/models or a
    path); "mllm": a multimodal LLM through transformers (``mllm_model``: a hub id or a local folder;
    downloaded only here, when asked for).
    """
    if backend == "mllm":
        from engine.planner.mllm import MllmPlanner, MllmPlannerConfig

        cfg = MllmPlannerConfig(model_id=mllm_model) if mllm_model else MllmPlannerConfig()
        return MllmPlanner.from_config(cfg)
    if backend != "default":
        raise UserInputError(f"unknown planner {backend!r}; choose default or mllm")
    return DefaultPlanner.load(resolve_model(model))
