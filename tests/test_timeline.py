"""The Temporal block's timeline: the reader against the CoT writer's phrasings and FoleyWorld's true
event times, the per-frame track, and the generator path that takes it (neutral at first, null when the
text is dropped, kept by the text-only branch), in training batches and in renders."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.cot import Cot
from engine.generator import GENERATOR_PRESETS, Generator
from engine.timeline import ONSET_CHANNELS, TIMELINE_DIM, read_temporal, shift_temporal, timeline_track
from trainer.foleyworld.ground_truth import write_cot
from trainer.foleyworld.splits import clip_scene

RATE = 44100 / 2048  # the default codec's latent frames per second

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------- reader


@pytest.mark.parametrize(
    ("text", "onsets", "others"),
    [
        ("9 chirps, at 0.3, 0.9, 2.6 s; 5 clangs, at 1.3, 3.0 s.", [[0.3, 0.9, 2.6], [1.3, 3.0]], []),
        ("Knocks at about 4.2 s", [[4.2]], []),
        ("A knock every 0.50 s from about 1.2 s to 3.2 seconds.", [[1.2, 1.7, 2.2, 2.7, 3.2]], []),
        ("Regular taps about 0.25 s apart, 0.5 s to 1.5 s", [[0.5, 0.75, 1.0, 1.25, 1.5]], []),
        ("Rain continuous throughout, loudest around 4.0 s", [], [4.0]),
        ("The car enters at 1.2 s, is closest at 3.0 s and is gone by around 5.5s.", [[1.2, 3.0]], [5.5]),
        # the closing summary repeats the first onset and is skipped; counts and "12 more" are not times
        ("13 taps at 0.1, 0.5 s and 11 more. The first event is the tap at 0.1 s.", [[0.1, 0.5]], []),
        ("No clear chirps", [], []),
        ("", [], []),
    ],
)
def test_the_reader_finds_onsets_and_other_times(text, onsets, others):
    times = read_temporal(text)
    assert times.onsets == onsets
    assert times.others == others
    assert times.empty == (not onsets and not others)


@pytest.mark.parametrize("split", ["train", "test-single", "test-multi"])
def test_the_reader_recovers_foleyworld_event_times_from_the_ground_truth_cot(split):
    """Every source whose times the writer lists (up to 12, to 0.1 s, or as a regular series) is read back,
    all in one clause's group, within rounding of its true events."""
    checked = 0
    for index in range(40):
        scene = clip_scene(split, index)
        groups = [np.asarray(g) for g in read_temporal(write_cot(scene).temporal).onsets]
        for src in scene.sources:
            true = np.asarray(src.events, float)
            if not 1 <= len(true) <= 12 or src.cls == "car_pass":
                continue
            # rounding to 0.1 s, and a series' period rounded to 0.01 s over up to 11 steps
            err = [np.abs(g[:, None] - true[None]).min(0).max() if len(g) == len(true) else 9.0 for g in groups]
            assert min(err, default=9.0) <= 0.051 + 0.005 * (len(true) - 1), (split, index, src.cls, groups)
            checked += 1
    assert checked >= 20


def test_the_track_puts_each_time_on_its_frame_and_channel():
    text = "Knocks at 1.0, 2.0 s; claps at 3.0 s; wind loudest around 0.5 s"
    track = timeline_track(text, 100, RATE)
    assert track.shape == (100, TIMELINE_DIM) and track.dtype == np.float32
    peaks = lambda ch: sorted(
        np.flatnonzero((track[1:-1, ch] > track[:-2, ch]) & (track[1:-1, ch] >= track[2:, ch])) + 1
    )
    assert peaks(0) == [round(1.0 * RATE), round(2.0 * RATE)]
    assert peaks(1) == [round(3.0 * RATE)]
    assert peaks(ONSET_CHANNELS) == [round(0.5 * RATE)]
    assert not track[:, 2:ONSET_CHANNELS].any()  # no third or fourth clause
    assert np.all(track[:, -1] == 1.0)  # the block names times
    assert track.max() <= 1.0 and track[round(2.0 * RATE), 0] > 0.9
    assert not timeline_track("a dog barks now and then", 100, RATE).any()  # no times: an all-zero track
    late = timeline_track("Knocks at 1.0, 20.0 s", 100, RATE)  # 20 s is past the 4.6 s of 100 frames
    assert late[:, 0].sum() == pytest.approx(track[:, 0].sum() / 2, rel=0.01)  # only the 1.0 s bump


def test_a_window_of_the_track_is_the_same_as_the_slice_of_the_whole():
    text = "Knocks at 1.0, 6.5, 9.2 s; hiss loudest around 7.0 s"
    whole = timeline_track(text, 300, RATE)
    start = 120
    part = timeline_track(text, start + 80, RATE)[start:]
    np.testing.assert_array_equal(part, whole[start : start + 80])


# ---------------------------------------------------------------------------------------- generator


def _inputs(cfg, n=11, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    blocks = [(torch.randn(b, 3, cfg.text_dim, generator=g), torch.ones(b, 3, dtype=torch.bool)) for _ in range(4)]
    video = torch.randn(b, 4, cfg.video_dim, generator=g)
    sync = torch.randn(b, n, cfg.sync_dim, generator=g)
    x = torch.randn(b, cfg.latent_dim, n, generator=g)
    return blocks, video, sync, x, torch.full((b,), 0.4)


def _timeline_model(seed=0) -> Generator:
    torch.manual_seed(seed)
    return Generator(config=replace(GENERATOR_PRESETS["tiny"], timeline_dim=TIMELINE_DIM))


def test_a_timeline_model_starts_as_the_same_model_without_one():
    torch.manual_seed(0)
    plain = Generator(config=GENERATOR_PRESETS["tiny"])
    timed = _timeline_model()
    for k, v in plain.state_dict().items():
        assert torch.equal(timed.state_dict()[k], v), k
    blocks, video, sync, x, t = _inputs(plain.config)
    track = torch.rand(2, 11, TIMELINE_DIM)
    with torch.no_grad():
        v0 = plain.velocity(x, t, plain.prepare_conditions(video, None, sync, blocks, 11))
        v1 = timed.velocity(x, t, timed.prepare_conditions(video, None, sync, blocks, 11, track))
    torch.testing.assert_close(v1, v0, rtol=0, atol=0)  # the new path adds nothing until it is trained


def test_the_timeline_moves_the_velocity_and_goes_with_the_text():
    gen = _timeline_model()
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    blocks, video, sync, x, t = _inputs(gen.config)
    a = torch.from_numpy(timeline_track("Knocks at 0.1 s", 11, RATE))[None].repeat(2, 1, 1)
    b = torch.from_numpy(timeline_track("Knocks at 0.4 s", 11, RATE))[None].repeat(2, 1, 1)
    with torch.no_grad():
        ca, cb = (gen.prepare_conditions(video, None, sync, blocks, 11, tl) for tl in (a, b))
        assert not torch.allclose(gen.velocity(x, t, ca), gen.velocity(x, t, cb))
        # dropping the text drops its timeline: the unconditional branch is the same whatever the times
        torch.testing.assert_close(gen.velocity(x, t, gen.null_like(ca)), gen.velocity(x, t, gen.null_like(cb)))
        # the text-only branch of split guidance keeps the text, so its times too
        assert not torch.allclose(
            gen.velocity(x, t, gen.text_only_like(ca)), gen.velocity(x, t, gen.text_only_like(cb))
        )
        none = gen.prepare_conditions(video, None, sync, blocks, 11)  # no track given: the null embedding
        torch.testing.assert_close(none.timeline, gen.null_timeline.expand(2, 11, -1))
    with pytest.raises(ValueError, match="timeline must be"):
        gen.prepare_conditions(video, None, sync, blocks, 11, a[:, :5])


def test_a_render_follows_the_written_times(tmp_path):
    from engine.bundle import ModelBundle
    from engine.pipeline import RenderSettings, prepare_video, render
    from tests.bundles import tiny_bundle
    from tests.media_files import write_video

    base = tiny_bundle()
    gen = Generator(config=replace(base.generator.config, timeline_dim=TIMELINE_DIM))
    gen.load_state_dict(base.generator.state_dict(), strict=False)
    with torch.no_grad():
        for p in (gen.timeline_in.weight, gen.timeline_gate.value.weight, gen.null_timeline):
            p.normal_(0, 0.5)
    bundle = ModelBundle(base.codec, gen, base.video_encoder, name="timeline-test")
    video = tmp_path / "clip.mp4"
    write_video(video, fmt="mp4", vcodec="libx264", seconds=3.0)
    prepared = prepare_video(video, bundle)
    settings = RenderSettings(steps=4, seed=3)
    cot = lambda times: Cot(semantic="a knock", temporal=f"Knocks at {times} s", aesthetic="dry", spatial="centre")
    first = render(prepared, cot("0.5"), bundle, settings)
    again = render(prepared, cot("0.5"), bundle, settings)
    moved = render(prepared, cot("2.0"), bundle, settings)
    assert first.shape == (prepared.n_samples, 2)
    np.testing.assert_array_equal(first, again)  # still reproducible
    assert np.abs(first - moved).max() > 1e-4  # editing a time changes the take


def test_moving_the_times_moves_what_the_reader_reads_and_nothing_else():
    text = (
        "9 chirps, at 0.3, 0.9, 2.6 s; a knock every 0.50 s from about 1.2 s to 3.2 seconds; "
        "rain loudest around 4.0 s. The first event is the chirp at about 0.3 s."
    )
    moved = shift_temporal(text, 0.5)
    assert moved == (
        "9 chirps, at 0.8, 1.4, 3.1 s; a knock every 0.50 s from about 1.7 s to 3.7 seconds; "
        "rain loudest around 4.5 s. The first event is the chirp at about 0.8 s."
    )
    before, after = read_temporal(text), read_temporal(moved)
    for a, b in zip(before.onsets, after.onsets, strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a) + 0.5, atol=1e-9)
    assert after.others == [4.5]
    assert shift_temporal("Knocks at 0.2, 1.0 s", -0.5) == "Knocks at 0.0, 0.5 s"  # nothing before the start
    assert shift_temporal("no times here, 12 more", 1.0) == "no times here, 12 more"
