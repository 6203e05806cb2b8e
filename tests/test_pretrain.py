"""Generator pretraining: the video encoder, the feature cache, the flow-matching loss, the data order, the
training loop (finite loss, exact kill/resume), the CoT modes and the saved model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine.codec import CODEC_PRESETS, Codec, save_codec
from engine.errors import UserInputError
from engine.generator import GENERATOR_PRESETS, cot_text_blocks
from engine.media import write_mp4
from engine.motion import SYNC_DIM, motion_features
from engine.text_encoder import encode_tokens
from engine.video_encoder import (
    VIDEO_ENCODER_PRESETS,
    build_video_encoder,
    frames_for_encoder,
    load_video_encoder,
    save_video_encoder,
)
from engine.video_io import load_video
from trainer.codec_training import CodecTrainConfig, latent_stats_clips, measure_latent_stats
from trainer.feature_cache import (
    CropCollate,
    FeatureConfig,
    FeatureDataset,
    build_features,
    file_sha256,
    load_index,
)
from trainer.foleyworld.splits import make_clip
from trainer.foleyworld.video import frame_times, render_frames
from trainer.losses import flow_matching_loss, logit_normal_times
from trainer.pretrain import (
    BatchOrder,
    PretrainConfig,
    build_model,
    continue_from,
    export_checkpoint,
    load_pretrained,
    pretrain,
)

DURATION = 2.0  # seconds per test clip


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A tiny untrained codec and the feature cache of 3 two-second train clips, built by a spawn Pool(2)
    (shards of 2 clips, so the pool gets two jobs)."""
    root = tmp_path_factory.mktemp("pretrain")
    torch.manual_seed(0)
    codec = Codec(config=CODEC_PRESETS["tiny"]).eval()
    stats_cfg = CodecTrainConfig(preset="tiny", clip_seconds=2.0, stats_clips=2, stats_seconds=2.0)
    codec.set_latent_stats(*measure_latent_stats(codec, latent_stats_clips(stats_cfg)))  # as training does
    save_codec(codec, root / "codec.safetensors")
    cfg = FeatureConfig(count=3, duration=DURATION, shard_size=2, workers=2)
    build_features(root / "cache", root / "codec.safetensors", cfg)
    return {"root": root, "dir": root / "cache", "codec": codec, "cfg": cfg}


def _tiny(cache, **kw) -> PretrainConfig:
    base = dict(preset="tiny", video_preset="tiny", steps=4, batch=2, warmup=2, log_every=1, ckpt_every=100)
    return PretrainConfig(cache=str(cache["dir"]), **(base | kw))


def _batch(cache, mode: str, items=(0, 1, 2)) -> dict:
    data = FeatureDataset(cache["dir"], mode)
    c = data.config
    return CropCollate(c["hop"], c["sample_rate"], c["features"]["video_rate"])([data[i] for i in items])


# ---------------------------------------------------------------------------------------- video encoder


def test_default_generator_matches_the_encoders():
    gen, enc = GENERATOR_PRESETS["default"], VIDEO_ENCODER_PRESETS["default"]
    assert (gen.video_dim, gen.sync_dim) == (enc.width, SYNC_DIM)
    data = {"features": {"video_rate": 8.0, "video_size": 64}, "latent_dim": 64, "sync_dim": SYNC_DIM, "text_dim": 384}
    model = build_model(PretrainConfig(), data)
    n_gen, n_enc = model.generator.num_parameters(), model.video_encoder.num_parameters()
    assert n_gen < 10.5e6 and n_enc < 1e6
    assert 2 * (n_gen + n_enc) < 25e6  # float16 bytes: leaves room for the codec under the 40 MB budget


def test_video_encoder_shapes_per_frame_start_and_padding():
    enc = build_video_encoder("tiny")
    frames = torch.randint(0, 256, (2, 5, 64, 64, 3), dtype=torch.uint8)
    tokens = enc(frames)
    assert tokens.shape == (2, 5, 16)
    # the temporal residual is zero-initialised: a fresh encoder is purely per-frame
    torch.testing.assert_close(tokens, enc.encode_frames(frames))
    # uint8 and float in [0, 1] are the same picture
    torch.testing.assert_close(enc.encode_frames(frames.float() / 255), enc.encode_frames(frames))
    with torch.no_grad():
        enc.temporal.weight.normal_(std=0.1)
    mask = torch.tensor([[True] * 3 + [False] * 2] * 2)
    noisy = frames.clone()
    noisy[:, 3:] = 255 - noisy[:, 3:]  # padding content must not leak into the real frames
    torch.testing.assert_close(enc(frames, mask)[:, :3], enc(noisy, mask)[:, :3])
    with pytest.raises(ValueError, match="frames must be"):
        enc(frames[:, :, :32])


def test_video_encoder_save_load_round_trip(tmp_path):
    enc = build_video_encoder("tiny")
    save_video_encoder(enc, tmp_path / "v.safetensors")
    back = load_video_encoder(tmp_path / "v.safetensors")
    assert all(p.dtype == torch.float32 for p in back.parameters())
    for (k, a), (_, b) in zip(enc.state_dict().items(), back.state_dict().items()):
        torch.testing.assert_close(b, a.half().float(), msg=k)  # exactly the float16 rounding


@pytest.mark.parametrize("fps", [24.0, 29.97])
def test_encoder_frames_match_what_load_video_decodes(tmp_path, fps):
    """Frame k of a source shows grey level 8 k: any off-by-one frame choice or other resize shows up."""
    n, h, w = int(round(3.0 * fps)), 48, 80
    src = np.repeat((np.arange(n) * 8 % 240 + 8).astype(np.uint8)[:, None, None, None], 3, axis=3)
    src = np.broadcast_to(src, (n, h, w, 3)).copy()
    write_mp4(tmp_path / "v.mp4", src, fps)
    decoded = load_video(tmp_path / "v.mp4", rate=8.0, size=64)
    ours = frames_for_encoder(src, np.arange(n) / fps, n / fps)
    assert ours.shape == decoded.frames.shape == (math.ceil(n / fps * 8), 64, 64, 3)
    assert np.abs(ours.astype(int) - decoded.frames.astype(int)).max() <= 3  # H.264 rounding only
    assert ours[0, 0].max() == 0 and ours[0, 32, 32, 0] == 8  # letterboxed: black bars above, picture inside


# ------------------------------------------------------------------------------------------- cache


def test_cache_holds_the_expected_arrays(cache):
    index = load_index(cache["dir"])
    assert [e["index"] for e in index["clips"]] == [0, 1, 2]
    clip = make_clip("train", 1, FeatureConfig(duration=DURATION).world)
    entry, n = index["clips"][1], len(clip.audio.audio)
    data = FeatureDataset(cache["dir"], "decomposed")
    item = data[1]
    t, f = cache["codec"].latent_frames(n), math.ceil(DURATION * 8)
    assert (entry["T"], entry["F"]) == (t, f) == (44, 16)
    assert item["z"].shape == (cache["codec"].config.latent_dim, t) and item["z"].dtype == np.float16
    assert item["frames"].shape == (f, 64, 64, 3) and item["frames"].dtype == np.uint8
    assert item["motion"].shape == (t, SYNC_DIM)
    # the pool's numbers are the ones computed here directly
    with torch.no_grad():
        z = cache["codec"].encode(torch.from_numpy(clip.audio.audio.T.copy())[None])[0].numpy()
    np.testing.assert_allclose(item["z"], z, rtol=2e-3, atol=2e-3)
    rendered = render_frames(clip.scene)
    times = frame_times(clip.scene.config)
    np.testing.assert_array_equal(item["frames"], frames_for_encoder(rendered, times, DURATION))
    np.testing.assert_allclose(item["motion"], motion_features(rendered, times, 44100 / 2048, t), rtol=2e-3, atol=2e-3)
    # the cached text is what `cot_text_blocks` gives for each mode, padding removed
    for mode in ("decomposed", "monolithic"):
        cached = FeatureDataset(cache["dir"], mode)[1]["text"]
        for k, (states, mask) in enumerate(cot_text_blocks([clip.cot], mode)):
            np.testing.assert_allclose(cached[k], states[0][mask[0]].numpy(), atol=3e-3, err_msg=f"{mode} {k}")
    mono = FeatureDataset(cache["dir"], "monolithic")[1]["text"]
    assert len(mono[0]) == int(encode_tokens([clip.cot.monolithic()], 512)[1].sum()) > 100  # all words, one slot
    assert [len(b) for b in mono[1:]] == [0, 0, 0]


def test_cache_resumes_and_refuses_another_codec(cache, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in (cache["dir"] / "shards").iterdir()}
    build_features(cache["dir"], cache["root"] / "codec.safetensors", cache["cfg"])  # nothing to do
    assert {p.name: p.stat().st_mtime_ns for p in (cache["dir"] / "shards").iterdir()} == before
    other = Codec(config=CODEC_PRESETS["tiny"])
    save_codec(other, tmp_path / "other.safetensors")
    with pytest.raises(Exception, match="built with other codec"):
        build_features(cache["dir"], tmp_path / "other.safetensors", cache["cfg"])


# ------------------------------------------------------------------------------------ loss, order


def test_flow_matching_loss_exact_cases():
    g = torch.Generator().manual_seed(0)
    x0, x1, t = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, 5, generator=g), torch.rand(3, generator=g)
    seen = {}

    def perfect(x, tt):
        seen["x"] = x
        return x1 - x0

    assert flow_matching_loss(perfect, x0, x1, t).item() == 0.0
    torch.testing.assert_close(seen["x"], (1 - t[:, None, None]) * x0 + t[:, None, None] * x1)  # x_t
    zero = lambda x, tt: torch.zeros_like(x)
    per = flow_matching_loss(zero, x0, x1, t, reduction="none")
    torch.testing.assert_close(per, (x1 - x0).square().mean((1, 2)))
    times = logit_normal_times(20_000, mean=0.5, std=1.0, generator=torch.Generator().manual_seed(1))
    assert 0 < times.min() and times.max() < 1
    assert abs(times.median().item() - 1 / (1 + math.exp(-0.5))) < 0.01  # median of sigmoid(N(0.5, 1))


def test_batch_order_is_a_pure_function_of_the_step():
    lengths = np.array([40, 44, 44, 30, 31, 44, 39, 41, 43, 44])
    full = list(BatchOrder(lengths=lengths, batch=2, bucket=2, seed=3, start=0, stop=12))
    assert list(BatchOrder(lengths=lengths, batch=2, bucket=2, seed=3, start=5, stop=12)) == full[5:]
    epoch = [i for b in full[:5] for i in b]
    assert sorted(epoch) == list(range(10))  # 5 batches of 2 per epoch: every clip exactly once
    assert full[:5] != full[5:10]  # a new permutation each epoch
    sorted_pairs = BatchOrder(lengths=lengths, batch=2, bucket=5, seed=3, start=0, stop=5)
    spread = [abs(lengths[a] - lengths[b]) for a, b in sorted_pairs]
    assert max(spread) <= 5  # one sorted group per epoch: neighbours in length share a batch


# --------------------------------------------------------------------------------------- training


def test_three_steps_give_a_finite_loss(cache, tmp_path):
    result = pretrain(_tiny(cache, steps=3, out=str(tmp_path / "run")), resume=False)
    losses = [h["loss"] for h in result["history"]]
    assert result["finished"] and len(losses) == 3
    assert all(math.isfinite(x) and 0.1 < x < 10 for x in losses)


def test_kill_and_resume_equals_a_straight_run(cache, tmp_path):
    straight = pretrain(_tiny(cache, out=str(tmp_path / "a")), resume=False)
    first = pretrain(_tiny(cache, out=str(tmp_path / "b"), stop_at=2), resume=False)
    assert not first["finished"] and not (tmp_path / "b" / "model.json").exists()
    second = pretrain(_tiny(cache, out=str(tmp_path / "b")))
    assert second["resumed_from"] == 2 and second["finished"]
    clips = lambda run: [h["clips"] for h in run["history"]]  # noqa: E731 - the whole run's, from the checkpoint
    assert clips(second) == clips(straight) and clips(first) == clips(straight)[:2]  # the same data order
    for name in ("generator.safetensors", "video_encoder.safetensors", "checkpoints/step_0000004/model.safetensors"):
        a, b = load_file(tmp_path / "a" / name), load_file(tmp_path / "b" / name)
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=f"{name}:{k}")


def test_a_snapshot_of_a_checkpoint_is_the_model_of_that_step(cache, tmp_path):
    straight = _tiny(cache, out=str(tmp_path / "a"))
    pretrain(straight, resume=False)
    part = _tiny(cache, out=str(tmp_path / "b"), stop_at=2)
    pretrain(part, resume=False)
    export_checkpoint(straight, tmp_path / "snap4")  # the last checkpoint of a finished run: its final model
    export_checkpoint(part, tmp_path / "snap2")
    for name in ("generator.safetensors", "video_encoder.safetensors"):
        a, b = load_file(tmp_path / "a" / name), load_file(tmp_path / "snap4" / name)
        assert all(torch.equal(a[k], b[k]) for k in a)
    two = load_pretrained(tmp_path / "snap2")
    assert two.manifest["extra"]["steps_done"] == 2 and two.manifest["name"] == "snap2"
    four = load_file(tmp_path / "a" / "generator.safetensors")
    assert any(not torch.equal(four[k], v) for k, v in load_file(tmp_path / "snap2" / "generator.safetensors").items())
    with pytest.raises(UserInputError, match="no checkpoint"):
        export_checkpoint(_tiny(cache, out=str(tmp_path / "none")), tmp_path / "snap0")


@pytest.mark.parametrize("mode", ["decomposed", "monolithic", "none"])
def test_cot_modes_give_the_expected_block_ids(cache, mode):
    model = build_model(_tiny(cache, cot_mode=mode), FeatureDataset(cache["dir"], mode).config)
    batch = _batch(cache, mode)
    with torch.no_grad():
        cond = model.conditions(batch)
    tokens = load_index(cache["dir"])["clips"]
    for b in range(3):
        ids = cond.block_ids[b][cond.text_mask[b]].tolist()  # the attended text tokens of clip b
        if mode == "none":
            assert ids == [4]  # only the null token
        else:
            n = tokens[b]["tokens"][mode]
            assert ids == [k for k in range(4) for _ in range(n[k])]
            assert (mode == "monolithic") == (set(ids) == {0})  # one block, no block identity


def test_saved_model_loads_back(cache, tmp_path):
    result = pretrain(_tiny(cache, steps=2, out=str(tmp_path / "run")), resume=False)
    manifest = json.loads((tmp_path / "run" / "model.json").read_text())
    assert manifest["cot_mode"] == "decomposed" and manifest["text"]["block_tokens"] == 128
    assert (manifest["video_rate"], manifest["video_size"]) == (8.0, 64)
    assert manifest["codec_source"]["path"] == str(cache["root"] / "codec.safetensors")
    assert file_sha256(tmp_path / "run" / "codec.safetensors") == file_sha256(cache["root"] / "codec.safetensors")
    assert all(v.dtype == torch.float16 for v in load_file(tmp_path / "run" / "generator.safetensors").values())
    back = load_pretrained(tmp_path / "run")
    assert back.generator.num_parameters() == result["params"]["generator"]
    # the shipped weights are the EMA of the last checkpoint, rounded to float16, loaded back as float32
    ema = torch.load(tmp_path / "run" / "checkpoints" / "step_0000002" / "custom_checkpoint_0.pkl", weights_only=True)
    model = build_model(_tiny(cache), FeatureDataset(cache["dir"], "decomposed").config)
    model.load_state_dict(ema)
    for part in ("generator", "video_encoder"):
        for k, v in getattr(back, part).state_dict().items():
            assert v.dtype == torch.float32
            torch.testing.assert_close(v, ema[f"{part}.{k}"].half().float(), rtol=0, atol=0, msg=k)
    batch = _batch(cache, "decomposed", items=(0,))
    x, t = (
        torch.randn(1, back.generator.config.latent_dim, 44, generator=torch.Generator().manual_seed(0)),
        torch.tensor([0.5]),
    )
    with torch.no_grad():
        v_ema = model.generator.velocity(x, t, model.conditions(batch))
        tokens = back.video_encoder(batch["frames"], batch["frame_mask"])
        cond = back.generator.prepare_conditions(tokens, None, batch["motion"], batch["text"], 44)
        v_back = back.generator.velocity(x, t, cond)
    assert v_back.abs().max() > 1e-3  # the trained model is no longer the neutral (zero-velocity) start
    torch.testing.assert_close(v_back, v_ema, rtol=0.02, atol=2e-3)


def test_a_run_continues_from_a_trained_model_folder(cache, tmp_path):
    pretrain(_tiny(cache, steps=2, out=str(tmp_path / "start")), resume=False)
    start = load_pretrained(tmp_path / "start")
    # built from the folder and not yet stepped: the model holds the folder's weights exactly
    model = build_model(_tiny(cache, seed=5), FeatureDataset(cache["dir"], "decomposed").config)
    continue_from(model, tmp_path / "start", FeatureDataset(cache["dir"], "decomposed").config)
    for part in ("generator", "video_encoder"):
        for k, v in getattr(start, part).state_dict().items():
            assert torch.equal(getattr(model, part).state_dict()[k], v), k
    # a continued run starts from those weights: its first loss is the start model's, not a fresh one's
    fresh = pretrain(_tiny(cache, steps=1, lr=1e-12, out=str(tmp_path / "fresh")), resume=False)
    cont = pretrain(
        _tiny(cache, steps=1, lr=1e-12, init=str(tmp_path / "start"), out=str(tmp_path / "cont")), resume=False
    )
    assert cont["history"][0]["loss"] != fresh["history"][0]["loss"]
    assert load_pretrained(tmp_path / "cont").manifest["extra"]["train"]["init"] == str(tmp_path / "start")


def test_continuing_refuses_a_folder_of_another_codec_or_network(cache, tmp_path):
    pretrain(_tiny(cache, steps=1, out=str(tmp_path / "start")), resume=False)
    data = FeatureDataset(cache["dir"], "decomposed").config
    with pytest.raises(UserInputError, match="other networks"):
        continue_from(build_model(_tiny(cache, preset="default"), data), tmp_path / "start", data)
    other = {**data, "codec": {**data["codec"], "sha256": "0" * 64}}
    with pytest.raises(UserInputError, match="another codec"):
        continue_from(build_model(_tiny(cache), data), tmp_path / "start", other)
    cued = {**data, "planner": {"path": "cues.safetensors", "sha256": "1" * 64}}
    with pytest.raises(UserInputError, match="other sync cues"):
        continue_from(build_model(_tiny(cache), data), tmp_path / "start", cued)
    model = build_model(_tiny(cache, seed=5), data)  # re-learning other cues of the same width is asked for
    continue_from(model, tmp_path / "start", cued, recue=True)
    start = load_pretrained(tmp_path / "start").generator.state_dict()
    assert all(torch.equal(model.generator.state_dict()[k], v) for k, v in start.items())
    with pytest.raises(UserInputError, match="another codec"):  # the codec is never waived
        continue_from(build_model(_tiny(cache), data), tmp_path / "start", other, recue=True)


def test_a_timeline_run_reads_the_temporal_block_of_each_clip(cache, tmp_path):
    from engine.timeline import TIMELINE_DIM, timeline_track
    from trainer.foleyworld.splits import make_clip

    cfg = _tiny(cache, steps=2, timeline=True, out=str(tmp_path / "run"))
    pretrain(cfg, resume=False)
    back = load_pretrained(tmp_path / "run")
    assert back.generator.config.timeline_dim == TIMELINE_DIM
    assert back.generator.timeline_gate.value.weight.abs().max() > 0  # the path was trained
    c = FeatureDataset(cache["dir"], "decomposed").config
    rate = c["sample_rate"] / c["hop"]
    data = FeatureDataset(cache["dir"], "decomposed", timeline_rate=rate)
    batch = CropCollate(c["hop"], c["sample_rate"], c["features"]["video_rate"])([data[i] for i in (0, 1, 2)])
    for b in range(3):  # each clip's own ground-truth CoT, as the cache's text states were made from
        cot = make_clip("train", b, cache["cfg"].world).cot
        want = timeline_track(cot.temporal, batch["z"].shape[2], rate)
        np.testing.assert_array_equal(batch["timeline"][b].numpy(), want)
    # a plain model continues as a timeline model: the new path starts neutral, the rest is the start model
    pretrain(_tiny(cache, steps=1, out=str(tmp_path / "plain")), resume=False)
    model = build_model(cfg, c)
    continue_from(model, tmp_path / "plain", c)
    plain = load_pretrained(tmp_path / "plain").generator.state_dict()
    assert all(torch.equal(model.generator.state_dict()[k], v) for k, v in plain.items())
    with pytest.raises(UserInputError, match="decomposed"):
        _tiny(cache, timeline=True, cot_mode="monolithic")
    with pytest.raises(UserInputError, match="decomposed"):
        FeatureDataset(cache["dir"], "monolithic", timeline_rate=rate)
