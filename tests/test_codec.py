"""The stereo codec: sizes, exact lengths, files, the STFT/stereo losses and resumable training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.codec import CODEC_PRESETS, Codec, CodecConfig, load_codec, read_codec_metadata, save_codec
from engine.errors import UserInputError
from trainer.losses import codec_loss, mid_side, multi_resolution_stft_loss
from trainer.train_codec import CodecTrainConfig, latent_stats_clips, lr_at, new_training_state, train_codec, train_step

TINY = CODEC_PRESETS["tiny"]
SR = 44100


pytestmark = pytest.mark.usefixtures("one_thread")


def _codec(seed: int = 0) -> Codec:
    """A tiny codec with random (non-zero) weights everywhere, so outputs depend on every layer."""
    torch.manual_seed(seed)
    codec = Codec(config=TINY)
    with torch.no_grad():
        for p in codec.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return codec.eval()


def _noise(n: int, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return 0.1 * torch.randn(batch, 2, n, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- sizes


def test_default_preset_matches_the_reference_rate():
    cfg = CODEC_PRESETS["default"]
    assert cfg.sample_rate == 44100 and cfg.hop == 2048
    assert 20.0 <= cfg.latent_rate <= 25.0
    assert cfg.latent_rate == pytest.approx(44100 / 2048)
    assert Codec(config=cfg).latent_frames(9 * 44100) == 194  # the reference's 194 frames for 9 s


@pytest.mark.parametrize("n", [1, 2047, 2048, 2049, 4410, 3 * 2048, 10_000])
def test_encode_decode_shapes_and_exact_length(n):
    codec = _codec()
    audio = _noise(n)
    with torch.no_grad():
        z = codec.encode(audio)
        out = codec.decode(z, n)
        full = codec.decode(z)
    assert codec.latent_frames(n) == math.ceil(n / TINY.hop)
    assert z.shape == (2, TINY.latent_dim, math.ceil(n / TINY.hop))
    assert out.shape == (2, 2, n)
    assert full.shape == (2, 2, z.shape[-1] * TINY.hop)
    torch.testing.assert_close(full[..., :n], out)
    assert codec(audio).shape == audio.shape


def test_patchify_is_a_lossless_reshape():
    codec = _codec()
    audio = _noise(4 * TINY.patch)
    patches = codec.patchify(audio)  # (B, 2P, T0)
    assert patches.shape == (2, 2 * TINY.patch, 4)
    # channel c * P + p of frame t is sample t * P + p of audio channel c
    assert patches[1, 1 * TINY.patch + 5, 3] == audio[1, 1, 3 * TINY.patch + 5]
    assert torch.equal(codec.unpatchify(patches), audio)


def test_latent_is_bounded_and_normalisation_round_trips():
    codec = _codec()
    audio = _noise(5000)
    with torch.no_grad():
        raw = codec.encode_raw(audio)
        codec.set_latent_stats(torch.full((TINY.latent_dim,), 0.2), torch.full((TINY.latent_dim,), 0.5))
        z = codec.encode(audio)
        out = codec.decode(z, 5000)
        ref = codec.decode_raw(raw, 5000)
    assert raw.abs().max() < 1.0
    torch.testing.assert_close(z, (raw - 0.2) / 0.5)
    torch.testing.assert_close(out, ref)


def test_bad_inputs_say_what_they_got():
    codec = _codec()
    with pytest.raises(ValueError, match=r"audio.shape=torch.Size\(\[2, 100\]\)"):
        codec.encode(torch.zeros(2, 100))
    with pytest.raises(ValueError, match="stereo"):
        codec.encode(torch.zeros(1, 1, 100))
    with pytest.raises(ValueError, match="z.shape"):
        codec.decode(torch.zeros(1, TINY.latent_dim + 1, 3))
    with pytest.raises(ValueError, match="n_samples=5000 needs 3 latent frames"):
        codec.decode(torch.zeros(1, TINY.latent_dim, 2), 5000)
    with pytest.raises(ValueError, match="one width per stage"):
        CodecConfig(strides=(2, 4), widths=(8, 8, 8, 8))


# ----------------------------------------------------------------------------- files and determinism


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    codec = _codec()
    codec.set_latent_stats(torch.linspace(-0.1, 0.1, TINY.latent_dim), torch.linspace(0.3, 0.6, TINY.latent_dim))
    path = tmp_path / "codec.safetensors"
    save_codec(codec, path, extra={"note": "test"})
    loaded = load_codec(path)
    assert loaded.config == TINY
    assert read_codec_metadata(path)["extra"] == {"note": "test"}
    assert not list(tmp_path.glob(".*.tmp"))
    audio = _noise(6000)
    with torch.no_grad():
        assert torch.equal(loaded.encode(audio), codec.encode(audio))
        assert torch.equal(loaded(audio), codec(audio))


def test_load_errors_tell_the_user(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        load_codec(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(UserInputError, match="not a safetensors file"):
        load_codec(bad)


def test_same_seed_same_codec_and_outputs():
    audio = _noise(5000)
    with torch.no_grad():
        a, b = _codec(3)(audio), _codec(3)(audio)
        c = _codec(4)(audio)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_untrained_codec_outputs_silence():
    """Zero-initialised output conv: the untrained decoder is silent, not loud noise."""
    torch.manual_seed(0)
    with torch.no_grad():
        assert Codec(config=TINY)(_noise(3000)).abs().max() == 0.0


# ----------------------------------------------------------------------------- losses


def test_stft_loss_zero_for_identical_positive_otherwise():
    x = _noise(8000)
    assert multi_resolution_stft_loss(x, x) == 0.0
    assert codec_loss(x, x)[0] == 0.0
    # pred at half the target's level: spectral convergence 0.5 and log-magnitude L1 log 2 at every bin
    # (to within the -80 dB magnitude floor), averaged over resolutions.
    half = multi_resolution_stft_loss(0.5 * x, x)
    assert half.item() == pytest.approx(0.5 + math.log(2.0), rel=1e-3)
    assert multi_resolution_stft_loss(x + 0.01 * _noise(8000, seed=9), x) > 0.0


def test_codec_loss_parts_equal_the_stft_loss_of_each_view():
    """codec_loss derives mid/side spectra from left/right ones (STFT linearity): check against explicit views."""
    pred, target = _noise(6000, seed=2), _noise(6000, seed=3)
    loss, parts = codec_loss(pred, target, wave_weight=0.5, side_weight=2.0)
    p_mid, p_side = mid_side(pred)
    t_mid, t_side = mid_side(target)
    expected = {
        "left": multi_resolution_stft_loss(pred[:, 0], target[:, 0]),
        "right": multi_resolution_stft_loss(pred[:, 1], target[:, 1]),
        "mid": multi_resolution_stft_loss(p_mid, t_mid),
        "side": multi_resolution_stft_loss(p_side, t_side, reference=torch.stack([t_mid, t_side], 1)),
        "wave_l1": (pred - target).abs().mean(),
    }
    for name, value in expected.items():
        assert parts[name] == pytest.approx(value.item(), rel=1e-4), name
    total = sum(expected[k] for k in ("left", "right", "mid")) + 2.0 * expected["side"] + 0.5 * expected["wave_l1"]
    torch.testing.assert_close(loss, total, rtol=1e-4, atol=0)


def test_swapping_left_and_right_raises_the_loss():
    """A source panned left (ILD 12 dB): the swapped prediction is penalised through left and right."""
    s = _noise(8000, batch=1)[:, 0]  # (1, N)
    target = torch.stack([s, 0.25 * s], dim=1)  # (1, 2, N)
    loss, parts = codec_loss(target.flip(1), target)
    assert loss > 1.0
    assert parts["left"] > 1.0 and parts["right"] > 1.0
    # mid is symmetric in L and R; side only changes sign: neither sees a swap, left/right must.
    assert parts["mid"] == 0.0 and parts["side"] == 0.0


def test_mid_side_catch_a_wrong_stereo_image_with_matching_channel_spectra():
    """Centred source vs the same channels with the right one inverted or delayed by 20 samples (~0.45 ms ITD).

    Each channel alone has (almost) the target's magnitude spectrum, so the left/right terms are
    (near) zero; only mid and side see the wrong image.
    """
    s = _noise(8000, batch=1)[:, 0]  # (1, N)
    target = torch.stack([s, s], dim=1)  # centred: side = 0
    inverted = torch.stack([s, -s], dim=1)
    _, parts = codec_loss(inverted, target)
    assert parts["left"] == 0.0 and parts["right"] == pytest.approx(0.0, abs=1e-6)
    assert parts["mid"] > 1.0 and parts["side"] > 1.0
    delayed = torch.stack([s, torch.roll(s, 20, dims=-1)], dim=1)
    _, parts = codec_loss(delayed, target)
    assert parts["left"] == 0.0 and parts["right"] < 0.3  # only frame-edge effects of the delay
    assert parts["side"] > 10 * parts["right"] and parts["mid"] > 1.0


def test_side_loss_stays_finite_for_a_mono_target():
    """The side's convergence is normalised by the whole signal, so a silent target side does not explode."""
    s = _noise(8000, batch=1)[:, 0]
    target = torch.stack([s, s], dim=1)  # side exactly 0
    _, parts = codec_loss(torch.stack([s, 0.9 * s], dim=1), target)
    assert 0.0 < parts["side"] < 20.0


# ----------------------------------------------------------------------------- training


def _tiny_run(tmp_path, name: str, **kw) -> dict:
    opts = dict(
        preset="tiny",
        steps=4,
        batch=2,
        crop_seconds=0.1,
        lr=2e-3,
        seed=0,
        clip_seconds=2.0,
        pool_size=2,
        pool_refresh_every=2,
        pool_refresh_count=1,
        stats_clips=2,
        stats_seconds=2.0,
        warmup=1,
        log_every=1,
    )
    return train_codec(tmp_path / f"{name}.safetensors", **{**opts, **kw})


def test_resumed_training_equals_straight_training(tmp_path):
    straight = _tiny_run(tmp_path, "straight")
    first = _tiny_run(tmp_path, "split", stop_at=2)
    assert not first["finished"] and first["path"] is None and first["step"] == 2
    assert not (tmp_path / "split.safetensors").exists()
    second = _tiny_run(tmp_path, "split")
    assert second["finished"] and second["resumed_from"] == 2 and second["step"] == 4
    a, b = load_codec(straight["path"]), load_codec(second["path"])
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0, msg=name)
    assert [h["total"] for h in straight["history"][2:]] == [h["total"] for h in second["history"]]
    assert read_codec_metadata(second["path"])["extra"]["train"]["steps"] == 4


def test_saved_codec_has_normalised_latents(tmp_path):
    """On the clips the statistics were measured on, `encode` gives zero mean and unit std per channel."""
    result = _tiny_run(tmp_path, "stats", steps=2, stats_clips=3)
    codec = load_codec(result["path"])
    assert torch.all(codec.latent_std >= TINY.std_floor)
    clips = latent_stats_clips(CodecTrainConfig(preset="tiny", clip_seconds=2.0, stats_clips=3, stats_seconds=2.0))
    assert [c.shape for c in clips] == [(2, 2 * SR)] * 3
    with torch.no_grad():
        z = codec.encode(torch.stack(clips))  # (3, C, T)
    z = z.transpose(0, 1).reshape(TINY.latent_dim, -1)  # (C, 3 * T)
    torch.testing.assert_close(z.mean(dim=1), torch.zeros(TINY.latent_dim), atol=1e-4, rtol=0)
    live = codec.latent_std > TINY.std_floor
    torch.testing.assert_close(z.std(dim=1)[live], torch.ones(int(live.sum())), atol=1e-4, rtol=0)


def test_thirty_steps_on_a_fixed_batch_reduce_the_loss():
    state = new_training_state(CodecTrainConfig(preset="tiny", steps=30, batch=2, lr=3e-3, warmup=1, seed=0))
    t = torch.arange(4096) / SR
    noise = torch.randn(4096, generator=torch.Generator().manual_seed(0))
    hit = 0.3 * noise * torch.exp(-t / 0.03) + 0.2 * torch.sin(2 * math.pi * 440.0 * t)  # broadband onset + tone
    audio = torch.stack([torch.stack([hit, 0.5 * hit]), torch.stack([0.5 * hit, hit])])  # (2, 2, N)
    losses = [train_step(state, audio, step)["total"] for step in range(30)]
    assert losses[-1] < 0.5 * losses[0]
    assert losses[-1] < min(losses[:10])


def test_lr_schedule_warms_up_then_decays():
    c = CodecTrainConfig(preset="tiny", steps=100, lr=1e-3, warmup=10, min_lr_ratio=0.1)
    assert lr_at(0, c) == pytest.approx(1e-4)
    assert lr_at(9, c) == pytest.approx(1e-3)
    assert lr_at(55, c) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert lr_at(100, c) == pytest.approx(1e-4)


def test_level_difference_loss_sees_a_collapsed_stereo_image():
    from trainer.losses import _stereo_magnitudes, level_difference_loss

    g = torch.Generator().manual_seed(0)
    mono = torch.randn(1, 1, 8192, generator=g)
    panned = torch.cat([mono, 0.25 * mono], dim=1)  # left 12 dB louder
    centred = torch.cat([mono, mono], dim=1) * (0.5 * (1 + 0.25**2)) ** 0.5  # same energy, no level difference
    t = _stereo_magnitudes(panned, 1024, 256)
    assert float(level_difference_loss(t, t)) < 1e-6
    loss = float(level_difference_loss(_stereo_magnitudes(centred, 1024, 256), t))
    assert abs(loss - 2 * np.log(4.0)) < 0.05  # |ln(E_L/E_R)| of a 12 dB difference = ln 16
