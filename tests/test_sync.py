"""Sync features with the planner's cues: resampling, widths, bundles that use them, the cache and the
trained model folder."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.bundle import CUES_FILE, PLANNER_FILE, ModelBundle, finish_latent, load_bundle, save_bundle
from engine.codec import CODEC_PRESETS, Codec, save_codec
from engine.errors import UserInputError
from engine.media import write_mp4
from engine.motion import SYNC_DIM, motion_features
from engine.pipeline import RenderSettings, prepare_video, render
from engine.planner.network import load_planner_net, save_planner
from engine.sync import (
    CUES_PER_CLASS,
    cue_dim,
    cues_at_latent_rate,
    event_gate,
    frame_cues,
    sync_dim,
    sync_features,
)
from tests.bundles import tiny_bundle, tiny_planner
from trainer.feature_cache import FeatureConfig, FeatureDataset, build_features, file_sha256
from trainer.foleyworld.scene import WorldConfig, sample_scene
from trainer.foleyworld.video import render_frames
from trainer.ingest import state_digest
from trainer.pretrain import PretrainConfig, pretrain

pytestmark = pytest.mark.usefixtures("one_thread")
LATENT_RATE = 44100 / 2048


def test_event_cue_survives_resampling_by_the_interval_maximum():
    # one class, a one-frame event at planner frame 30 (1.25 s) and a constant visibility of 0.8
    cues = np.zeros((48, 1, CUES_PER_CLASS), np.float32)
    cues[:, 0, 0] = 0.8
    cues[30, 0, 1] = 1.0
    out = cues_at_latent_rate(cues, 24.0, LATENT_RATE, 43)
    assert out.shape == (43, CUES_PER_CLASS)
    hit = int(np.floor(30 / 24.0 * LATENT_RATE))  # the latent frame whose interval holds 1.25 s
    assert out[hit, 1] == 1.0
    assert out[np.arange(43) != hit, 1].max() < 1.0  # elsewhere only the interpolation's shoulders
    np.testing.assert_allclose(out[:, 0], 0.8, rtol=1e-6)


def test_cues_of_an_unseen_class_are_zero():
    net = tiny_planner()
    with torch.no_grad():
        net.head.bias.view(net.config.n_classes, -1)[:, 0] = -30.0  # every class surely invisible
    frames = np.random.default_rng(0).integers(0, 255, (12, 64, 64, 3), dtype=np.uint8)
    cues = frame_cues(net, frames)
    assert cues.shape == (12, net.config.n_classes, CUES_PER_CLASS)
    assert np.abs(cues[..., [0, 2, 3, 4]]).max() < 1e-9  # visibility and everything weighted by it
    assert ((cues[..., 1] > 0) & (cues[..., 1] < 1)).all()  # the event probability stands on its own


def test_sync_features_are_motion_then_cues():
    net = tiny_planner()
    native = np.random.default_rng(1).integers(0, 255, (48, 64, 64, 3), dtype=np.uint8)
    times = np.arange(48) / 24.0
    with_cues = sync_features(native, times, 2.0, LATENT_RATE, 43, net)
    assert with_cues.shape == (43, SYNC_DIM + cue_dim(net)) == (43, sync_dim(net))
    np.testing.assert_array_equal(with_cues[:, :SYNC_DIM], motion_features(native, times, LATENT_RATE, 43))
    np.testing.assert_array_equal(sync_features(native, times, 2.0, LATENT_RATE, 43, None), with_cues[:, :SYNC_DIM])


def test_event_gate_is_open_near_a_likely_event_of_any_class():
    sync = np.zeros((12, SYNC_DIM + 2 * CUES_PER_CLASS), np.float32)
    sync[:, SYNC_DIM] = 1.0  # class 0 visible throughout: visibility alone opens nothing
    sync[5, SYNC_DIM + CUES_PER_CLASS + 1] = 0.6  # class 1: an event at frame 5
    sync[9, SYNC_DIM + 1] = 0.2  # class 0: an unlikely one at frame 9
    closed = event_gate(sync, threshold=0.3, reach=1)
    assert closed.tolist() == [True] * 4 + [False] * 3 + [True] * 5
    assert event_gate(sync, threshold=0.1, reach=0).tolist() == [i not in (5, 9) for i in range(12)]
    assert event_gate(sync[:, :SYNC_DIM]) is None  # motion alone: nothing to read
    with pytest.raises(ValueError, match="cues per class"):
        event_gate(sync[:, :-1])


def test_finish_latent_gates_only_with_cues_and_when_asked():
    codec = Codec(config=CODEC_PRESETS["tiny"])
    z = torch.randn(2, codec.config.latent_dim, 12, generator=torch.Generator().manual_seed(0))
    quiet = np.zeros((12, SYNC_DIM + CUES_PER_CLASS), np.float32)  # cues, and no event anywhere
    gated = codec.gate_transients(codec.declick(z), torch.ones(2, 12, dtype=torch.bool))
    assert not torch.equal(gated, codec.declick(z))
    torch.testing.assert_close(finish_latent(codec, z, quiet, declick=True, gate=True), gated, atol=0, rtol=0)
    torch.testing.assert_close(finish_latent(codec, z, quiet, declick=True, gate=False), codec.declick(z))
    torch.testing.assert_close(finish_latent(codec, z, quiet, declick=False, gate=False), z, atol=0, rtol=0)
    torch.testing.assert_close(finish_latent(codec, z, quiet[:, :SYNC_DIM], True, True), codec.declick(z))


def test_bundle_with_cues_renders_and_round_trips(tmp_path):
    bundle = tiny_bundle(tiny_planner())
    scene = sample_scene(3, WorldConfig(duration=2.0))
    video = tmp_path / "clip.mp4"
    write_mp4(video, render_frames(scene), scene.config.fps)
    prepared = prepare_video(video, bundle)
    assert prepared.sync.shape == (prepared.n_latent, sync_dim(bundle.planner))
    audio = render(prepared, scene_cot(), bundle, RenderSettings(steps=2))
    assert audio.shape == (prepared.n_samples, 2) and np.abs(audio).max() > 0
    ungated = render(prepared, scene_cot(), bundle, RenderSettings(steps=2, gate=False))
    expected_same = bool(event_gate(prepared.sync).logical_not().all())  # an open gate everywhere changes nothing
    assert np.array_equal(ungated, audio) == expected_same
    folder = save_bundle(bundle, tmp_path / "model")
    assert json.loads((folder / "model.json").read_text())["sync_cues"] is True
    back = load_bundle(folder)
    assert back.sync_cues and back.planner is not None
    again = prepare_video(video, back)
    np.testing.assert_allclose(again.sync, prepared.sync, atol=0.02)  # the planner ships in float16
    audio_back = render(again, scene_cot(), back, RenderSettings(steps=2))
    assert np.corrcoef(audio_back.ravel(), audio.ravel())[0, 1] > 0.99
    (folder / PLANNER_FILE).unlink()
    (folder / "model.json").touch()  # a new manifest version: the load is not served from the cache
    with pytest.raises(UserInputError, match="needs planner.safetensors"):
        load_bundle(folder)


def test_a_retrained_cot_planner_leaves_the_generators_cues_alone(tmp_path):
    cues_net, cot_net = tiny_planner(seed=0), tiny_planner(seed=5)
    bundle = tiny_bundle(cues_net)
    scene = sample_scene(3, WorldConfig(duration=2.0))
    video = tmp_path / "clip.mp4"
    write_mp4(video, render_frames(scene), scene.config.fps)
    before = prepare_video(video, bundle).sync
    split = replace(bundle, planner=cot_net, cue_net=cues_net)
    assert split.cue_planner is cues_net
    np.testing.assert_array_equal(prepare_video(video, split).sync, before)
    assert not np.allclose(prepare_video(video, replace(bundle, planner=cot_net)).sync, before)
    folder = save_bundle(split, tmp_path / "model")
    assert (folder / CUES_FILE).is_file() and (folder / PLANNER_FILE).is_file()
    back = load_bundle(folder)
    assert state_digest(back.cue_planner) == state_digest(load_planner_net(folder / CUES_FILE))
    assert state_digest(back.planner) == state_digest(load_planner_net(folder / PLANNER_FILE))
    assert state_digest(back.planner) != state_digest(back.cue_planner)
    np.testing.assert_allclose(prepare_video(video, back).sync, before, atol=0.02)  # float16 files


def test_bundle_refuses_parts_that_disagree_on_the_cues():
    bundle = tiny_bundle(tiny_planner())
    with pytest.raises(ValueError, match=f"sync_dim {sync_dim(bundle.planner)} != motion features {SYNC_DIM}"):
        ModelBundle(bundle.codec, bundle.generator, bundle.video_encoder, planner=bundle.planner, sync_cues=False)
    with pytest.raises(ValueError, match="needs the bundle's planner"):
        ModelBundle(bundle.codec, bundle.generator, bundle.video_encoder, planner=None, sync_cues=True)


def scene_cot() -> dict:
    return {"semantic": "a ball bouncing on a wooden floor", "temporal": "", "aesthetic": "", "spatial": ""}


def test_cache_with_cues_trains_a_model_folder_that_ships_the_planner(tmp_path):
    torch.manual_seed(0)
    save_codec(Codec(config=CODEC_PRESETS["tiny"]).eval(), tmp_path / "codec.safetensors")
    net = tiny_planner(seed=4)
    save_planner(net, tmp_path / "planner.safetensors")
    cfg = FeatureConfig(count=2, duration=2.0, shard_size=2, workers=1)
    index = build_features(
        tmp_path / "cache", tmp_path / "codec.safetensors", cfg, planner_path=tmp_path / "planner.safetensors"
    )
    assert index["config"]["sync_dim"] == sync_dim(net)
    item = FeatureDataset(tmp_path / "cache", "decomposed")[0]
    assert item["motion"].shape == (item["z"].shape[1], sync_dim(net))
    assert np.abs(item["motion"][:, SYNC_DIM:].astype(np.float32)).max() > 0
    with pytest.raises(UserInputError, match="other planner"):  # the same cache with another planner is refused
        save_planner(tiny_planner(seed=5), tmp_path / "other.safetensors")
        build_features(
            tmp_path / "cache", tmp_path / "codec.safetensors", cfg, planner_path=tmp_path / "other.safetensors"
        )
    run = PretrainConfig(
        preset="tiny", video_preset="tiny", steps=2, batch=2, warmup=1, ckpt_every=100,
        cache=str(tmp_path / "cache"), out=str(tmp_path / "run"),
    )  # fmt: skip
    pretrain(run, resume=False)
    manifest = json.loads((tmp_path / "run" / "model.json").read_text())
    assert manifest["sync_cues"] is True
    assert file_sha256(tmp_path / "run" / PLANNER_FILE) == file_sha256(tmp_path / "planner.safetensors")
    bundle = load_bundle(tmp_path / "run")
    assert bundle.sync_cues and bundle.generator.config.sync_dim == sync_dim(net)
