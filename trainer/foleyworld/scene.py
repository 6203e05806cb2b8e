"""Scene parameters of FoleyWorld and the seeded sampler that draws them.

A `Scene` is the single source of truth for a clip: the video renderer (`video.py`), the audio
synthesiser (`synth.py`) and the CoT writer (`cot.py`) all read the same parameters, so every sound
has a visible cause at the same instant. Coordinates: ``x`` runs from -1 (left edge) to +1 (right
edge); values beyond +-1 are off screen. ``y`` runs from 0 (top) to 1 (bottom). ``size`` is the
apparent size (1 = nominal); the source's distance is ``1 / size``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from engine.planner.writer import CURVE_RATE  # control points per second of every intensity curve
from trainer.foleyworld.classes import CLASSES, HELD_OUT_PAIRS, has_events

GLOBAL_MIN_GAP = 0.18  # seconds between discrete events of different sources (onset salience)
EDGE_IN, EDGE_OUT = 0.25, 0.35  # no event before EDGE_IN s or after duration - EDGE_OUT s


@dataclass
class WorldConfig:
    """How clips are drawn; the defaults are FoleyWorld's standard clip."""

    duration: float = 9.0  # seconds
    fps: float = 24.0  # video frames per second
    width: int = 96  # video width in pixels
    height: int = 96  # video height in pixels
    sample_rate: int = 44100  # audio samples per second (stereo)
    offscreen_prob: float = 0.08  # chance that a multi-source scene adds unseen ambience

    def __post_init__(self) -> None:
        if not 2.0 <= self.duration <= 12.0:
            raise ValueError(f"FoleyWorld clips last 2 to 12 s, got {self.duration=}")
        if self.fps <= 0 or self.width < 16 or self.height < 16 or self.sample_rate < 8000:
            raise ValueError(f"bad clip format: {self.fps=} {self.width=} {self.height=} {self.sample_rate=}")

    @property
    def n_samples(self) -> int:
        """Audio length in samples, exactly the clip's duration."""
        return int(round(self.duration * self.sample_rate))

    @property
    def n_frames(self) -> int:
        """Number of video frames covering the duration."""
        return int(round(self.duration * self.fps))


@dataclass
class Source:
    """One sounding object and everything needed to draw and synthesise it."""

    cls: str  # class name (see classes.CLASSES)
    x0: float  # horizontal position at t_start
    x1: float  # horizontal position at t_end (== x0 for static sources)
    y: float  # vertical centre, 0 top .. 1 bottom
    size: float  # apparent size; distance = 1 / size
    t_start: float  # when the source becomes active / starts moving, seconds
    t_end: float  # when it stops, seconds
    gain_db: float  # per-instance loudness offset
    events: list[float] = field(default_factory=list)  # discrete event times, seconds
    event_gain: list[float] = field(default_factory=list)  # linear amplitude per event (0..1]
    curve: list[float] = field(default_factory=list)  # intensity control points at CURVE_RATE
    params: dict = field(default_factory=dict)  # class-specific synthesis/drawing parameters
    offscreen: bool = False  # heard but not seen (ambience stated as off-screen)

    @property
    def distance(self) -> float:
        """Distance in nominal units (1 = reference distance)."""
        return 1.0 / self.size

    def x_at(self, t: np.ndarray | float) -> np.ndarray:
        """Horizontal position at time(s) ``t`` (linear motion between t_start and t_end)."""
        t = np.asarray(t, dtype=np.float64)
        span = max(self.t_end - self.t_start, 1e-6)
        u = np.clip((t - self.t_start) / span, 0.0, 1.0)
        return self.x0 + (self.x1 - self.x0) * u

    def intensity_at(self, t: np.ndarray | float) -> np.ndarray:
        """Intensity curve (0..1) at time(s) ``t``, linear between control points."""
        t = np.asarray(t, dtype=np.float64)
        if not self.curve:
            return np.ones_like(t)
        grid = np.arange(len(self.curve)) / CURVE_RATE
        return np.interp(t, grid, np.asarray(self.curve))


@dataclass
class Scene:
    """A whole clip: format, room, and 1 to 3 sources."""

    seed: int
    config: WorldConfig
    sources: list[Source]
    room: float  # reverberation amount, 0 dry .. 1 very reverberant
    hiss: float  # background noise level, 0 clean .. 1 audible hiss
    tilt: float  # spectral tilt of the recording, -1 dark .. +1 bright
    background: dict = field(default_factory=dict)  # colours and texture of the backdrop

    @property
    def classes(self) -> list[str]:
        """Distinct class names, in source order."""
        return list(dict.fromkeys(s.cls for s in self.sources))

    def events(self) -> list[dict]:
        """All discrete events sorted by time: time, class, source index, x at that time."""
        out = [
            {"time": t, "cls": s.cls, "source": i, "x": float(s.x_at(t)), "gain": g}
            for i, s in enumerate(self.sources)
            for t, g in zip(s.events, s.event_gain)
        ]
        return sorted(out, key=lambda e: e["time"])

    def to_dict(self) -> dict:
        """JSON-ready description (lists and plain numbers only)."""
        d = asdict(self)
        d["classes"] = self.classes
        d["events"] = self.events()
        return d


def smooth_curve(rng: np.random.Generator, duration: float, lo: float, hi: float, wobble: float) -> list[float]:
    """Random smooth curve in [lo, hi]: a random walk low-passed and rescaled.

    ``wobble`` (0..1) is how much the curve moves over the clip.
    """
    n = int(np.ceil((duration + 1.0) * CURVE_RATE)) + 1
    walk = np.cumsum(rng.normal(0.0, 1.0, n))
    kernel = np.hanning(7)
    walk = np.convolve(np.pad(walk, 3, mode="edge"), kernel / kernel.sum(), mode="valid")
    walk = (walk - walk.min()) / (np.ptp(walk) + 1e-9)
    centre = rng.uniform(0.3, 0.7)
    vals = centre + wobble * (walk - 0.5)
    return [round(float(v), 4) for v in np.clip(lo + (hi - lo) * vals, lo, hi)]


def _event_times(rng: np.random.Generator, cls: str, duration: float, start: float, end: float) -> list[float]:
    """Draw a class's event times inside [start, end] with its own minimum gap."""
    spec = CLASSES[cls]
    lo, hi = max(start, EDGE_IN), min(end, duration - EDGE_OUT)
    if hi - lo < 0.05:
        return []
    rate = rng.uniform(*spec.rate)
    if cls in ("clock_tick", "footsteps"):  # periodic with a small jitter
        period = 1.0 / rate
        t0 = lo + rng.uniform(0.0, period)
        times = np.arange(t0, hi, period)
        jitter = 0.0 if cls == "clock_tick" else 0.03
        times = times + rng.uniform(-jitter, jitter, len(times))
    elif spec.family == "impact":  # drops, each bouncing 1 to 3 times with shrinking intervals
        times, t = [], lo + rng.uniform(0.0, 0.6)
        while t < hi:
            times.append(t)
            gap = rng.uniform(0.35, 0.6)
            for _ in range(rng.integers(0, 3)):
                t += gap
                gap *= 0.75
                if t < hi:
                    times.append(t)
            t += rng.exponential(1.0 / rate) + 0.5
        times = np.array(times)
    else:  # Poisson with a dead time
        n = rng.poisson(rate * (hi - lo)) + 1
        times = np.sort(rng.uniform(lo, hi, n))
    kept: list[float] = []
    for t in times:
        if lo <= t <= hi and (not kept or t - kept[-1] >= spec.min_gap):
            kept.append(round(float(t), 4))
    return kept


def _class_params(rng: np.random.Generator, cls: str) -> dict:
    """Per-instance variation: pitch, damping, colours."""
    hue = float(rng.uniform(0, 1))
    p = {"pitch": float(rng.uniform(0.8, 1.25)), "damping": float(rng.uniform(0.75, 1.35)), "hue": hue}
    if cls == "engine_idle":
        p["rpm"] = float(rng.uniform(700, 1400))
    if cls == "car_pass":
        p["direction"] = int(rng.choice([-1, 1]))
    if cls == "plucked_string":
        p["note_hz"] = float(rng.choice([110.0, 146.8, 164.8, 196.0, 220.0, 246.9, 293.7]))
    if cls == "bell":
        p["note_hz"] = float(rng.uniform(300, 700))
    return p


def _make_source(rng: np.random.Generator, cls: str, cfg: WorldConfig, x: float) -> Source:
    spec = CLASSES[cls]
    d = cfg.duration
    size = float(rng.uniform(0.65, 1.35))
    src = Source(
        cls=cls,
        x0=x,
        x1=x,
        y=0.6,
        size=size,
        t_start=0.0,
        t_end=d,
        gain_db=float(rng.uniform(-4.0, 0.0)),
        params=_class_params(rng, cls),
    )
    if cls == "car_pass":  # crosses the whole frame, centre pass somewhere in the middle of the clip
        direction = src.params["direction"]
        cross = rng.uniform(2.5, 6.0)  # seconds to go from x=-1 to x=+1
        t_mid = rng.uniform(0.35, 0.65) * d
        src.t_start, src.t_end = t_mid - 1.4 * cross / 2, t_mid + 1.4 * cross / 2
        src.x0, src.x1 = -1.4 * direction, 1.4 * direction
        src.y = 0.75
    elif cls == "footsteps":  # walks across part of the frame
        direction = float(rng.choice([-1.0, 1.0]))
        travel = rng.uniform(0.5, 1.2)
        src.x0 = float(np.clip(x - direction * travel / 2, -0.85, 0.85))
        src.x1 = float(np.clip(x + direction * travel / 2, -0.85, 0.85))
        src.y = 0.65
    elif cls == "bird_chirp":
        src.y = float(rng.uniform(0.2, 0.4))
    if spec.kind in ("continuous", "mixed"):
        src.curve = smooth_curve(rng, d, 0.35, 1.0, rng.uniform(0.2, 0.9))
    if has_events(cls):
        src.events = _event_times(rng, cls, d, src.t_start, src.t_end)
        src.event_gain = [round(float(g), 3) for g in rng.uniform(0.6, 1.0, len(src.events))]
        if spec.family == "impact":  # later bounces of one drop are softer
            src.event_gain = _bounce_gains(src.events, src.event_gain)
    return src


def _bounce_gains(times: list[float], gains: list[float]) -> list[float]:
    out = list(gains)
    for i in range(1, len(times)):
        if times[i] - times[i - 1] < 0.62:  # a bounce of the previous drop
            out[i] = round(max(out[i - 1] * 0.7, 0.55), 3)
    return out


def _deconflict(sources: list[Source]) -> None:
    """Drop events that fall within GLOBAL_MIN_GAP of another source's event.

    Periodic sources (clock, footsteps) claim their times first so they stay regular.
    """
    taken: list[float] = []
    for s in sorted(sources, key=lambda s: s.cls not in ("clock_tick", "footsteps")):
        keep = [(t, g) for t, g in zip(s.events, s.event_gain) if all(abs(t - u) >= GLOBAL_MIN_GAP for u in taken)]
        s.events = [t for t, _ in keep]
        s.event_gain = [g for _, g in keep]
        taken.extend(s.events)


def _positions(rng: np.random.Generator, n: int) -> list[float]:
    """Horizontal slots spread over the frame so objects rarely overlap."""
    if n == 1:
        return [
            float(rng.choice([-1, 1]) * rng.uniform(0.3, 0.75)) if rng.random() < 0.8 else float(rng.uniform(-0.2, 0.2))
        ]
    slots = np.linspace(-0.62, 0.62, n) + rng.uniform(-0.1, 0.1, n)
    return [float(v) for v in rng.permutation(slots)]


def choose_classes(rng: np.random.Generator, n: int, split: str) -> list[str]:
    """Distinct classes for one scene, honouring the held-out pairs of the split."""
    names = list(CLASSES)
    if split == "test-multi" and n >= 2 and rng.random() < 0.5:
        pair = sorted(sorted(p) for p in HELD_OUT_PAIRS)[rng.integers(len(HELD_OUT_PAIRS))]
        rest = [c for c in names if c not in pair]
        return [str(c) for c in list(pair) + list(rng.choice(rest, n - 2, replace=False))]
    while True:
        pick = [str(c) for c in rng.choice(names, n, replace=False)]
        moving = sum(CLASSES[c].moving for c in pick)
        pairs = {frozenset((a, b)) for a in pick for b in pick if a != b}
        if moving <= 1 and (split == "test-multi" or not pairs & HELD_OUT_PAIRS):
            return pick


def sample_scene(
    seed: int, cfg: WorldConfig | None = None, split: str = "train", n_sources: int | None = None
) -> Scene:
    """Draw a scene deterministically from ``seed``.

    ``split`` only affects which class pairs may meet; ``n_sources`` forces 1-3 sources.
    """
    cfg = cfg or WorldConfig()
    rng = np.random.default_rng(seed)
    n = n_sources or int(rng.choice([1, 2, 2, 3]))
    if not 1 <= n <= 3:
        raise ValueError(f"scenes hold 1 to 3 sources, got {n=}")
    classes = choose_classes(rng, n, split)
    xs = _positions(rng, n)
    sources = [_make_source(rng, c, cfg, x) for c, x in zip(classes, xs)]
    _deconflict(sources)
    if n >= 2 and rng.random() < cfg.offscreen_prob:
        amb = str(rng.choice(["rain", "wind"]))
        pairs = {frozenset((amb, c)) for c in classes}
        if amb not in classes and (split == "test-multi" or not pairs & HELD_OUT_PAIRS):
            s = _make_source(rng, amb, cfg, float(rng.choice([-1.0, 1.0]) * 1.3))
            s.offscreen, s.gain_db = True, s.gain_db - 4.0
            sources.append(s)
    background = {
        "hue": float(rng.uniform(0, 1)),
        "sat": float(rng.uniform(0.1, 0.45)),
        "val": float(rng.uniform(0.25, 0.8)),
        "ground": float(rng.uniform(0.72, 0.85)),
        "texture": str(rng.choice(["plain", "stripes", "noise", "gradient"])),
        "tex_seed": int(rng.integers(0, 2**31 - 1)),
    }
    return Scene(
        seed=seed,
        config=cfg,
        sources=sources,
        room=float(rng.uniform(0, 1)),
        hiss=float(rng.uniform(0, 1) ** 2),
        tilt=float(rng.uniform(-1, 1)),
        background=background,
    )
