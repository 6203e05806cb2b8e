"""A procedural "house library": sound classes the shipped model never saw, for measuring fine-tuning.

FoleyWorld's 16 classes are what the default model learnt. A studio's library holds other sounds; this
module makes four such classes from FoleyWorld's building blocks (its `Scene` / `Source`, modal
synthesis, shaped noise, stereo placement, room and recording colour, and its vectorised drawing), each
with a visible cause drawn at the instant it sounds:

- ``ceramic_tap``: a spoon taps a ceramic cup (a material FoleyWorld has not: bright inharmonic modes
  between glass and wood, a short ring);
- ``frog_croak``: a frog on a lily pad, its throat sac swelling with every croak (a pulsed, buzzy tone);
- ``rubber_squeak``: a rubber duck squashed flat, squeaking with a rising nasal whistle;
- ``sand_shaker``: a shaker jerked up and down, each reversal a hiss of sand.

`write_library` writes the three parts of the measurement: ``videos/`` (mp4 with its own audio, the
same sound lossless as ``<stem>.wav``, as a production's sound files sit beside its picture, and the
designer's CoT as ``<stem>.cot.json``), ``sounds/`` (tagged WAV files named after their sound: text-audio
pairs) and ``test/`` (held-out clips in the layout of a FoleyWorld split, for `trainer.measure`). Every
part draws from its own seed range, so no test clip is ever trained on.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

from engine.atomic import write_text
from engine.cot import Cot
from engine.planner.writer import SceneSketch, SourceSketch, write_blocks
from trainer.foleyworld import synth, video
from trainer.foleyworld.scene import Scene, Source, WorldConfig
from trainer.foleyworld.video import INK, WHITE, hsv_rgb


@dataclass(frozen=True)
class HouseClass:
    """One class of the house library."""

    name: str  # identifier (file names, JSON, the measurement's per-class rows)
    tags: str  # what a designer would call it: the Semantic block of a tagged sound
    event: str  # the noun of one event in the Temporal block ("tap", "croak")
    short: str  # what the Spatial block calls the source ("cup", "frog")
    nouns: tuple[str, ...]  # Semantic-block phrasings of a clip
    rate: tuple[float, float]  # events per second drawn per clip
    min_gap: float  # shortest interval between two events, seconds


HOUSE_CLASSES: dict[str, HouseClass] = {
    c.name: c
    for c in (
        HouseClass(
            "ceramic_tap",
            "ceramic cup tap",
            "tap",
            "cup",
            ("a spoon tapping a ceramic cup", "bright ceramic taps of a spoon on a cup", "a teaspoon clinking a mug"),
            (0.8, 1.8),
            0.3,
        ),
        HouseClass(
            "frog_croak",
            "frog croak",
            "croak",
            "frog",
            ("a frog croaking on a lily pad", "deep buzzy frog croaks", "a bullfrog calling"),
            (0.5, 1.2),
            0.55,
        ),
        HouseClass(
            "rubber_squeak",
            "rubber duck squeak",
            "squeak",
            "duck",
            ("a rubber duck squeaking", "squeaks of a squeezed rubber toy", "a squeaky rubber duck"),
            (0.5, 1.2),
            0.5,
        ),
        HouseClass(
            "sand_shaker",
            "sand shaker",
            "shake",
            "shaker",
            ("a shaker full of sand", "rattling hiss of a sand shaker", "a rhythm shaker shaken up and down"),
            (1.2, 2.4),
            0.28,
        ),
    )
}
# beyond FoleyWorld's splits; "judge": clips for metric models that know the house classes (`train metrics
# --house-per-class`), apart from the videos, sounds and test clips a tune trains and is measured on
SEED_BASE = {"videos": 40_000_000, "sounds": 41_000_000, "test": 42_000_000, "judge": 43_000_000}


# ----------------------------------------------------------------------------------------- scenes


def _events(rng: np.random.Generator, spec: HouseClass, duration: float) -> list[float]:
    lo, hi = 0.25, duration - 0.45
    times = np.sort(rng.uniform(lo, hi, rng.poisson(rng.uniform(*spec.rate) * (hi - lo)) + 1))
    kept: list[float] = []
    for t in times:
        if not kept or t - kept[-1] >= spec.min_gap:
            kept.append(round(float(t), 4))
    return kept


def house_scene(seed: int, cls: str, cfg: WorldConfig) -> Scene:
    """One source of a house class at a seeded place, with a seeded room, noise floor and tone."""
    spec, rng = HOUSE_CLASSES[cls], np.random.default_rng([seed, 0x40])
    x = float(rng.choice([-1, 1]) * rng.uniform(0.25, 0.7)) if rng.random() < 0.8 else float(rng.uniform(-0.2, 0.2))
    src = Source(cls, x, x, 0.6, float(rng.uniform(0.75, 1.3)), 0.0, cfg.duration, float(rng.uniform(-4, 0)))
    src.events = _events(rng, spec, cfg.duration)
    src.event_gain = [round(float(g), 3) for g in rng.uniform(0.65, 1.0, len(src.events))]
    src.params = {"pitch": float(rng.uniform(0.85, 1.2)), "damping": float(rng.uniform(0.8, 1.25))}
    src.params["hue"] = float(rng.uniform(0, 1))
    background = {"hue": float(rng.uniform(0, 1)), "sat": float(rng.uniform(0.1, 0.4)), "val": 0.65}
    background |= {"ground": float(rng.uniform(0.72, 0.85)), "texture": str(rng.choice(["plain", "noise", "gradient"]))}
    background["tex_seed"] = int(rng.integers(0, 2**31 - 1))
    room, hiss, tilt = float(rng.uniform(0, 0.8)), float(rng.uniform(0, 0.6) ** 2), float(rng.uniform(-0.6, 0.6))
    return Scene(seed, cfg, [src], room, hiss, tilt, background)


# ------------------------------------------------------------------------------------------ sound


def _ceramic(src: Source, rng: np.random.Generator, sr: int) -> np.ndarray:
    f0, n = 1450 * src.params["pitch"], int(0.5 * sr)
    ratios = np.array([1.0, 2.93, 5.31, 8.12]) * rng.uniform(0.99, 1.01, 4)
    decays = np.array([0.16, 0.09, 0.05, 0.03]) / src.params["damping"]
    body = synth.modal_sum(n, sr, f0 * ratios, decays, [1.0, 0.7, 0.45, 0.3], rng)
    return body / (np.abs(body).max() + 1e-9) + 0.5 * synth.click_burst(rng, n, sr, 0.0007)


def _croak(src: Source, rng: np.random.Generator, sr: int) -> np.ndarray:
    dur = rng.uniform(0.24, 0.34)
    t = np.arange(int(dur * sr)) / sr
    f0 = 165 * src.params["pitch"] * (1 - 0.08 * t / dur)
    buzz = synth.harmonic_series(2 * np.pi * np.cumsum(f0) / sr, 12, 0.6)
    pulses = np.clip(np.sin(2 * np.pi * rng.uniform(28, 38) * t), 0, None) ** 2  # the croak's rattle
    env = np.sin(np.pi * t / dur) ** 0.6
    return synth.one_pole_lowpass(buzz * pulses * env, 1800.0, sr)


def _squeak(src: Source, rng: np.random.Generator, sr: int) -> np.ndarray:
    dur = rng.uniform(0.16, 0.26)
    t = np.arange(int(dur * sr)) / sr
    f = 950 * src.params["pitch"] * (1 + 0.45 * t / dur) * (1 + 0.02 * np.sin(2 * np.pi * 22 * t))
    tone = synth.harmonic_series(2 * np.pi * np.cumsum(f) / sr, 5, 1.4)
    return tone * np.minimum(1.0, t / 0.015) * np.exp(-np.maximum(t - 0.7 * dur, 0) / 0.03)


def _shake(src: Source, rng: np.random.Generator, sr: int) -> np.ndarray:
    n = int(0.12 * sr)
    lo, hi = 2200 * src.params["pitch"], 9500.0
    hiss = synth.shaped_noise(rng, n, sr, lambda tt, f: synth.band_gain(f, lo, hi, 1.5)[None, :].repeat(len(tt), 0))
    env = np.minimum(1.0, np.arange(n) / (0.004 * sr)) * np.exp(-np.arange(n) / (0.035 * sr * src.params["damping"]))
    return hiss * env


VOICES: dict[str, Callable] = {
    "ceramic_tap": _ceramic,
    "frog_croak": _croak,
    "rubber_squeak": _squeak,
    "sand_shaker": _shake,
}


def render_house_audio(scene: Scene) -> synth.Rendered:
    """(N, 2) float32 audio of a house scene, mixed as FoleyWorld mixes (`trainer.foleyworld.synth.render_audio`):
    per-event voices, distance, screen-position stereo, room send, recording tone and noise floor."""
    cfg = scene.config
    sr, n = cfg.sample_rate, cfg.n_samples
    rng = np.random.default_rng([scene.seed, 1])
    n_track = int(np.ceil(cfg.duration * synth.TRACK_RATE))
    mix, send, xs, es = np.zeros((n, 2)), np.zeros(n), [], []
    for src in scene.sources:
        mono = np.zeros(n)
        for t, g in zip(src.events, src.event_gain):
            seg = VOICES[src.cls](src, rng, sr)
            synth.place_segment(mono, 0.5 * g * seg / (np.abs(seg).max() + 1e-9), t, sr)
        mono *= 10 ** (src.gain_db / 20) / src.distance
        stem = synth.colour_tilt(synth.spatialise(mono, src, sr), scene.tilt, sr)
        mix += stem
        send += mono * scene.room * (0.25 + 0.45 * (src.distance - 0.7))
        x, e = synth.level_tracks(src, stem, sr, n_track)
        xs.append(x)
        es.append(e)
    ir = synth.room_response(rng, scene.room, sr)
    mix += synth.colour_tilt(np.stack([fftconvolve(send, ir[:, c])[:n] for c in range(2)], axis=1), scene.tilt, sr)
    mix += rng.standard_normal((n, 2)) * 10 ** ((-62 + 26 * scene.hiss) / 20)
    peak = np.abs(mix).max()
    if peak > 0.95:
        mix *= 0.95 / peak
    return synth.Rendered(mix.astype(np.float32), np.array(xs), np.array(es))


# ----------------------------------------------------------------------------------------- pictures


def _draw_cup(cv, src: Source) -> None:
    """A white cup on the ground; a spoon swings down and touches its rim at every tap."""
    cx, cy, s = video.source_place(cv, src)
    base = video.floor_of(cv, cy, s, 0.1)
    top = base - 0.16 * s
    video.rect(cv, cx, (top + base) / 2, 0.1 * s, 0.08 * s, hsv_rgb(0.1, 0.05, 0.95), rad=0.03 * s)
    video.ellipse(cv, cx + 0.12 * s, (top + base) / 2, 0.035 * s, 0.045 * s, hsv_rgb(0.1, 0.05, 0.85))  # handle
    video.ellipse(cv, cx, top, 0.1 * s, 0.02 * s, hsv_rgb(0.08, 0.3, 0.45))  # the tea inside
    near, _ = video.nearest_event(cv, src.events)
    lift = np.clip(np.abs(near) / 0.12, 0.0, 1.0)  # 0 on the tap's frame, up between taps
    tip_x, tip_y = cx - 0.09 * s, top - 0.01 * s - 0.12 * s * lift
    video.capsule(cv, tip_x - 0.16 * s, tip_y - 0.12 * s, tip_x, tip_y, 0.012 * s, hsv_rgb(0.6, 0.05, 0.75))
    age, which = video.event_age(cv, src.events)
    flash = 0.8 * video.event_gains(src, which) * (age < 1.5 / cv.fps)
    video.circle(cv, tip_x, top, 0.03 * s, WHITE, alpha=flash, on=flash > 0)


def _call_mask(cv, events, dur: float) -> np.ndarray:
    """(F,) how far each frame is into a call that lasts ``dur`` s (0 outside, 1 at its middle)."""
    age, _ = video.event_age(cv, events)
    return np.where(age < dur, np.sin(np.pi * np.clip(age / dur, 0, 1) + 0.3), 0.0).clip(0, 1).astype(np.float32)


def _draw_frog(cv, src: Source) -> None:
    """A green frog on a lily pad; its pale throat sac swells during every croak."""
    cx, cy, s = video.source_place(cv, src)
    hue = 0.3 + 0.06 * (src.params["hue"] - 0.5)
    video.ellipse(cv, cx, cy + 0.08 * s, 0.22 * s, 0.045 * s, hsv_rgb(0.36, 0.6, 0.35))  # pad
    sac = _call_mask(cv, src.events, 0.3)
    video.ellipse(cv, cx, cy, 0.11 * s, 0.07 * s, hsv_rgb(hue, 0.7, 0.6))
    video.ellipse(cv, cx, cy + 0.04 * s, 0.05 * s + 0.04 * s * sac, 0.02 * s + 0.035 * s * sac, hsv_rgb(0.15, 0.3, 0.9))
    for k in (-1, 1):
        video.circle(cv, cx + k * 0.05 * s, cy - 0.065 * s, 0.025 * s, hsv_rgb(hue, 0.7, 0.6))
        video.circle(cv, cx + k * 0.05 * s, cy - 0.07 * s, 0.011 * s, INK)


def _draw_duck(cv, src: Source) -> None:
    """A yellow rubber duck; squeezed flat on every squeak, springing back after it."""
    cx, cy, s = video.source_place(cv, src)
    base = video.floor_of(cv, cy, s, 0.08)
    squash = _call_mask(cv, src.events, 0.22)
    h = 0.07 * s * (1 - 0.4 * squash)
    body = hsv_rgb(0.14, 0.85, 0.95)
    video.ellipse(cv, cx, base - h, 0.1 * s * (1 + 0.25 * squash), h, body)
    hx, hy = cx + 0.05 * s, base - 2 * h - 0.03 * s
    video.circle(cv, hx, hy, 0.045 * s, body)
    video.ellipse(cv, hx + 0.05 * s, hy + 0.008 * s, 0.025 * s, 0.01 * s + 0.01 * s * squash, hsv_rgb(0.06, 0.9, 0.9))
    video.circle(cv, hx + 0.012 * s, hy - 0.012 * s, 0.008 * s, INK)


def _draw_shaker(cv, src: Source) -> None:
    """A wooden shaker jerked up and down; it turns at the top or bottom at every shake."""
    cx, cy, s = video.source_place(cv, src)
    ev = np.asarray(src.events, np.float64)
    t = cv.t
    k = np.clip(np.searchsorted(ev, t, side="right"), 1, max(len(ev), 1)) - 1
    a, b = (ev[k], ev[np.minimum(k + 1, len(ev) - 1)]) if len(ev) else (t * 0, t * 0 + 1)
    u = np.clip((t - a) / np.maximum(b - a, 1e-3), 0, 1)
    side = np.where(k % 2 == 0, 1.0, -1.0)  # alternate: up, then down
    y = cy - 0.08 * s * side * np.cos(np.pi * u)  # at an event the shaker is at an extreme
    y = np.where(t < (ev[0] if len(ev) else 0), cy - 0.08 * s, y)
    video.capsule(cv, cx, y - 0.07 * s, cx, y + 0.07 * s, 0.035 * s, hsv_rgb(0.08, 0.6, 0.55))
    video.rect(cv, cx, y, 0.037 * s, 0.012 * s, hsv_rgb(0.0, 0.7, 0.6))


DRAW: dict[str, Callable] = {
    "ceramic_tap": _draw_cup,
    "frog_croak": _draw_frog,
    "rubber_squeak": _draw_duck,
    "sand_shaker": _draw_shaker,
}


def render_house_frames(scene: Scene) -> np.ndarray:
    """(F, H, W, 3) uint8 frames of a house scene on FoleyWorld's backdrop."""
    cv = video.Canvas(scene.config, float(scene.background.get("ground", 0.8)))
    cv.img[:] = np.ascontiguousarray(video.draw_background(cv, scene.background) + 0.5, np.uint8)
    for src in scene.sources:
        DRAW[src.cls](cv, src)
    return cv.img


# -------------------------------------------------------------------------------------------- text


def house_cot(scene: Scene) -> Cot:
    """The CoT a designer would write: the class's own words in the Semantic block, FoleyWorld's writer for
    the timing, recording character and placement (with the class's event noun)."""
    src, rng = scene.sources[0], np.random.default_rng([scene.seed, 2])
    spec = HOUSE_CLASSES[src.cls]
    sketch = SourceSketch(src.cls, "house", "discrete", src.x0, src.x1, src.size, 0.0, scene.config.duration)
    sketch.events = list(src.events)
    blocks = write_blocks(SceneSketch(scene.config.duration, [sketch], scene.room, scene.hiss, scene.tilt), rng)
    noun = spec.nouns[int(rng.integers(len(spec.nouns)))]
    spatial = _swap(blocks.spatial, src.cls.replace("_", " "), spec.short)
    temporal = _swap(blocks.temporal, "hit", spec.event)
    return Cot(semantic=f"We hear {noun}.", temporal=temporal, aesthetic=blocks.aesthetic, spatial=spatial)


def _swap(text: str, old: str, new: str) -> str:
    """``old`` -> ``new`` at word starts, keeping a capital first letter (the writer capitalises sentences)."""
    text = re.sub(rf"\b{re.escape(old)}", new, text)
    return re.sub(rf"\b{re.escape(old.capitalize())}", new.capitalize(), text)


# ------------------------------------------------------------------------------------------ library


def _write_json(path: Path, obj: dict) -> None:
    write_text(path, json.dumps(obj, indent=1))


def house_clip(part: str, cls: str, k: int, cfg: WorldConfig) -> tuple[Scene, synth.Rendered, Cot]:
    """Clip ``k`` of class ``cls`` in a part of the library (its seed: part, class, k)."""
    seed = SEED_BASE[part] + 10_000 * list(HOUSE_CLASSES).index(cls) + k
    scene = house_scene(seed, cls, cfg)
    return scene, render_house_audio(scene), house_cot(scene)


def _metadata(name: str, scene: Scene, audio: synth.Rendered, cot: Cot) -> dict:
    src = scene.sources[0]
    events = [
        {"time": t, "cls": src.cls, "source": 0, "x": src.x0, "gain": g} for t, g in zip(src.events, src.event_gain)
    ]
    tracks = {"rate": synth.TRACK_RATE, "x": audio.track_x.round(5).tolist(), "energy": audio.track_energy.tolist()}
    return {
        "name": name,
        "split": "house",
        "index": scene.seed,
        "seed": scene.seed,
        "duration": scene.config.duration,
        "classes": [src.cls],
        "events": events,
        "tracks": tracks,
        "cot": cot.to_dict(),
    }


def write_library(
    out: str | os.PathLike,
    per_class: int = 40,
    duration: float = 9.0,
    test_per_class: int = 10,
    sounds_per_class: int | None = None,
    progress=None,
) -> dict:
    """Write ``videos/``, ``sounds/`` and ``test/`` of the house library into ``out`` (see the module doc):
    ``per_class`` videos, ``sounds_per_class`` tagged sounds (default: half as many) and ``test_per_class``
    held-out clips per class. Returns the counts."""
    from engine.media import write_mp4, write_wav

    root, cfg = Path(out), WorldConfig(duration=duration, width=96, height=96)
    n_sounds = per_class // 2 if sounds_per_class is None else sounds_per_class
    plan = [("videos", per_class), ("sounds", n_sounds), ("test", test_per_class)]
    total, done, test_names = len(HOUSE_CLASSES) * sum(n for _, n in plan), 0, []
    for part, count in plan:
        (root / part).mkdir(parents=True, exist_ok=True)
        for cls, spec in HOUSE_CLASSES.items():
            for k in range(count):
                scene, audio, cot = house_clip(part, cls, k, cfg)
                if part == "sounds":  # named after its sound: the name is the tag
                    write_wav(root / part / f"{spec.tags.replace(' ', '_')}_{k:03d}.wav", audio.audio, cfg.sample_rate)
                else:
                    name = f"{cls}_{k:04d}"
                    frames = render_house_frames(scene)
                    write_mp4(root / part / f"{name}.mp4", frames, cfg.fps, audio.audio, cfg.sample_rate)
                    _write_part_files(root / part, name, scene, audio, cot, part)
                    test_names += [name] if part == "test" else []
                done += 1
                if progress:
                    progress(done, total)
    _write_json(root / "test" / "index.json", {"split": "house", "clips": test_names})
    return {"out": str(root), "classes": list(HOUSE_CLASSES)} | {
        part: count * len(HOUSE_CLASSES) for part, count in plan
    }


def _write_part_files(folder: Path, name: str, scene: Scene, audio, cot: Cot, part: str) -> None:
    from engine.media import write_wav

    if part == "videos":  # the designer's CoT and the production sound beside the video (what ingest reads)
        _write_json(folder / f"{name}.cot.json", cot.to_dict())
        write_wav(folder / f"{name}.wav", audio.audio, scene.config.sample_rate, subtype="FLOAT")
        return
    write_wav(folder / f"{name}.wav", audio.audio, scene.config.sample_rate, subtype="FLOAT")
    _write_json(folder / f"{name}.json", _metadata(name, scene, audio, cot))
