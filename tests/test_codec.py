"""The stereo codec: sizes, exact lengths, the fixed analysis/synthesis, files, its loss and resumable training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.bench.spatial import gcc_phat
from engine.codec import CODEC_PRESETS, Codec, CodecConfig, load_codec, read_codec_metadata, save_codec
from engine.errors import UserInputError
from trainer.codec_training import (
    CodecTrainConfig,
    latent_stats_clips,
    lr_at,
    new_training_state,
    train_codec,
    train_step,
)
from trainer.losses import codec_feature_loss

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


def test_normalisation_round_trips():
    codec = _codec()
    audio = _noise(5000)
    with torch.no_grad():
        raw = codec.encode_raw(audio)
        codec.set_latent_stats(torch.full((TINY.latent_dim,), 0.2), torch.full((TINY.latent_dim,), 0.5))
        z = codec.encode(audio)
    torch.testing.assert_close(z, (raw - 0.2) / 0.5)
    assert raw.shape == (2, TINY.latent_dim, 3)


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
    with pytest.raises(ValueError, match="n_fft >= 2 \\* stft_hop"):
        CodecConfig(n_fft=256, stft_hop=256)
    with pytest.raises(ValueError, match="env_steps must divide"):
        CodecConfig(env_steps=3)


# ----------------------------------------------------------------------------- files and determinism


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    codec = _codec()
    codec.set_latent_stats(torch.linspace(-0.1, 0.1, TINY.latent_dim), torch.linspace(0.3, 0.6, TINY.latent_dim))
    with torch.no_grad():  # weights are stored in float16: round them first so the outputs must match exactly
        for p in codec.parameters():
            p.copy_(p.half().float())
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


def test_old_format_files_are_refused_with_a_clear_message(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "old.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": "foley-codec", "version": "2", "config": "{}"})
    with pytest.raises(UserInputError, match="version 2 codec"):
        load_codec(path)


# ----------------------------------------------------------------------------- analysis and synthesis


def _panned_noise(gain_left: float, gain_right: float, n: int = 6 * 2048) -> torch.Tensor:
    """(1, 2, n) white noise with the given channel gains (amplitude panning, no time difference)."""
    s = torch.randn(n, generator=torch.Generator().manual_seed(5)) * 0.1
    return torch.stack([gain_left * s, gain_right * s])[None]


def _ild(codec: Codec, raw: torch.Tensor) -> torch.Tensor:
    return raw[:, -codec.config.ild_bands :] * codec.config.ild_limit_db  # dB


def test_analysis_reads_the_level_difference_and_total_magnitude():
    codec = Codec(config=CODEC_PRESETS["default"])
    cfg = codec.config
    f = codec.analyse(_panned_noise(1.0, 0.25))  # left 12.04 dB louder
    assert f["latent"].shape == (1, cfg.latent_dim, 6) and cfg.latent_dim == 40 + 8 * 4 + 16
    assert f["log_mag"].shape == f["features"].shape == (1, cfg.bins, 6 * 8)
    inner = _ild(codec, f["latent"])[..., 1:-1]  # latent frames away from the padded ends
    torch.testing.assert_close(inner, torch.full_like(inner, 20 * math.log10(4.0)), atol=1e-3, rtol=0)
    centred = codec.analyse(_panned_noise(1.0, 1.0))
    assert _ild(codec, centred["latent"]).abs().max() < 1e-3
    assert _ild(codec, codec.analyse(torch.zeros(1, 2, 4096))["latent"]).abs().max() == 0.0  # silence: centre
    # P^2 = (|L|^2 + |R|^2) / 2: a centred source's P is its own magnitude, as a mono clip would read
    mono = codec.analyse(_panned_noise(1.0, 1.0)[:, :1].expand(1, 2, -1))
    torch.testing.assert_close(mono["log_mag"], centred["log_mag"])


def test_envelope_keeps_an_onset_inside_its_latent_frame():
    """A click 3/4 of the way into latent frame 2: the decoded power rises in that sub-frame, not before."""
    codec = Codec(config=CODEC_PRESETS["default"])
    cfg = codec.config
    audio = torch.zeros(1, 2, 5 * cfg.hop)
    at = 2 * cfg.hop + 3 * cfg.hop // 4
    audio[..., at : at + 64] = torch.randn(64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        frames = codec.estimate_log_mag(codec.analyse(audio)["latent"]).exp().square().sum(dim=1)[0]  # (8T,)
    first = int(torch.nonzero(frames > 1e-3 * frames.max())[0])
    assert abs(first * cfg.stft_hop - at) <= cfg.n_fft // 2 + cfg.hop // cfg.env_steps


def test_stereo_channels_are_coded_exactly_and_steer_the_decoded_image():
    codec = _codec()
    audio = _panned_noise(1.0, 0.25)
    with torch.no_grad():
        z = codec.encode(audio)
        out = codec.decode(z)
        mirrored = z.clone()
        mirrored[:, -TINY.ild_bands :] *= -1  # identity statistics: the raw level differences flip sign
        flipped = codec.decode(mirrored)
    level = lambda x: 10 * math.log10(x[0, 0].square().sum() / x[0, 1].square().sum())  # noqa: E731
    assert level(out) > 6.0 and level(flipped) < -6.0


def test_untrained_decoder_decodes_the_analysis_estimate_of_stationary_noise():
    codec = Codec(config=CODEC_PRESETS["default"])
    f = codec.analyse(_panned_noise(1.0, 1.0))
    with torch.no_grad():
        decoded = codec.decode_log_mag(codec.encode(_panned_noise(1.0, 1.0)))
    torch.testing.assert_close(decoded, codec.estimate_log_mag(f["latent"]))
    # white noise: the separable estimate is within a few dB of every bin's level (away from the edges)
    err = (decoded - f["log_mag"])[:, 5:-5, 8:-8]
    assert err.mean().abs() < 0.3 and err.abs().mean() < 0.7


def test_band_matrices_cover_every_bin_once_and_interpolate():
    from engine.codec import band_matrices

    cfg = CODEC_PRESETS["default"]
    analysis, synthesis = band_matrices(cfg, 16)
    assert analysis.shape == (16, cfg.bins) and synthesis.shape == (cfg.bins, 16)
    assert torch.equal(analysis.sum(0), torch.ones(cfg.bins))
    torch.testing.assert_close(synthesis.sum(1), torch.ones(cfg.bins))
    ramp = torch.arange(16, dtype=torch.float32)
    assert torch.all(torch.diff(synthesis @ ramp) >= -1e-6)  # a rising band profile stays monotone per bin


def test_pan_law_delay_inverts_the_world_spatialiser():
    """The level difference of `engine.stereo.pan_gains` maps back to `engine.stereo.itd_seconds`."""
    from engine import stereo
    from engine.codec import pan_law_delay, stereo_gains

    x = np.array([-1.5, -0.7, 0.0, 0.3, 1.0])
    g_left, g_right = stereo.pan_gains(x)
    ild = torch.tensor(20 * np.log10(g_left / g_right), dtype=torch.float64)
    torch.testing.assert_close(pan_law_delay(ild), torch.tensor(stereo.itd_seconds(x)), atol=1e-9, rtol=0)
    gl, gr = stereo_gains(ild)
    torch.testing.assert_close(gl**2 + gr**2, torch.full_like(gl, 2.0))
    torch.testing.assert_close(gl / gr, torch.tensor(g_left / g_right), rtol=1e-9, atol=0)


@pytest.mark.parametrize("gains,side", [((1.0, 0.3), "left"), ((0.3, 1.0), "right")])
def test_synthesis_of_the_analysis_keeps_level_time_and_spectrum(gains, side):
    """Analysis straight into synthesis (a perfect network): the image keeps its side in level and time."""
    codec = Codec(config=CODEC_PRESETS["default"])
    audio = _panned_noise(*gains)
    f = codec.analyse(audio)
    ild = f["latent"][:, -codec.config.ild_bands :]
    out = codec.synthesize(f["log_mag"], codec.ild_to_frames(ild), audio.shape[-1])
    assert out.shape == audio.shape
    e_left, e_right = out[0, 0].square().sum(), out[0, 1].square().sum()
    ild_out = 10 * math.log10(e_left / e_right)
    assert ild_out == pytest.approx(20 * math.log10(gains[0] / gains[1]), abs=1.0)
    tau, peak = gcc_phat(out[0, 0].numpy(), out[0, 1].numpy(), SR, max_tau=0.001)
    assert peak > 0.3 and (tau < -1e-4 if side == "left" else tau > 1e-4)  # source side leads in time
    again = codec.analyse(out)  # Griffin-Lim phase: magnitudes come back close to what was asked
    err = (again["log_mag"] - f["log_mag"])[..., 2:-2].abs().mean()
    assert err < 0.35


def test_decoding_is_deterministic():
    codec = _codec()
    audio = _noise(5000)
    with torch.no_grad():
        assert torch.equal(codec(audio), codec(audio))


# ----------------------------------------------------------------------------- the loss


def test_feature_loss_is_zero_at_the_target_and_measures_level_errors():
    codec = Codec(config=CODEC_PRESETS["default"])
    target = codec.analyse(_panned_noise(1.0, 0.25))["features"]
    loss, parts = codec_feature_loss(target, target)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    quieter = target - math.log(2.0) / 4.0  # every magnitude halved (LOG_MAG_SCALE = 4)
    _, parts = codec_feature_loss(quieter, target)
    assert parts["log_mag"] == pytest.approx(math.log(2.0), rel=1e-4)
    assert parts["convergence"] == pytest.approx(0.5, rel=0.01)


# ----------------------------------------------------------------------------- training


def _tiny_run(tmp_path, name: str, **kw) -> dict:
    opts = dict(
        preset="tiny",
        steps=4,
        batch=2,
        crop_seconds=0.2,
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
    totals = lambda r: [h["total"] for h in r["history"]]  # noqa: E731 - the whole run's, from the checkpoint
    assert len(totals(second)) == 4 and totals(straight) == totals(second)
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
    assert losses[-1] < 0.9 * losses[0]  # the decoder starts from the analysis estimate, already close
    assert losses[-1] < min(losses[:10])


def test_lr_schedule_warms_up_then_decays():
    c = CodecTrainConfig(preset="tiny", steps=100, lr=1e-3, warmup=10, min_lr_ratio=0.1)
    assert lr_at(0, c) == pytest.approx(1e-4)
    assert lr_at(9, c) == pytest.approx(1e-3)
    assert lr_at(55, c) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert lr_at(100, c) == pytest.approx(1e-4)


def test_declick_removes_one_sub_frame_spikes_and_keeps_steps():
    """A one-sub-frame spike in one envelope group goes; a two-sub-frame burst, a step and every
    shape and level-difference channel stay exactly as they were."""
    codec = _codec()
    cfg = codec.config
    g, j, t = cfg.env_groups, cfg.env_steps, 6
    lo = cfg.shape_bands
    seq = torch.zeros(1, g, t * j)  # raw envelope (natural-log power), one sequence of sub-frames per group
    seq[0, 0, 5] = 4.0  # a spike one sub-frame long (inside frame 1)
    seq[0, 1, 3:5] = 4.0  # a burst two sub-frames long, across the boundary of frames 0 and 1
    seq[0, 1, 8:] = -2.0  # a step down that lasts
    raw = torch.randn(1, cfg.latent_dim, t, generator=torch.Generator().manual_seed(2))
    raw[:, lo : lo + cfg.env_dim] = seq.reshape(1, g, t, j).transpose(2, 3).reshape(1, cfg.env_dim, t)
    z = (raw - codec.latent_mean[:, None]) / codec.latent_std[:, None]
    out = codec.declick(z)
    back = out * codec.latent_std[:, None] + codec.latent_mean[:, None]
    env = back[:, lo : lo + cfg.env_dim].reshape(1, g, j, t).transpose(2, 3).reshape(1, g, t * j)
    expected = seq.clone()
    expected[0, 0, 5] = 0.0
    torch.testing.assert_close(env, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, :lo], z[:, :lo], atol=0, rtol=0)
    torch.testing.assert_close(out[:, lo + cfg.env_dim :], z[:, lo + cfg.env_dim :], atol=0, rtol=0)
    torch.testing.assert_close(codec.declick(out), out)  # a second pass changes nothing more
    with pytest.raises(ValueError, match="latent must be"):
        codec.declick(z[:, :-1])


def _with_envelope(codec, seq: torch.Tensor) -> torch.Tensor:
    """A normalised latent (1, C, T) whose raw envelope is ``seq`` (1, G, J T), random elsewhere."""
    cfg = codec.config
    g, t = cfg.env_groups, seq.shape[-1] // cfg.env_steps
    raw = torch.randn(1, cfg.latent_dim, t, generator=torch.Generator().manual_seed(3))
    env = seq.reshape(1, g, t, cfg.env_steps).transpose(2, 3).reshape(1, cfg.env_dim, t)
    raw[:, cfg.shape_bands : cfg.shape_bands + cfg.env_dim] = env
    return (raw - codec.latent_mean[:, None]) / codec.latent_std[:, None]


def _envelope(codec, z: torch.Tensor) -> torch.Tensor:
    cfg = codec.config
    back = z * codec.latent_std[:, None] + codec.latent_mean[:, None]
    env = back[:, cfg.shape_bands : cfg.shape_bands + cfg.env_dim]
    return env.reshape(1, cfg.env_groups, cfg.env_steps, -1).transpose(2, 3).reshape(1, cfg.env_groups, -1)


def test_gate_turns_weak_rises_into_ramps_where_closed_and_passes_the_rest():
    """In closed frames a weak rise of every group becomes a ramp of ``slew`` nats per sub-frame that
    catches up, a strong rise and every fall pass untouched; open frames, shape and level differences are
    never touched."""
    codec = _codec()
    cfg = codec.config
    j, t = cfg.env_steps, 10
    seq = torch.zeros(1, cfg.env_groups, t * j)
    seq[0, :, j + 1 :] = 0.5  # a weak rise (0.5 nats in every group) inside frame 1, held
    seq[0, :, 6 * j :] = 3.5  # a strong rise (3 nats) at the start of frame 6
    seq[0, :, 8 * j :] = 1.0  # a fall in frame 8
    z = _with_envelope(codec, seq)
    closed = torch.ones(1, t, dtype=torch.bool)
    out = codec.gate_transients(z, closed, slew=0.1, pass_rise=1.5)
    env = _envelope(codec, out)
    expected = seq.clone()
    expected[0, :, j + 1 : j + 6] = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])  # the ramp, caught up in 5 sub-frames
    torch.testing.assert_close(env, expected, atol=1e-5, rtol=0)
    lo, hi = cfg.shape_bands, cfg.shape_bands + cfg.env_dim
    torch.testing.assert_close(out[:, :lo], z[:, :lo], atol=0, rtol=0)
    torch.testing.assert_close(out[:, hi:], z[:, hi:], atol=0, rtol=0)
    opened = closed.clone()
    opened[0, 1] = False  # the picture shows an event in frame 1: the weak rise passes there
    torch.testing.assert_close(_envelope(codec, codec.gate_transients(z, opened, 0.1, 1.5)), seq, atol=1e-5, rtol=0)
    assert torch.equal(codec.gate_transients(z, torch.zeros_like(closed)), z)
    with pytest.raises(ValueError, match="closed must be"):
        codec.gate_transients(z, closed[:, 1:])


def test_gate_judges_a_rise_by_the_take_not_by_the_ramp_behind_it():
    """A weak rise that is still being ramped does not turn the next weak rise into a strong one: the
    rise that passes the gate is the take's own, and the ramp goes on at ``slew`` from where it is."""
    codec = _codec()
    cfg = codec.config
    seq = torch.zeros(1, cfg.env_groups, 8 * cfg.env_steps)
    seq[0, :, 2:] = 1.0  # weak (1 nat < 1.5)
    seq[0, :, 3:] = 2.0  # weak again: 2 nats above the ramp, 1 above the take's previous sub-frame
    out = _envelope(codec, codec.gate_transients(_with_envelope(codec, seq), torch.ones(1, 8, dtype=torch.bool),
                                                 slew=0.5, pass_rise=1.5))  # fmt: skip
    torch.testing.assert_close(out[0, 0, :7], torch.tensor([0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.0]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("cfg", [CODEC_PRESETS["default"], CodecConfig(n_fft=1000, stft_hop=256)])
def test_inverse_stft_equals_torch_istft(cfg):
    """The written-out overlap-add (n_fft a multiple of the hop) and the fallback both invert `_stft` as
    ``torch.istft`` does, to float rounding, for any whole number of STFT frames."""
    codec = Codec(config=cfg)
    for n in (cfg.stft_hop * 7, cfg.stft_hop * 40):
        x = torch.randn(3, n, generator=torch.Generator().manual_seed(n))
        spec = codec._stft(x)
        padded = torch.cat([spec, torch.zeros_like(spec[..., :1])], dim=-1)
        ref = torch.istft(padded, cfg.n_fft, hop_length=cfg.stft_hop, window=codec.window, center=True, length=n)
        torch.testing.assert_close(codec._istft(spec, n), ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(codec._istft(spec, n)[:, cfg.n_fft : -cfg.n_fft], x[:, cfg.n_fft : -cfg.n_fft],
                                   atol=1e-4, rtol=1e-4)  # fmt: skip
