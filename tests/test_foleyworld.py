"""FoleyWorld: classes, scenes, audio, CoT and splits."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest

from engine.bench.onsets import detect_onsets, onset_f1
from trainer.foleyworld.classes import CLASS_NAMES, CLASSES, FAMILIES, HELD_OUT_PAIRS
from trainer.foleyworld.ground_truth import write_cot
from trainer.foleyworld.scene import GLOBAL_MIN_GAP, Source, WorldConfig, sample_scene
from trainer.foleyworld.splits import SPLIT_SEED_BASE, clip_seed, make_clip
from trainer.foleyworld.synth import render_audio


def test_at_least_16_classes_in_5_families_with_4_impact_materials():
    assert len(CLASS_NAMES) >= 16
    assert len(FAMILIES) >= 5
    materials = {c.material for c in CLASSES.values() if c.family == "impact"}
    assert len(materials) >= 4


def test_same_seed_gives_byte_identical_audio():
    a = make_clip("val", 3).audio.audio
    b = make_clip("val", 3).audio.audio
    assert hashlib.sha256(a.tobytes()).hexdigest() == hashlib.sha256(b.tobytes()).hexdigest()
    c = make_clip("val", 4).audio.audio
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("duration,sr", [(2.0, 44100), (5.37, 22050), (12.0, 16000)])
def test_audio_is_exactly_the_clip_length(duration, sr):
    cfg = WorldConfig(duration=duration, sample_rate=sr)
    audio = render_audio(sample_scene(11, cfg)).audio
    assert audio.shape == (round(duration * sr), 2)
    assert audio.dtype == np.float32
    assert np.abs(audio).max() <= 0.95 + 1e-6


def test_config_rejects_out_of_range_duration():
    with pytest.raises(ValueError, match="2 to 12"):
        WorldConfig(duration=30.0)


def test_splits_have_disjoint_seed_ranges():
    bases = sorted(SPLIT_SEED_BASE.values())
    assert all(b - a >= 10_000_000 for a, b in zip(bases, bases[1:]))
    assert clip_seed("train", 5) != clip_seed("val", 5)
    with pytest.raises(ValueError, match="unknown split"):
        clip_seed("test", 0)


def test_source_counts_per_split():
    for i in range(20):
        assert len(make_clip("test-single", i).scene.sources) == 1
    for i in range(20):
        n = len([s for s in make_clip("test-multi", i).scene.sources if not s.offscreen])
        assert 2 <= n <= 3


def test_held_out_pairs_never_meet_in_train_but_appear_in_test_multi():
    for seed in range(400):
        classes = set(sample_scene(seed, split="train").classes)
        assert not any(pair <= classes for pair in HELD_OUT_PAIRS)
    seen = sum(
        any(p <= set(sample_scene(seed, split="test-multi", n_sources=2).classes) for p in HELD_OUT_PAIRS)
        for seed in range(40)
    )
    assert seen >= 10


def test_events_respect_minimum_gaps():
    for seed in range(100):
        scene = sample_scene(seed)
        times = sorted(e["time"] for e in scene.events())
        assert all(b - a >= GLOBAL_MIN_GAP - 1e-9 for a, b in zip(times, times[1:]))
        for e in scene.events():
            assert 0.25 <= e["time"] <= scene.config.duration - 0.35


def _single(cls: str, x: float, seed: int = 0) -> tuple:
    cfg = WorldConfig(duration=4.0)
    scene = sample_scene(seed, cfg, n_sources=1)
    src = scene.sources[0]
    new = Source(
        cls=cls,
        x0=x,
        x1=x,
        y=0.6,
        size=1.0,
        t_start=0.0,
        t_end=4.0,
        gain_db=0.0,
        events=[0.5, 1.5, 2.5, 3.2],
        event_gain=[1.0] * 4,
        params=dict(src.params, note_hz=220.0, rpm=900.0),
    )
    scene = replace(scene, sources=[new], room=0.1, hiss=0.0)
    return scene, render_audio(scene)


@pytest.mark.parametrize("cls", ["wood_knock", "metal_clang", "clock_tick", "bird_chirp", "plucked_string", "bell"])
def test_discrete_events_are_heard_at_their_times(cls):
    scene, r = _single(cls, 0.0)
    det = detect_onsets(r.audio, scene.config.sample_rate)
    assert onset_f1(det, np.array(scene.sources[0].events), 0.05)["f1"] >= 0.85


def test_position_sets_level_and_time_difference():
    scene, r = _single("wood_knock", -0.8)
    left, right = r.audio[:, 0], r.audio[:, 1]
    assert (left**2).sum() > 4 * (right**2).sum()  # > 6 dB louder on the side of the source
    corr = np.correlate(right[20000:30000], left[20000:30000], mode="full")
    lag = int(np.argmax(corr)) - (10000 - 1)
    assert lag > 0  # the right channel is late for a source on the left


def test_moving_car_pans_across():
    cfg = WorldConfig(duration=8.0)
    for seed in range(200):
        scene = sample_scene(seed, cfg, n_sources=1)
        if scene.sources[0].cls == "car_pass":
            break
    else:
        pytest.skip("no car in the first 200 seeds")
    scene = replace(scene, room=0.0)
    r = render_audio(scene)
    x = r.track_x[0]
    e = r.track_energy[0]
    active = e > 0.05 * e.max()
    sr = cfg.sample_rate
    hop = sr // 10
    frames = r.audio[: len(e) * hop].reshape(len(e), hop, 2)
    balance = (frames[..., 1] ** 2).mean(1) - (frames[..., 0] ** 2).mean(1)
    agree = np.sign(balance[active & (np.abs(x) > 0.3)]) == np.sign(x[active & (np.abs(x) > 0.3)])
    assert agree.mean() > 0.9


def test_cot_has_four_blocks_with_varied_phrasing():
    cots = [write_cot(sample_scene(s)) for s in range(60)]
    for c in cots:
        assert all(len(b) > 10 for b in c.blocks())
    leads = {c.semantic.split(" ")[0] for c in cots}
    assert len(leads) >= 4  # several templates are in use
    aest = {c.aesthetic for c in cots}
    assert len(aest) >= 40


def test_cot_blocks_speak_of_their_own_dimension():
    scene = sample_scene(7)
    cot = write_cot(scene)
    ev = scene.events()
    if ev:
        assert f"{ev[0]['time']:.1f}" in cot.temporal
    assert any(w in cot.spatial for w in ("left", "right", "centre"))
    assert any(w in cot.aesthetic for w in ("dry", "reverb", "room", "hall", "echo", "wet", "dead"))
