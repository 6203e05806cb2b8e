"""The ground-truth CoT of a FoleyWorld clip, written from its scene parameters.

The words come from `engine.planner.writer`, the same writer the planner uses, so the generator learns
the vocabulary the planner speaks. This module only turns a `Scene` into the writer's sketch.
"""

from __future__ import annotations

import numpy as np

from engine.cot import Cot
from engine.planner.writer import SceneSketch, SourceSketch, write_blocks
from trainer.foleyworld.classes import CLASSES
from trainer.foleyworld.scene import Scene, Source


def source_sketch(src: Source) -> SourceSketch:
    """What the writer needs of one source."""
    spec = CLASSES[src.cls]
    return SourceSketch(
        cls=src.cls,
        family=spec.family,
        kind=spec.kind,
        x0=src.x0,
        x1=src.x1,
        size=src.size,
        t_start=src.t_start,
        t_end=src.t_end,
        events=list(src.events),
        curve=list(src.curve),
        pitch=src.params.get("pitch", 1.0),
        damping=src.params.get("damping", 1.0),
        offscreen=src.offscreen,
    )


def scene_sketch(scene: Scene) -> SceneSketch:
    """The writer's view of a whole scene (room, hiss and tilt included: ground truth knows them)."""
    return SceneSketch(
        duration=scene.config.duration,
        sources=[source_sketch(s) for s in scene.sources],
        room=scene.room,
        hiss=scene.hiss,
        tilt=scene.tilt,
    )


def write_cot(scene: Scene) -> Cot:
    """The ground-truth CoT of a scene (deterministic for its seed)."""
    return write_blocks(scene_sketch(scene), np.random.default_rng([scene.seed, 2]))
