"""Seeded splits of FoleyWorld and the writer that puts a split on disk.

Splits draw from disjoint seed ranges, so no clip of one split can reappear in another:

- ``train`` / ``val``: 1 to 3 sources; class pairs in `classes.HELD_OUT_PAIRS` never meet.
- ``test-single``: one source.
- ``test-multi``: 2 or 3 sources; half the scenes contain a held-out pair.

On disk a clip is ``<split>_<index>.mp4`` (H.264 + AAC), ``.wav`` (lossless float stereo) and
``.json`` (classes, events, trajectories, per-source tracks, the CoT).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine.atomic import write_text
from engine.cot import Cot
from trainer.foleyworld.ground_truth import write_cot
from trainer.foleyworld.scene import Scene, WorldConfig, sample_scene
from trainer.foleyworld.synth import TRACK_RATE, Rendered, render_audio

SPLIT_SEED_BASE = {"train": 0, "val": 10_000_000, "test-single": 20_000_000, "test-multi": 30_000_000}
SPLIT_SIZE = 10_000_000  # seeds available per split


@dataclass
class Clip:
    """One generated clip in memory."""

    split: str
    index: int
    scene: Scene
    audio: Rendered
    cot: Cot


def clip_seed(split: str, index: int) -> int:
    """The scene seed of clip ``index`` of ``split`` (disjoint ranges per split)."""
    if split not in SPLIT_SEED_BASE:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_SEED_BASE)}")
    if not 0 <= index < SPLIT_SIZE:
        raise ValueError(f"clip index must be in [0, {SPLIT_SIZE}), got {index}")
    return SPLIT_SEED_BASE[split] + index


def _n_sources(split: str, seed: int) -> int | None:
    if split == "test-single":
        return 1
    if split == "test-multi":
        return 2 + int(np.random.default_rng([seed, 3]).random() < 0.4)
    return None


def clip_duration(cfg: WorldConfig, seed: int, random_duration: bool) -> WorldConfig:
    """The clip's config: the given duration, or one drawn in [2, 12] s from the seed."""
    if not random_duration:
        return cfg
    d = float(np.round(np.random.default_rng([seed, 4]).uniform(2.0, 12.0), 2))
    return replace(cfg, duration=d)


def clip_scene(split: str, index: int, cfg: WorldConfig | None = None, random_duration: bool = False) -> Scene:
    """The scene of clip ``index`` of ``split`` (no audio rendered: ~0.5 ms); deterministic."""
    seed = clip_seed(split, index)
    cfg = clip_duration(cfg or WorldConfig(), seed, random_duration)
    return sample_scene(seed, cfg, split=split, n_sources=_n_sources(split, seed))


def clip_cot(split: str, index: int, cfg: WorldConfig | None = None, random_duration: bool = False) -> Cot:
    """The ground-truth CoT of clip ``index`` of ``split``, without rendering its audio."""
    return write_cot(clip_scene(split, index, cfg, random_duration))


def make_clip(split: str, index: int, cfg: WorldConfig | None = None, random_duration: bool = False) -> Clip:
    """Generate clip ``index`` of ``split`` (scene, stereo audio, CoT); deterministic."""
    scene = clip_scene(split, index, cfg, random_duration)
    return Clip(split, index, scene, render_audio(scene), write_cot(scene))


def _round(a: np.ndarray, digits: int = 6) -> list:
    return [[float(f"{v:.{digits}g}") for v in row] for row in np.asarray(a)]


def clip_metadata(clip: Clip) -> dict:
    """Everything a metric or a trainer needs about the clip, JSON-ready."""
    sc = clip.scene
    cfg = sc.config
    return {
        "name": f"{clip.split}_{clip.index:06d}",
        "split": clip.split,
        "index": clip.index,
        "seed": sc.seed,
        "duration": cfg.duration,
        "fps": cfg.fps,
        "width": cfg.width,
        "height": cfg.height,
        "sample_rate": cfg.sample_rate,
        "classes": sc.classes,
        "events": sc.events(),
        "sources": sc.to_dict()["sources"],
        "room": sc.room,
        "hiss": sc.hiss,
        "tilt": sc.tilt,
        "background": sc.background,
        "tracks": {"rate": TRACK_RATE, "x": _round(clip.audio.track_x, 5), "energy": _round(clip.audio.track_energy)},
        "cot": clip.cot.to_dict(),
    }


def _write_json(path: Path, obj: dict) -> None:
    write_text(path, json.dumps(obj, indent=1))


def write_clip(clip: Clip, out_dir: Path, video: bool = True) -> dict:
    """Write one clip's mp4 (optional), WAV and JSON; returns its metadata."""
    from engine.media import write_mp4, write_wav
    from trainer.foleyworld.video import render_frames

    meta = clip_metadata(clip)
    stem = out_dir / meta["name"]
    write_wav(stem.with_suffix(".wav"), clip.audio.audio, clip.scene.config.sample_rate, subtype="FLOAT")
    if video:
        frames = render_frames(clip.scene)
        write_mp4(
            stem.with_suffix(".mp4"), frames, clip.scene.config.fps, clip.audio.audio, clip.scene.config.sample_rate
        )
    _write_json(stem.with_suffix(".json"), meta)
    return meta


def write_split(
    split: str,
    out_dir: str | Path,
    count: int,
    cfg: WorldConfig | None = None,
    start: int = 0,
    video: bool = True,
    random_duration: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Generate clips ``start .. start + count - 1`` of ``split`` into ``out_dir``.

    Writes ``index.json`` (the list of clip names) last, so a folder with an index is complete.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metas = []
    t0 = time.perf_counter()
    for k, i in enumerate(range(start, start + count)):
        metas.append(write_clip(make_clip(split, i, cfg, random_duration), out, video))
        if progress:
            progress(k + 1, count)
    _write_json(
        out / "index.json",
        {"split": split, "clips": [m["name"] for m in metas], "seconds": round(time.perf_counter() - t0, 3)},
    )
    return metas


def load_split(folder: str | Path) -> list[dict]:
    """Metadata of every clip of a written split folder (reads its index)."""
    folder = Path(folder)
    index = folder / "index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{folder} holds no FoleyWorld split (no index.json)")
    names = json.loads(index.read_text())["clips"]
    return [json.loads((folder / f"{n}.json").read_text()) for n in names]
