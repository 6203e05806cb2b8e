"""Writing the four CoT blocks from a sketch of a scene: what sounds, when, how, and where.

One writer serves two callers: FoleyWorld writes the ground-truth CoT of each clip from its scene
parameters, and the planner writes a CoT from what it sees in a video. Both therefore speak the
vocabulary the embedded generator was trained on. Phrasing varies (several templates and synonyms per
concept, drawn from a seeded generator). Each block speaks only of its own dimension (PrismAudio
section 3.2): Semantic = what sounds and of what material; Temporal = when and in what order;
Aesthetic = the character of the recording; Spatial = where and how it moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.cot import Cot

CURVE_RATE = 4.0  # control points per second of an intensity curve

# What each class is, several ways (the noun phrase names the sound and its visible cause).
NOUNS: dict[str, list[str]] = {
    "wood_knock": [
        "knocks of a ball bouncing on a wooden block",
        "hollow wooden knocks from a ball hitting a wood block",
        "a ball clacking against a block of wood",
    ],
    "metal_clang": [
        "ringing metallic clangs as a ball hits a metal plate",
        "a ball striking a steel plate with bright clangs",
        "resonant metal hits on a plate",
    ],
    "glass_clink": [
        "high glassy clinks of a ball tapping a glass pane",
        "delicate glass clinks from a ball on a glass sheet",
        "a ball tinkling against glass",
    ],
    "stone_hit": [
        "dull thuds of a ball dropping on a stone slab",
        "heavy stone knocks as a ball hits rock",
        "short gritty impacts on a stone block",
    ],
    "rain": ["steady rainfall", "rain pattering down", "a shower of falling raindrops"],
    "wind": ["gusting wind through the reeds", "wind blowing and swirling", "a breezy wind rushing through grass"],
    "water_stream": ["a babbling stream of flowing water", "running water with small bubbles", "a trickling brook"],
    "fire": ["a crackling fire", "a campfire burning with pops and crackles", "flames flickering and crackling"],
    "clock_tick": ["a ticking clock", "the regular tick-tock of a wall clock", "a clock ticking steadily"],
    "engine_idle": ["an idling engine", "a machine's motor rumbling at idle", "the low hum of a running engine"],
    "footsteps": ["footsteps of a person walking", "a walker's steps on the ground", "steady walking footsteps"],
    "plucked_string": ["notes plucked on a string", "a plucked string instrument", "twangs of a plucked string"],
    "bell": ["a swinging bell ringing", "strikes of a hanging bell", "a bell tolling as it swings"],
    "bird_chirp": ["a small bird chirping", "short bird chirps", "a songbird's quick calls"],
    "cricket": ["a cricket chirping", "rhythmic cricket chirps", "the trill of a cricket"],
    "car_pass": ["a car driving past", "a passing car with engine and tyre noise", "a vehicle going by"],
}

# Characteristics from the per-instance parameters.
PITCH_WORDS = {"low": ["low-pitched", "deep", "low"], "high": ["high-pitched", "bright-toned", "high"]}
DAMP_WORDS = {
    "short": ["short and damped", "quickly dying", "tight"],
    "long": ["long-ringing", "sustained", "lingering"],
}
EVENT_NOUN = {
    "wood_knock": "knock",
    "metal_clang": "clang",
    "glass_clink": "clink",
    "stone_hit": "thud",
    "fire": "crackle",
    "clock_tick": "tick",
    "footsteps": "step",
    "plucked_string": "pluck",
    "bell": "strike",
    "bird_chirp": "chirp",
    "cricket": "chirp",
}
SHORT_NAME = {
    "wood_knock": "wooden block",
    "metal_clang": "metal plate",
    "glass_clink": "glass pane",
    "stone_hit": "stone slab",
    "rain": "rain",
    "wind": "wind",
    "water_stream": "stream",
    "fire": "fire",
    "clock_tick": "clock",
    "engine_idle": "engine",
    "footsteps": "walker",
    "plucked_string": "string",
    "bell": "bell",
    "bird_chirp": "bird",
    "cricket": "cricket",
    "car_pass": "car",
}


@dataclass
class SourceSketch:
    """One sounding object as the writer needs it (positions: x -1 left edge .. +1 right edge)."""

    cls: str  # class name: keys the vocabulary tables
    family: str  # impact | texture | mechanical | tonal | creature | moving
    kind: str  # discrete | continuous | mixed
    x0: float  # horizontal position at t_start
    x1: float  # horizontal position at t_end (== x0 when static)
    size: float  # apparent size; > 1.1 reads as close, < 0.85 as distant
    t_start: float = 0.0  # seconds: start of the movement / activity
    t_end: float = 0.0  # seconds: end of the movement / activity
    events: list[float] = field(default_factory=list)  # discrete event times, seconds
    curve: list[float] = field(default_factory=list)  # intensity at CURVE_RATE (empty: constant)
    pitch: float = 1.0  # relative pitch; < 0.92 reads as low, > 1.12 as high
    damping: float = 1.0  # relative damping of impacts and tones; > 1.15 short, < 0.9 long
    offscreen: bool = False  # heard, not seen

    def intensity_at(self, t: np.ndarray) -> np.ndarray:
        """Intensity (0..1) at times ``t`` (seconds), linear between control points."""
        t = np.asarray(t, dtype=np.float64)
        if not self.curve:
            return np.ones_like(t)
        return np.interp(t, np.arange(len(self.curve)) / CURVE_RATE, np.asarray(self.curve))


@dataclass
class SceneSketch:
    """A whole clip for the writer: its length, its sources, and the recording's character."""

    duration: float  # seconds
    sources: list[SourceSketch]
    room: float = 0.5  # reverberation, 0 dry .. 1 very reverberant
    hiss: float = 0.0  # background noise, 0 clean .. 1 audible hiss
    tilt: float = 0.0  # spectral tilt, -1 dark .. +1 bright

    def events(self) -> list[tuple[float, str]]:
        """All discrete events as (time, class), sorted by time."""
        return sorted((t, s.cls) for s in self.sources for t in s.events)


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _noun(cls: str) -> list[str]:
    return NOUNS.get(cls) or [f"the sound of {cls.replace('_', ' ')}"]


def _event_noun(cls: str) -> str:
    return EVENT_NOUN.get(cls, "hit")


def _short(cls: str) -> str:
    return SHORT_NAME.get(cls, cls.replace("_", " "))


def _fmt_time(rng: np.random.Generator, t: float) -> str:
    return _pick(rng, ["{:.1f} s", "about {:.1f} s", "{:.1f} seconds", "around {:.1f}s"]).format(t)


def _character(rng: np.random.Generator, src: SourceSketch) -> str:
    bits = []
    if src.pitch < 0.92:
        bits.append(_pick(rng, PITCH_WORDS["low"]))
    elif src.pitch > 1.12:
        bits.append(_pick(rng, PITCH_WORDS["high"]))
    if src.family in ("impact", "tonal"):
        if src.damping > 1.15:
            bits.append(_pick(rng, DAMP_WORDS["short"]))
        elif src.damping < 0.9:
            bits.append(_pick(rng, DAMP_WORDS["long"]))
    return ", ".join(bits)


def semantic_block(rng: np.random.Generator, scene: SceneSketch) -> str:
    """What sounds, from what, and how it sounds."""
    phrases = []
    for src in scene.sources:
        noun = _pick(rng, _noun(src.cls))
        char = _character(rng, src)
        text = f"{noun} ({char})" if char else noun
        if src.offscreen:
            text += _pick(rng, [" heard from off screen", ", off-screen ambience", " coming from outside the frame"])
        phrases.append(text)
    if not phrases:
        return ""
    lead = _pick(rng, ["The scene features", "We hear", "Sounds:", "The audio should contain", "Main sources:"])
    body = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"{lead} {body}."


def _times_phrase(rng: np.random.Generator, src: SourceSketch, duration: float) -> str:
    ev = src.events
    noun = _event_noun(src.cls)
    if not ev:
        return f"no clear {noun}s"
    gaps = np.diff(ev) if len(ev) > 1 else np.array([])
    regular = len(ev) >= 4 and gaps.std() < 0.08 * gaps.mean()
    if regular:
        return _pick(
            rng, ["a {n} every {p:.2f} s from {a} to {b}", "regular {n}s about {p:.2f} s apart, {a} to {b}"]
        ).format(n=noun, p=gaps.mean(), a=_fmt_time(rng, ev[0]), b=_fmt_time(rng, ev[-1]))
    shown = ", ".join(f"{t:.1f}" for t in ev[:12])
    more = f" and {len(ev) - 12} more" if len(ev) > 12 else ""
    return _pick(rng, ["{n}s at {s} s{m}", "{c} {n}s, at {s} s{m}", "{n} onsets at {s} s{m}"]).format(
        n=noun, s=shown, m=more, c=len(ev)
    )


def _continuous_phrase(rng: np.random.Generator, src: SourceSketch, duration: float) -> str:
    name = _short(src.cls)
    if src.cls == "car_pass":
        span = src.t_end - src.t_start
        t_in = src.t_start + span * (0.4 / 2.8)  # x crosses the frame edge (|x| = 1 of 1.4)
        t_mid = src.t_start + span / 2
        t_out = src.t_end - span * (0.4 / 2.8)
        return _pick(
            rng,
            [
                "the car enters at {a}, is closest at {b} and is gone by {c}",
                "the vehicle appears around {a}, passes the middle at {b}, leaves at {c}",
            ],
        ).format(a=_fmt_time(rng, max(t_in, 0.0)), b=_fmt_time(rng, t_mid), c=_fmt_time(rng, min(t_out, duration)))
    t = np.arange(0, duration, 0.25)
    curve = src.intensity_at(t)
    peak = float(t[int(np.argmax(curve))])
    trend = curve[-1] - curve[0]
    shape = (
        "swelling towards the end"
        if trend > 0.25
        else "fading towards the end"
        if trend < -0.25
        else f"loudest around {peak:.1f} s"
    )
    return _pick(rng, ["{n} continuous throughout, {s}", "{n} runs the whole clip, {s}", "constant {n}, {s}"]).format(
        n=name, s=shape
    )


def temporal_block(rng: np.random.Generator, scene: SceneSketch) -> str:
    """When things sound: event times, regularity, continuity, order."""
    parts = []
    for src in scene.sources:
        if src.cls == "fire":
            parts.append(_continuous_phrase(rng, src, scene.duration) + "; " + _times_phrase(rng, src, scene.duration))
        elif src.events or src.kind == "discrete":
            parts.append(_times_phrase(rng, src, scene.duration))
        else:
            parts.append(_continuous_phrase(rng, src, scene.duration))
    ev = scene.events()
    tail = ""
    if len({c for _, c in ev}) >= 2:
        first = ev[0]
        tail = _pick(rng, [" The first event is the {n} at {t}.", " It opens with the {n} at {t}."]).format(
            n=_event_noun(first[1]), t=_fmt_time(rng, first[0])
        )
    return "; ".join(p[0].upper() + p[1:] for p in parts) + "." + tail


def aesthetic_block(rng: np.random.Generator, scene: SceneSketch) -> str:
    """Character of the recording: room, tone, noise, closeness."""
    room = (
        _pick(rng, ["dry", "close-miked and dry", "dead, with almost no reverb"])
        if scene.room < 0.33
        else _pick(rng, ["lightly reverberant", "moderately roomy", "touched by natural room sound"])
        if scene.room < 0.66
        else _pick(rng, ["reverberant", "a long, echoing reverb tail", "spacious and wet, like a large hall"])
    )
    tone = (
        _pick(rng, ["dark", "warm and muffled", "mellow with soft highs"])
        if scene.tilt < -0.33
        else _pick(rng, ["bright", "crisp with airy highs", "sharp and brilliant"])
        if scene.tilt > 0.33
        else _pick(rng, ["balanced in tone", "neutral tone", "natural tonal balance"])
    )
    noise = (
        _pick(rng, ["clean", "noise-free", "pristine"])
        if scene.hiss < 0.35
        else _pick(rng, ["faintly hissy", "slightly noisy", "carrying an audible background hiss"])
    )
    mean_size = float(np.mean([s.size for s in scene.sources if not s.offscreen] or [1.0]))
    dist = (
        _pick(rng, ["close and intimate", "up close", "near and present"])
        if mean_size > 1.1
        else _pick(rng, ["distant", "heard from a distance", "far away and small"])
        if mean_size < 0.85
        else _pick(rng, ["at a medium distance", "neither near nor far"])
    )
    order = [room, tone, noise, dist]
    rng.shuffle(order)
    lead = _pick(rng, ["The sound is", "Aim for a sound that is", "Recording character:", "It should be"])
    return f"{lead} {order[0]}, {order[1]}, {order[2]} and {order[3]}."


def _side(x: float) -> str:
    if x < -1.0 or x > 1.0:
        return "off screen to the " + ("left" if x < 0 else "right")
    if x < -0.55:
        return "far left"
    if x < -0.2:
        return "left"
    if x <= 0.2:
        return "centre"
    return "right" if x <= 0.55 else "far right"


def spatial_block(rng: np.random.Generator, scene: SceneSketch) -> str:
    """Where each source is, how far, and where it moves."""
    parts = []
    for src in scene.sources:
        name = _short(src.cls)
        dist = "close" if src.size > 1.1 else "distant" if src.size < 0.85 else "mid-distance"
        if src.x0 != src.x1:
            a, b = _side(src.x0), _side(src.x1)
            direction = "left to right" if src.x1 > src.x0 else "right to left"
            parts.append(
                _pick(rng, ["the {n} moves {d}, from {a} to {b}, {z}", "{z} {n} travelling {d} ({a} to {b})"]).format(
                    n=name, d=direction, a=a, b=b, z=dist
                )
            )
        else:
            parts.append(
                _pick(rng, ["the {n} sits {s}, {z}", "{z} {n} at {s}", "{n}: {s}, {z}"]).format(
                    n=name, s=_side(src.x0), z=dist
                )
            )
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def write_blocks(scene: SceneSketch, rng: np.random.Generator) -> Cot:
    """The four blocks of ``scene``; the phrasing is drawn from ``rng`` (same rng state, same text)."""
    if not scene.sources:
        return Cot(semantic="", temporal="", aesthetic=aesthetic_block(rng, scene), spatial="")
    return Cot(
        semantic=semantic_block(rng, scene),
        temporal=temporal_block(rng, scene),
        aesthetic=aesthetic_block(rng, scene),
        spatial=spatial_block(rng, scene),
    )
