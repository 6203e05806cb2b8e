"""FoleyWorld frames: shapes, determinism, off-screen sources, and sync of the picture with the events."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.foleyworld.classes import CLASS_NAMES
from trainer.foleyworld.scene import Scene, Source, WorldConfig, sample_scene
from trainer.foleyworld.video import INK, ball_rgb, frame_times, render_frames

PLAIN = {"hue": 0.6, "sat": 0.1, "val": 0.55, "ground": 0.8, "texture": "plain", "tex_seed": 7}


def _scene(sources: list[Source], duration: float = 3.0, fps: float = 24.0, size: int = 96) -> Scene:
    cfg = WorldConfig(duration=duration, fps=fps, width=size, height=size)
    return Scene(seed=0, config=cfg, sources=sources, room=0.0, hiss=0.0, tilt=0.0, background=dict(PLAIN))


def _source(cls: str, events: list[float], duration: float = 3.0, **kw) -> Source:
    params = {"hue": 0.62, "pitch": 1.0, "damping": 1.0, "rpm": 1000.0, "direction": 1, "note_hz": 196.0}
    base = dict(
        cls=cls,
        x0=0.0,
        x1=0.0,
        y=0.6,
        size=1.0,
        t_start=0.0,
        t_end=duration,
        gain_db=0.0,
        events=events,
        event_gain=[1.0] * len(events),
        curve=[0.6] * 20,
        params=params,
    )
    base.update(kw)
    return Source(**base)


def _event_frames(events: list[float], fps: float) -> np.ndarray:
    return np.floor(np.asarray(events) * fps + 0.5).astype(int)


def test_frame_times_are_k_over_fps():
    cfg = WorldConfig(duration=2.0, fps=29.97)
    t = frame_times(cfg)
    assert t.shape == (cfg.n_frames,)
    np.testing.assert_allclose(t, np.arange(cfg.n_frames) / 29.97)


@pytest.mark.parametrize(("width", "height", "fps"), [(32, 32, 24.0), (47, 33, 29.97), (160, 90, 12.5), (40, 64, 60.0)])
def test_shapes_for_resolutions_and_rates(width, height, fps):
    cfg = WorldConfig(duration=2.0, fps=fps, width=width, height=height)
    frames = render_frames(sample_scene(3, cfg))
    assert frames.shape == (cfg.n_frames, height, width, 3)
    assert frames.dtype == np.uint8


def test_same_scene_renders_identical_frames():
    cfg = WorldConfig(duration=2.0)
    for seed in (1, 2):
        a = render_frames(sample_scene(seed, cfg))
        b = render_frames(sample_scene(seed, cfg))
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(render_frames(sample_scene(1, cfg)), render_frames(sample_scene(2, cfg)))


@pytest.mark.parametrize("cls", CLASS_NAMES)
def test_every_class_draws_something(cls):
    kw = {"x0": -1.2, "x1": 1.2, "y": 0.75} if cls == "car_pass" else {}
    src = _source(cls, [0.5, 1.1, 1.7], **kw)
    frames = render_frames(_scene([src]))
    empty = render_frames(_scene([]))
    changed = np.abs(frames.astype(int) - empty).sum(-1) > 30  # (F, H, W)
    assert changed.mean(axis=(1, 2)).max() > 0.005, f"{cls} left no visible trace"


def test_offscreen_sources_are_not_drawn():
    clock = _source("clock_tick", [0.5, 1.0, 1.5])
    rain = _source("rain", [], x0=1.3, x1=1.3, offscreen=True)
    np.testing.assert_array_equal(render_frames(_scene([clock, rain])), render_frames(_scene([clock])))


def _ball_bottom(frames: np.ndarray, color: np.ndarray) -> np.ndarray:
    """Lowest pixel row (F,) showing the ball's colour; -1 where the ball is not visible."""
    near = np.abs(frames.astype(int) - color.round().astype(int)).sum(-1) < 24  # (F, H, W)
    rows = np.arange(frames.shape[1])[None, :, None]
    return np.where(near, rows, -1).max(axis=(1, 2))


@pytest.mark.parametrize("fps", [24.0, 30.0])
def test_impact_ball_is_lowest_on_the_frame_nearest_each_event(fps):
    events = [0.9, 1.3, 1.6, 2.45]
    src = _source("wood_knock", events, x0=-0.2, x1=-0.2)
    frames = render_frames(_scene([src], fps=fps))
    bottom = _ball_bottom(frames, ball_rgb(src))
    kf = _event_frames(events, fps)
    contact = bottom[kf[0]]
    assert 0.6 * 96 - 2.5 <= contact < 0.6 * 96, "the ball touches the slab top (y = 0.6)"
    np.testing.assert_array_equal(bottom[kf], contact)  # touching at every event
    lowest = set(np.flatnonzero(bottom >= contact))
    assert lowest == set(kf) | set(range(kf[-1], len(frames))), "low only at events, then resting"
    for k in kf:  # strictly higher on the neighbouring frames
        assert bottom[k - 1] < contact
    for k in kf[:-1]:
        assert bottom[k + 1] < contact
    assert (bottom[: kf[0] - int(0.4 * fps)] == -1).all(), "before its first drop the ball is above the frame"


def _changed_frames(frames: np.ndarray) -> np.ndarray:
    """Indices k where frame k differs from frame k - 1."""
    diff = np.abs(np.diff(frames.astype(np.int16), axis=0)).reshape(len(frames) - 1, -1).max(1)
    return np.flatnonzero(diff > 0) + 1


def test_clock_changes_only_on_tick_frames():
    events = [0.4, 0.9, 1.45, 2.0, 2.5]
    frames = render_frames(_scene([_source("clock_tick", events)]))
    np.testing.assert_array_equal(_changed_frames(frames), _event_frames(events, 24.0))


@pytest.mark.parametrize(("cls", "dur"), [("bird_chirp", 0.15), ("cricket", 0.25)])
def test_creatures_move_only_while_calling(cls, dur):
    events = [0.5, 1.4, 2.2]
    fps = 24.0
    frames = render_frames(_scene([_source(cls, events)], fps=fps))
    kf = _event_frames(events, fps)
    window = {int(k + d) for k in kf for d in range(int(round(dur * fps)) + 1)}  # the call and the return to rest
    changed = set(_changed_frames(frames))
    assert set(kf) <= changed, "the call starts on the event's frame"
    assert changed <= window, f"{cls} moved outside its calls: {sorted(changed - window)}"


def test_footsteps_plant_a_foot_on_each_step():
    events = [0.6, 1.1, 1.6, 2.1]
    fps = 24.0
    src = _source("footsteps", events, x0=-0.3, x1=0.3, y=0.65)
    frames = render_frames(_scene([src], fps=fps))
    shoes = np.abs(frames.astype(int) - INK.astype(int)).sum(-1) < 12  # (F, H, W) both shoes are ink-black
    rows = np.arange(96)[None, :, None]
    top = np.where(shoes, rows, 999).min(axis=(1, 2))  # highest shoe pixel per frame
    kf = _event_frames(events, fps)
    assert (top[kf] == top[kf[0]]).all(), "both feet are on the ground on every step's frame"
    for a, b in zip(kf[:-1], kf[1:]):
        assert top[a + 1 : b].min() <= top[kf[0]] - 4, "a foot is lifted between steps"


def test_unknown_class_is_refused():
    with pytest.raises(ValueError, match="cannot draw"):
        render_frames(_scene([_source("theremin", [])]))
