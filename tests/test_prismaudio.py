"""The published PrismAudio model (engine.prismaudio): the official key set and parameter count of the full-size
model, parity with the reference implementation's outputs on the small random-weight checkpoint of
``../shared/official`` (its README gives the tolerances), the loader's errors and `render_features`' files.

The fixtures are read where they are (they are never copied into the repository); without them the parity,
loader and render tests skip with a message."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.errors import UserInputError
from engine.family import ModelFamily
from engine.prismaudio.architecture import DiTConfig, PrismAudioConfig
from engine.prismaudio.checkpoint import build_networks, load_networks
from engine.prismaudio.dit import apply_rotary
from engine.prismaudio.features_render import render_features
from engine.prismaudio.model_family import PrismAudioFamily, latent_length
from engine.prismaudio.sampler import reference_timesteps

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "official"
needs_fixtures = pytest.mark.skipif(
    not (OFFICIAL / "expected.safetensors").is_file(), reason=f"official PrismAudio fixtures not found at {OFFICIAL}"
)


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """The README's tolerance: relative error <= 1e-4 and max abs difference <= 1e-4 max|ref|."""
    assert actual.shape == expected.shape, f"{actual.shape=} {expected.shape=}"
    rel = float((actual.double() - expected.double()).norm() / expected.double().norm())
    worst = float((actual - expected).abs().max())
    assert rel <= 1e-4 and worst <= 1e-4 * float(expected.abs().max()), f"{rel=} {worst=}"


# ------------------------------------------------------------------------------------ architecture


def test_full_size_generator_has_518m_parameters():
    nets = build_networks(PrismAudioConfig(), "meta")
    assert nets.generator_parameters() == 518_188_160  # DiT 511,365,248 + conditioners 6,822,912 (OFFICIAL 1.1)
    assert sum(p.numel() for p in nets.dit.parameters()) == 511_365_248
    assert sum(p.numel() for p in nets.vae.encoder.parameters()) == 77_989_888
    assert sum(p.numel() for p in nets.vae.decoder.parameters()) == 78_122_626


@needs_fixtures
def test_full_size_model_has_exactly_the_official_keys_and_shapes():
    official = {}
    for line in (OFFICIAL / "prismaudio_keys_full.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, shape = line.split(" ", 1)
            official[key] = [int(s) for s in shape.strip("[] ").split(",") if s.strip()]
    ours = {k: list(v.shape) for k, v in build_networks(PrismAudioConfig(), "meta").official_state_dict().items()}
    assert len(official) == 850
    assert ours == official


def test_rotary_turns_the_first_32_dims_of_each_head_and_keeps_the_rest():
    x = torch.randn(1, 2, 5, 64)
    angles = build_networks(PrismAudioConfig(dit=DiTConfig(width=128, depth=1)), "cpu").dit.transformer.rotary_pos_emb(
        5
    )
    y = apply_rotary(x, angles)
    assert torch.equal(y[..., 32:], x[..., 32:])
    assert torch.equal(y[:, :, 0], x[:, :, 0])  # position 0 (the timestep token) is not turned
    torch.testing.assert_close(y[..., :32].norm(dim=-1), x[..., :32].norm(dim=-1))  # a rotation
    # NeoX halves: dim i pairs with dim i + 16, at frequency 10000^(-i/16)
    theta = 3 * 10000.0 ** (-torch.arange(16) / 16)
    expect = x[0, 0, 3, :16] * theta.cos() - x[0, 0, 3, 16:32] * theta.sin()
    torch.testing.assert_close(y[0, 0, 3, :16], expect)


def naive_linear_resample(a: torch.Tensor, n: int) -> torch.Tensor:
    """(F, D) -> (n, D), linear with half-pixel centres (align_corners False), written out as a loop."""
    out = []
    for i in range(n):
        src = max((i + 0.5) * a.shape[0] / n - 0.5, 0.0)
        i0 = min(int(src), a.shape[0] - 1)
        i1, w = min(i0 + 1, a.shape[0] - 1), src - i0
        out.append((1 - w) * a[i0] + w * a[i1])
    return torch.stack(out)


def naive_dit(sd: dict, heads: int, x: torch.Tensor, t: float, ctx: torch.Tensor, add, sync) -> torch.Tensor:
    """OFFICIAL.md 1.5 written out for one sample, head by head: x (C, N), ctx (L, D), add (F, D), sync (1|N, D)."""

    def lin(h, k, bias=False):
        return h @ sd[k + ".weight"].T + (sd[k + ".bias"] if bias else 0)

    def mlp(h, k, bias=False):
        return lin(torch.nn.functional.silu(lin(h, k + ".0", bias)), k + ".2", bias)

    def norm(h, k):
        mu, var = h.mean(-1, keepdim=True), h.var(-1, unbiased=False, keepdim=True)
        return (h - mu) / torch.sqrt(var + 1e-5) * sd[k + ".gamma"] + sd[k + ".beta"]

    def rms(h, w):
        return h / torch.sqrt((h * h).mean(-1, keepdim=True) + torch.finfo(h.dtype).eps) * w

    def rope(h):  # (n, 64): dim i < 16 pairs with i + 16 at angle p 10000^(-i/16); dims 32.. untouched
        inv_freq = (10000.0 ** (-torch.arange(16, dtype=torch.float32) / 16)).to(h.dtype)  # a float32 buffer
        ang = torch.arange(h.shape[0], dtype=h.dtype)[:, None] * inv_freq
        a, b = h[:, :16], h[:, 16:32]
        return torch.cat([a * ang.cos() - b * ang.sin(), b * ang.cos() + a * ang.sin(), h[:, 32:]], dim=1)

    def attend(q, k, v, pre, rotary):
        d = q.shape[1] // heads
        outs = []
        for j in range(heads):
            qj = rms(q[:, j * d : (j + 1) * d], sd[pre + ".q_norm.weight"])
            kj = rms(k[:, j * d : (j + 1) * d], sd[pre + ".k_norm.weight"])
            if rotary:
                qj, kj = rope(qj), rope(kj)
            outs.append(torch.softmax(qj @ kj.T / d**0.5, dim=-1) @ v[:, j * d : (j + 1) * d])
        return lin(torch.cat(outs, dim=1), pre + ".to_out")

    f = 2 * torch.pi * t * sd["timestep_features.weight"][:, 0]
    temb = mlp(torch.cat([f.cos(), f.sin()]), "to_timestep_embed", bias=True)
    x = sd["preprocess_conv.weight"][:, :, 0] @ x + x
    h = x.T @ sd["transformer.project_in.weight"].T
    h = h + torch.sigmoid(sd["transformer.gate"][0]) * naive_linear_resample(mlp(add, "to_add_embed"), x.shape[1])
    h = torch.cat([temb[None], h + torch.sigmoid(sd["transformer.sync_gate"][0]) * mlp(sync, "to_sync_embed")])
    c = mlp(ctx, "to_cond_embed")
    for i in range(len({k.split(".")[2] for k in sd if k.startswith("transformer.layers.")})):
        p = f"transformer.layers.{i}"
        q, k, v = lin(norm(h, p + ".pre_norm"), p + ".self_attn.to_qkv").chunk(3, dim=1)
        h = h + attend(q, k, v, p + ".self_attn", rotary=True)
        k, v = lin(c, p + ".cross_attn.to_kv").chunk(2, dim=1)
        h = h + attend(lin(norm(h, p + ".cross_attend_norm"), p + ".cross_attn.to_q"), k, v, p + ".cross_attn", False)
        value, gate = lin(norm(h, p + ".ff_norm"), p + ".ff.ff.0.proj", bias=True).chunk(2, dim=1)
        h = h + lin(value * torch.nn.functional.silu(gate), p + ".ff.ff.2", bias=True)
    o = (h @ sd["transformer.project_out.weight"].T)[1:].T  # (C, N)
    return sd["postprocess_conv.weight"][:, :, 0] @ o + o


@pytest.mark.parametrize(("width", "depth", "n", "frames", "sync_len"), [(128, 3, 37, 5, 37), (256, 1, 20, 9, 1)])
def test_dit_matches_a_loop_written_from_the_facts(width, depth, n, frames, sync_len):
    """Other sizes and lengths than the fixtures': our batched DiT against OFFICIAL.md 1.5 written as a loop."""
    torch.manual_seed(width)
    dit = build_networks(
        PrismAudioConfig(
            dit=DiTConfig(width=width, depth=depth, cond_token_dim=width, add_token_dim=width, sync_token_dim=width)
        ),
        "cpu",
    ).dit
    with torch.no_grad():
        for name, p in dit.named_parameters():  # nothing zero, so every path counts
            gain = name.endswith(("gamma", "norm.weight"))
            p.copy_(gain + torch.randn_like(p) * (p.shape[-1] ** -0.5 if p.ndim >= 2 and not gain else 0.3))
    dit = dit.double()
    x, ctx = torch.randn(1, 64, n, dtype=torch.float64), torch.randn(1, frames + 4, width, dtype=torch.float64)
    add, sync = torch.randn(1, frames, width, dtype=torch.float64), torch.randn(1, sync_len, width, dtype=torch.float64)
    with torch.no_grad():
        ours = dit(x, torch.full((1,), 0.37, dtype=torch.float64), ctx, add, sync)[0]
    sd = dit.state_dict()
    expect = naive_dit(sd, width // 64, x[0], 0.37, ctx[0], add[0], sync[0])
    torch.testing.assert_close(ours, expect, rtol=1e-9, atol=1e-9 * float(expect.abs().max()))


def test_reference_grid_is_the_official_linspace():
    assert torch.equal(reference_timesteps(24), torch.linspace(1, 0, 25))


def test_latent_length_is_the_official_rounding():
    assert [latent_length(d) for d in (9.0, 10.0, 5.0, 1.0)] == [194, 215, 108, 22]


# ------------------------------------------------------------------------------------------ parity


@pytest.fixture(scope="module")
def official():
    """(family, inputs, expected) from the small official-format checkpoint and its reference outputs."""
    if not (OFFICIAL / "expected.safetensors").is_file():
        pytest.skip(f"official PrismAudio fixtures not found at {OFFICIAL}")
    from safetensors.torch import load_file

    nets = load_networks(OFFICIAL / "prismaudio_small.ckpt", OFFICIAL / "vae_small.ckpt")
    return (
        PrismAudioFamily(nets),
        load_file(OFFICIAL / "inputs.safetensors"),
        load_file(OFFICIAL / "expected.safetensors"),
    )


def features_of(inputs: dict, d: str) -> dict:
    feats = {k: inputs[f"{k}_{d}"].numpy() for k in ("video_features", "text_features", "sync_features")}
    return {**feats, "duration": float(inputs[f"duration_{d}"])}


@needs_fixtures
@pytest.mark.parametrize("d", ["9s", "5s"])
def test_conditioners_match_the_reference(official, d):
    family, inputs, expected = official
    cond = family.networks.conditioners
    with torch.no_grad():
        close(cond.video(inputs[f"video_features_{d}"][None]), expected[f"cond_video_{d}"])
        close(cond.text(inputs[f"text_features_{d}"][None]), expected[f"cond_text_{d}"])
        close(cond.sync(inputs[f"sync_features_{d}"][None]), expected[f"cond_sync_{d}"])  # int(194 S / 216) tokens


def window(family: PrismAudioFamily, inputs: dict, d: str, mode: str):
    f = features_of(inputs, d)
    prepared = family.prepare_features(
        torch.from_numpy(f["video_features"]), torch.from_numpy(f["sync_features"]), f["duration"], mode
    )
    text = family.text_conditions(torch.from_numpy(f["text_features"]))
    return family.window_conditions(prepared, text, 0, prepared.n_latent)


@needs_fixtures
@pytest.mark.parametrize(("mode", "d"), [("official", "9s"), ("official", "5s"), ("features", "9s")])
@pytest.mark.parametrize("t", [1.0, 0.5])
def test_single_model_calls_match_the_reference(official, mode, d, t):
    from engine.family import Guidance

    family, inputs, expected = official
    cond, uncond = window(family, inputs, d, mode)
    x, tt = inputs[f"noise_{d}"], torch.full((1,), t)
    with torch.no_grad():
        for cfg in (1, 5):
            v = family.guided_velocity(cond, uncond, Guidance(float(cfg), (0.0, 1.0), None))(x, tt)
            close(v, expected[f"dit_{mode}_t{t}_cfg{cfg}_{d}"])
        # the halves batched agree with two separate calls (up to the last bits of a batched matmul)
        c, u = family.model_call(x, tt, cond), family.model_call(x, tt, uncond)
        close(family.guided_velocity(cond, uncond, Guidance(5.0, (0.0, 1.0), None))(x, tt), u + 5 * (c - u))


@needs_fixtures
@pytest.mark.parametrize(("mode", "d"), [("official", "9s"), ("official", "5s"), ("features", "9s")])
def test_24_step_sampler_and_decode_match_the_reference(official, mode, d):
    from engine.prismaudio.features_render import sample_latent

    family, inputs, expected = official
    seed = int(inputs[f"seed_{d}"])
    assert torch.equal(family.noise(seed, inputs[f"noise_{d}"].shape[-1]), inputs[f"noise_{d}"])
    z = sample_latent(family, features_of(inputs, d), seed, 24, 5.0, mode)
    close(z, expected[f"latent_{mode}_{d}"])
    if mode == "official":
        with torch.no_grad():
            audio = family.networks.vae.decode(expected[f"latent_official_{d}"])
        close(audio, expected[f"audio_raw_official_{d}"])
        close(audio / audio.abs().max(), expected[f"audio_norm_official_{d}"])


@needs_fixtures
def test_features_mode_resamples_sync_to_any_duration(official):
    family, inputs, _ = official
    f = features_of(inputs, "5s")  # the reference crashes here (100 sync tokens, N = 108)
    prepared = family.prepare_features(
        torch.from_numpy(f["video_features"]), torch.from_numpy(f["sync_features"]), 5.0, "features"
    )
    cond, _ = family.window_conditions(prepared, family.text_conditions(torch.from_numpy(f["text_features"])), 0, 108)
    assert cond.sync.shape == (1, 108, 192)
    with torch.no_grad():
        assert family.model_call(inputs["noise_5s"], torch.ones(1), cond).shape == (1, 64, 108)


@needs_fixtures
def test_official_mode_ignores_the_sync_features(official):
    family, inputs, _ = official
    cond, _ = window(family, inputs, "9s", "official")
    assert torch.equal(cond.sync, family.networks.dit.empty_sync_feat[None])  # (1, 1, D), broadcast over time
    f = features_of(inputs, "9s")
    other = family.prepare_features(torch.from_numpy(f["video_features"]), torch.zeros(216, 768), 9.0, "official")
    text = family.text_conditions(torch.from_numpy(f["text_features"]))
    assert torch.equal(family.window_conditions(other, text, 0, 194)[0].sync, cond.sync)


@needs_fixtures
def test_vae_encoder_gives_latents_at_the_hop(official):
    family, _, _ = official
    audio = torch.randn(1, 2, 3 * 2048, generator=torch.Generator().manual_seed(0))
    z = family.encode_audio(audio)
    assert z.shape == (1, 64, 3) and z.dtype == torch.float32
    assert family.decode_latent(z, 3 * 2048 + 5).shape == (1, 2, 3 * 2048 + 5)  # zero-padded to the length asked
    sampled = family.networks.vae.encode(audio, generator=torch.Generator().manual_seed(1))
    assert sampled.shape == z.shape and not torch.equal(sampled, z)


def test_the_family_implements_the_protocol():
    assert isinstance(PrismAudioFamily(build_networks(PrismAudioConfig(), "meta")), ModelFamily)


# ------------------------------------------------------------------------------------------ loader


@needs_fixtures
def test_vae_ckpt_replaces_the_vae_inside_the_checkpoint(official):
    family, _, _ = official
    vae = torch.load(OFFICIAL / "vae_small.ckpt", weights_only=True, map_location="cpu")["state_dict"]
    ours = family.networks.vae.state_dict()
    assert torch.equal(ours["decoder.layers.0.weight_v"], vae["autoencoder.decoder.layers.0.weight_v"])
    inside = load_networks(OFFICIAL / "prismaudio_small.ckpt").vae.state_dict()
    assert not torch.equal(inside["decoder.layers.0.weight_v"], ours["decoder.layers.0.weight_v"])


@needs_fixtures
def test_loader_names_missing_and_unexpected_keys(tmp_path):
    sd = torch.load(OFFICIAL / "prismaudio_small.ckpt", weights_only=True, map_location="cpu")
    del sd["model.model.transformer.layers.1.ff_norm.beta"]
    sd["model.model.transformer.extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "bad.ckpt")
    with pytest.raises(UserInputError) as err:
        load_networks(tmp_path / "bad.ckpt")
    message = str(err.value)
    assert "\n" not in message
    assert "missing keys model.model.transformer.layers.1.ff_norm.beta" in message
    assert "unexpected keys model.model.transformer.extra.weight" in message


@needs_fixtures
def test_loader_names_a_wrong_shape(tmp_path):
    sd = torch.load(OFFICIAL / "prismaudio_small.ckpt", weights_only=True, map_location="cpu")
    sd["model.model.transformer.gate"] = torch.zeros(1, 1, 7)
    torch.save(sd, tmp_path / "bad.ckpt")
    with pytest.raises(UserInputError, match=r"wrong shapes model\.model\.transformer\.gate \[1, 1, 7\]"):
        load_networks(tmp_path / "bad.ckpt")


@needs_fixtures
def test_a_vae_ckpt_with_a_missing_key_is_named(tmp_path):
    vae = torch.load(OFFICIAL / "vae_small.ckpt", weights_only=True, map_location="cpu")
    del vae["state_dict"]["autoencoder.decoder.layers.6.alpha"]
    vae["state_dict"]["discriminator.anything"] = torch.zeros(1)  # other training entries are ignored
    torch.save(vae, tmp_path / "vae.ckpt")
    with pytest.raises(UserInputError, match=r"vae\.ckpt .*missing keys autoencoder\.decoder\.layers\.6\.alpha$"):
        load_networks(OFFICIAL / "prismaudio_small.ckpt", tmp_path / "vae.ckpt")


@needs_fixtures
def test_a_truncated_checkpoint_is_one_line(tmp_path):
    data = (OFFICIAL / "prismaudio_small.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserInputError, match="truncated or wrong file") as err:
        load_networks(tmp_path / "cut.ckpt")
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------- render_features


@pytest.fixture
def model_folder(tmp_path):
    """A model folder pointing at the fixtures (symbolic links: nothing is copied)."""
    if not (OFFICIAL / "prismaudio_small.ckpt").is_file():
        pytest.skip(f"official PrismAudio fixtures not found at {OFFICIAL}")
    folder = tmp_path / "model"
    folder.mkdir()
    os.symlink(OFFICIAL / "prismaudio_small.ckpt", folder / "prismaudio.ckpt")
    os.symlink(OFFICIAL / "vae_small.ckpt", folder / "vae.ckpt")
    return folder


def write_features(path: Path, duration: float, drop: str | None = None, override: dict | None = None) -> Path:
    """A features file of ``duration`` s in the official layout (random values), ``drop`` left out."""
    g = np.random.default_rng(0)
    s = 8 * ((int(25 * duration) - 16) // 8 + 1)
    feats = {
        "video_features": g.standard_normal((int(4 * duration), 1024)).astype(np.float32),
        "text_features": g.standard_normal((7, 1024)).astype(np.float32),
        "sync_features": g.standard_normal((s, 768)).astype(np.float32),
        "duration": np.float64(duration),
        **(override or {}),
    }
    feats.pop(drop, None)
    np.savez(path, **feats)
    return path


@pytest.mark.parametrize(
    ("duration", "sync"),
    [(1.3, "features"), (30.0, "features"), (2.71, "official"), (0.5, "official")],
)
def test_raw_render_writes_the_decoded_audio_and_the_latent(model_folder, tmp_path, duration, sync):
    npz = write_features(tmp_path / "clip.npz", duration)
    out = tmp_path / "out"
    info = render_features(npz, model_folder, out, seed=3, steps=2, sync=sync, raw=True)
    n, frames = round(duration * 44100), round(44100 / 2048 * duration)
    assert info["n_samples"] == n and info["latent_frames"] == frames
    audio, rate = sf.read(out / "clip.wav", dtype="float32", always_2d=True)
    assert rate == 44100 and audio.shape == (n, 2) and sf.info(out / "clip.wav").subtype == "FLOAT"
    latent = np.load(out / "clip.latent.npy")
    assert latent.shape == (64, frames) and latent.dtype == np.float32
    family = PrismAudioFamily.from_folder(model_folder)
    decoded = family.decode_latent(torch.from_numpy(latent)[None], n)[0].T.numpy()
    np.testing.assert_array_equal(audio, decoded)  # nothing changed after decoding
    assert sorted(p.name for p in out.iterdir()) == ["clip.latent.npy", "clip.wav"]


def test_normal_render_is_exactly_as_long_as_the_clip(model_folder, tmp_path):
    npz = write_features(tmp_path / "take.npz", 1.7)
    render_features(npz, model_folder, tmp_path / "out", seed=0, steps=1)
    assert sf.info(tmp_path / "out" / "take.wav").frames == round(1.7 * 44100)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["take.wav"]


@pytest.mark.parametrize(
    ("drop", "override", "match"),
    [
        ("text_features", {}, "lacks text_features"),
        (None, {"video_features": np.zeros((4, 512), np.float32)}, r"video_features must be \(n, 1024\)"),
        (None, {"sync_features": np.zeros((12, 768), np.float32)}, "multiple of 8"),
        (None, {"duration": np.float64(-1.0)}, "positive number of seconds"),
    ],
)
def test_bad_features_files_leave_nothing_behind(model_folder, tmp_path, drop, override, match):
    npz = write_features(tmp_path / "bad.npz", 1.0, drop, override)
    with pytest.raises(UserInputError, match=match) as err:
        render_features(npz, model_folder, tmp_path / "out", seed=0, steps=1)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_a_truncated_model_file_leaves_nothing_behind(model_folder, tmp_path):
    data = (OFFICIAL / "prismaudio_small.ckpt").read_bytes()
    (model_folder / "prismaudio.ckpt").unlink()
    (model_folder / "prismaudio.ckpt").write_bytes(data[:1000])
    npz = write_features(tmp_path / "clip.npz", 1.0)
    with pytest.raises(UserInputError, match="truncated or wrong file"):
        render_features(npz, model_folder, tmp_path / "out", seed=0, steps=1)
    assert not (tmp_path / "out").exists()


def test_the_render_command_takes_precomputed_features(model_folder, tmp_path, capsys):
    """``render --features FILE.npz --model FOLDER --raw``: the command of DESIGN's contract, one JSON line,
    the WAV and the latent; a features file beside videos is refused in one line and writes nothing."""
    import json

    import launch

    npz = write_features(tmp_path / "clip.npz", 2.0)
    out = tmp_path / "out"
    argv = ["render", "--features", npz, "--model", model_folder, "--out", out, "--seed", "4", "--steps", "2"]
    assert launch.main([*argv, "--sync", "features", "--raw"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["seed"] == 4 and line["cfg"] == 5.0 and line["sync"] == "features"
    assert np.load(line["files"]["latent"]).shape == (64, round(44100 / 2048 * 2.0))
    assert launch.main([*argv, tmp_path / "v.mp4"]) == 2
    assert "not both" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["clip.latent.npy", "clip.wav"]
