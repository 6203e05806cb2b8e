"""The sound classes of FoleyWorld: names, families, and how their events happen.

Each class has a visible cause drawn by `video.py` and a sound synthesised by `synth.py` from the
same `Source` parameters, so picture and sound are locked by construction.

Kinds:
- ``discrete``: the sound is a train of events (impacts, ticks, steps, plucks, chirps). Every event
  time is ground truth for onset metrics.
- ``continuous``: a texture or drone whose level follows an intensity curve (rain, wind, engine).
- ``fire`` is continuous with discrete crackle events on top (the flame flares at each crackle).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassSpec:
    """Static facts about one sound class."""

    name: str  # identifier used everywhere (labels, JSON, CoT lookups)
    family: str  # impact | texture | mechanical | tonal | creature | moving
    kind: str  # discrete | continuous | mixed (continuous bed plus discrete events)
    moving: bool  # the source travels across the frame
    material: str | None = None  # impacts only: what is struck
    min_gap: float = 0.25  # shortest interval between two of its own events, seconds
    rate: tuple[float, float] = (0.8, 2.0)  # events per second drawn per instance (discrete kinds)


CLASSES: dict[str, ClassSpec] = {
    spec.name: spec
    for spec in [
        ClassSpec("wood_knock", "impact", "discrete", False, "wood", 0.25, (0.6, 1.6)),
        ClassSpec("metal_clang", "impact", "discrete", False, "metal", 0.35, (0.4, 1.2)),
        ClassSpec("glass_clink", "impact", "discrete", False, "glass", 0.25, (0.6, 1.6)),
        ClassSpec("stone_hit", "impact", "discrete", False, "stone", 0.25, (0.6, 1.6)),
        ClassSpec("rain", "texture", "continuous", False),
        ClassSpec("wind", "texture", "continuous", False),
        ClassSpec("water_stream", "texture", "continuous", False),
        ClassSpec("fire", "texture", "mixed", False, min_gap=0.4, rate=(0.4, 1.0)),
        ClassSpec("clock_tick", "mechanical", "discrete", False, min_gap=0.45, rate=(1.0, 2.0)),
        ClassSpec("engine_idle", "mechanical", "continuous", False),
        ClassSpec("footsteps", "mechanical", "discrete", True, min_gap=0.35, rate=(1.4, 2.4)),
        ClassSpec("plucked_string", "tonal", "discrete", False, min_gap=0.4, rate=(0.4, 1.2)),
        ClassSpec("bell", "tonal", "discrete", False, min_gap=0.8, rate=(0.3, 0.7)),
        ClassSpec("bird_chirp", "creature", "discrete", False, min_gap=0.3, rate=(0.6, 1.6)),
        ClassSpec("cricket", "creature", "discrete", False, min_gap=0.45, rate=(0.6, 1.4)),
        ClassSpec("car_pass", "moving", "continuous", True),
    ]
}

CLASS_NAMES: list[str] = list(CLASSES)
FAMILIES: list[str] = sorted({c.family for c in CLASSES.values()})

# Pairs never drawn together in train/val scenes; test-multi draws half its scenes from them so
# the benchmark measures composition, not memorised combinations.
HELD_OUT_PAIRS: frozenset[frozenset[str]] = frozenset(
    frozenset(p)
    for p in [
        ("wood_knock", "bird_chirp"),
        ("metal_clang", "rain"),
        ("glass_clink", "engine_idle"),
        ("stone_hit", "cricket"),
        ("clock_tick", "water_stream"),
        ("footsteps", "fire"),
        ("plucked_string", "wind"),
        ("bell", "car_pass"),
    ]
)


def class_index(name: str) -> int:
    """Position of a class in `CLASS_NAMES` (the label order of every classifier)."""
    return CLASS_NAMES.index(name)


def has_events(name: str) -> bool:
    """True when the class produces discrete, countable onsets."""
    return CLASSES[name].kind in ("discrete", "mixed")
