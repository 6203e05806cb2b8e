"""The generator DiT: shapes, neutral initialisation, masking, block identity, guidance batching, save/load,
the reference size, and a rectified-flow overfit on two examples."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from engine.cot import Cot
from engine.errors import UserInputError
from engine.generator import (
    GENERATOR_PRESETS,
    Conditions,
    Generator,
    build_generator,
    concat_conditions,
    encode_cot_blocks,
    encode_negative,
    load_generator,
    save_generator,
)
from engine.sampling import sample_ode

TINY = GENERATOR_PRESETS["tiny"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _perturb(model: Generator, seed: int = 0, std: float = 0.1, skip: tuple[str, ...] = ()) -> Generator:
    """Add noise to every parameter (so zero-initialised layers become live), except names containing ``skip``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not any(s in name for s in skip):
                p.add_(torch.randn(p.shape, generator=g) * std)
    return model


def _blocks(b: int, lengths=(5, 3, 4, 2), seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, n, 384, generator=g), torch.ones(b, n, dtype=torch.bool)) for n in lengths]


def _inputs(model: Generator, b: int = 2, n: int = 11, f: int = 6, seed: int = 2):
    """Random video (B, F, Dv), sync (B, T, Ds), latents (B, C, T) and times (B,) for ``model``."""
    cfg, g = model.config, torch.Generator().manual_seed(seed)
    video = torch.randn(b, f, cfg.video_dim, generator=g)
    sync = torch.randn(b, n, cfg.sync_dim, generator=g)
    x = torch.randn(b, cfg.latent_dim, n, generator=g)
    return video, sync, x, torch.rand(b, generator=g)


def _model(seed: int = 0, perturb: bool = True) -> Generator:
    torch.manual_seed(seed)
    model = Generator(config=TINY).eval()
    return _perturb(model, seed) if perturb else model


@pytest.mark.parametrize("n", [1, 2, 7, 33, TINY.max_frames])
def test_velocity_has_the_latent_shape_for_any_length(n):
    model = _model()
    video, sync, x, t = _inputs(model, n=n)
    cond = model.prepare_conditions(video, None, sync, _blocks(2), n)
    v = model.velocity(x, t, cond)
    assert v.shape == x.shape and torch.isfinite(v).all() and v.abs().max() > 0


def test_bad_shapes_are_reported_with_what_was_given():
    model = _model()
    video, sync, x, t = _inputs(model, n=9)
    cond = model.prepare_conditions(video, None, sync, _blocks(2), 9)
    with pytest.raises(ValueError, match=r"x.shape=torch.Size\(\[2, 8, 10\]\)"):
        model.velocity(torch.randn(2, TINY.latent_dim, 10), t, cond)
    with pytest.raises(ValueError, match="sync must be"):
        model.prepare_conditions(video, None, sync[:, :-1], _blocks(2), 9)
    with pytest.raises(ValueError, match="n_frames"):
        model.prepare_conditions(video, None, None, _blocks(2), TINY.max_frames + 1)


def test_seeded_build_and_forward_are_deterministic():
    a, b = _model(seed=3), _model(seed=3)
    for (ka, pa), (kb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(pa, pb)
    video, sync, x, t = _inputs(a)
    cond = a.prepare_conditions(video, None, sync, _blocks(2), 11)
    assert torch.equal(a.velocity(x, t, cond), a.velocity(x, t, cond))
    assert torch.equal(
        a.velocity(x, t, cond), b.velocity(x, t, b.prepare_conditions(video, None, sync, _blocks(2), 11))
    )


def test_fresh_model_predicts_zero_velocity():
    model = _model(perturb=False)
    video, sync, x, t = _inputs(model)
    v = model.velocity(x, t, model.prepare_conditions(video, None, sync, _blocks(2), 11))
    assert torch.equal(v, torch.zeros_like(v))


@pytest.mark.parametrize("path", ["sync", "video"])
def test_gated_paths_start_neutral(path):
    """With every other weight live, the zero-initialised value layer of a gate cuts its features off."""
    model = _perturb(_model(perturb=False), skip=(f"{path}_gate.value",))
    video, sync, x, t = _inputs(model)
    blocks = _blocks(2)
    base = model.prepare_conditions(video, None, sync, blocks, 11)
    if path == "sync":
        other = model.prepare_conditions(video, None, sync + torch.randn_like(sync), blocks, 11)
    else:  # change only the interpolated path: the cross-attention tokens stay those of `base`
        other = model.prepare_conditions(video + torch.randn_like(video), None, sync, blocks, 11)
        other.video, other.video_mask = base.video, base.video_mask
    torch.testing.assert_close(model.velocity(x, t, base), model.velocity(x, t, other), rtol=0, atol=0)
    live = _perturb(model, seed=9, skip=("nothing",))  # once the value layer is non-zero the path matters
    assert (live.velocity(x, t, base) - live.velocity(x, t, other)).abs().max() > 1e-3


def test_which_block_a_text_came_from_changes_the_output():
    """Cross-attention ignores the order of text tokens, so only the block-type embedding tells the blocks apart."""
    model = _model()
    video, sync, x, t = _inputs(model)
    blocks = _blocks(2)
    swapped = [blocks[1], blocks[0], blocks[2], blocks[3]]
    v = model.velocity(x, t, model.prepare_conditions(video, None, sync, blocks, 11))
    v_swapped = model.velocity(x, t, model.prepare_conditions(video, None, sync, swapped, 11))
    assert (v - v_swapped).abs().max() > 1e-3
    with torch.no_grad():
        model.block_embed.zero_()  # without the block embeddings the same swap changes nothing
    v = model.velocity(x, t, model.prepare_conditions(video, None, sync, blocks, 11))
    torch.testing.assert_close(v, model.velocity(x, t, model.prepare_conditions(video, None, sync, swapped, 11)))


def test_padded_text_and_video_tokens_do_not_influence_the_output():
    model = _model()
    video, sync, x, t = _inputs(model)
    blocks = _blocks(2)
    v = model.velocity(x, t, model.prepare_conditions(video, None, sync, blocks, 11))
    s, m = blocks[2]
    garbage = (torch.cat([s, 100 * torch.randn(2, 6, 384)], 1), torch.cat([m, torch.zeros(2, 6, dtype=torch.bool)], 1))
    padded_video = torch.cat([video, 100 * torch.randn(2, 3, video.shape[2])], 1)
    video_mask = torch.cat([torch.ones(2, 6, dtype=torch.bool), torch.zeros(2, 3, dtype=torch.bool)], 1)
    cond = model.prepare_conditions(padded_video, video_mask, sync, [blocks[0], blocks[1], garbage, blocks[3]], 11)
    torch.testing.assert_close(model.velocity(x, t, cond), v)


def test_empty_text_and_no_video_fall_back_to_the_null_tokens_without_nans():
    model = _model()
    _, _, x, t = _inputs(model)
    empty = [(s, torch.zeros_like(m)) for s, m in _blocks(2)]  # every block masked out: the empty CoT
    cond = model.prepare_conditions(None, None, None, empty, 11)
    assert cond.text_mask.sum(1).tolist() == [1, 1] and cond.video_mask.sum(1).tolist() == [1, 1]
    v = model.velocity(x, t, cond)
    assert torch.isfinite(v).all()
    video, sync, _, _ = _inputs(model)
    null = model.null_like(model.prepare_conditions(video, None, sync, _blocks(2), 11))
    torch.testing.assert_close(model.velocity(x, t, null), v)


def test_velocity_pair_equals_two_separate_calls():
    model = _model()
    video, sync, x, t = _inputs(model)
    cond = model.prepare_conditions(video, None, sync, _blocks(2), 11)
    negative = (torch.randn(2, 9, 384), torch.tensor([[True] * 9, [True] * 4 + [False] * 5]))
    uncond = model.null_like(cond, negative)
    assert uncond.text.shape[1] != cond.text.shape[1]  # the pair pads text to a common length
    v_c, v_u = model.velocity_pair(x, t, cond, uncond)
    torch.testing.assert_close(v_c, model.velocity(x, t, cond))
    torch.testing.assert_close(v_u, model.velocity(x, t, uncond))
    assert (v_c - v_u).abs().max() > 1e-3


def test_fixed_velocity_with_the_context_projected_once_is_the_same_to_the_bit():
    """A sampler's conditions stay fixed: their padded batch and every block's context keys and values,
    computed once, give exactly the velocities computed afresh at each step."""
    model = _model()
    video, sync, x, t = _inputs(model)
    cond = model.prepare_conditions(video, None, sync, _blocks(2), 11)
    branches = [cond, model.text_only_like(cond), model.null_like(cond)]
    fixed = model.fixed_velocity(branches)
    with torch.no_grad():
        for step in range(3):  # several steps reuse the one cache
            x_s, t_s = x + step, t * 0.5**step
            for got, want in zip(fixed(x_s, t_s), model.velocity_branches(x_s, t_s, branches), strict=True):
                torch.testing.assert_close(got, want, atol=0, rtol=0)
        cache = model.context_cache(cond)
        assert len(cache) == TINY.depth and cache[0][0].shape[:2] == (2, TINY.heads)
        torch.testing.assert_close(model.velocity(x, t, cond, cache), model.velocity(x, t, cond), atol=0, rtol=0)


def test_condition_dropout_nulls_whole_modalities_per_row():
    torch.manual_seed(0)
    model = _perturb(Generator(config=replace(TINY, cond_dropout=0.5)))
    video, sync, x, t = _inputs(model, b=64, n=5)
    cond = model.prepare_conditions(video, None, sync, _blocks(64), 5)
    null = model.null_like(cond)
    dropped = model.drop_conditions(cond, torch.Generator().manual_seed(0))
    again = model.drop_conditions(cond, torch.Generator().manual_seed(0))
    assert torch.equal(dropped.text_mask, again.text_mask) and torch.equal(dropped.sync, again.sync)
    no_video = (dropped.sync == null.sync).all(dim=(1, 2))  # (B,) rows whose video and sync were nulled
    no_text = (dropped.text_mask == null.text_mask).all(1)
    assert 16 < int(no_video.sum()) < 48 and 16 < int(no_text.sum()) < 48  # p = 0.5 of 64 rows
    assert torch.equal(no_video, (dropped.video_mask == null.video_mask).all(1))
    assert torch.equal(no_video, (dropped.video_seq == null.video_seq).all(dim=(1, 2)))
    both = no_video & no_text
    v = model.velocity(x[both], t[both], dropped.map(lambda z: z[both]))
    torch.testing.assert_close(v, model.velocity(x[both], t[both], null.map(lambda z: z[both])))


def test_concat_conditions_keeps_rows_and_repeat_interleaves():
    model = _model()
    video, sync, _, _ = _inputs(model)
    cond = model.prepare_conditions(video, None, sync, _blocks(2), 11)
    both = concat_conditions([cond, model.null_like(cond)])
    assert isinstance(both, Conditions) and both.batch_size == 4 and both.n_frames == 11
    rep = cond.repeat(3)
    assert rep.batch_size == 6 and torch.equal(rep.text[2], cond.text[0]) and torch.equal(rep.text[3], cond.text[1])


def test_save_load_round_trip(tmp_path):
    model = _model()
    path = tmp_path / "gen.safetensors"
    save_generator(model, path)
    loaded = load_generator(path)
    assert loaded.config == model.config
    video, sync, x, t = _inputs(model)
    blocks = _blocks(2)
    v = model.velocity(x, t, model.prepare_conditions(video, None, sync, blocks, 11))
    assert torch.equal(loaded.velocity(x, t, loaded.prepare_conditions(video, None, sync, blocks, 11)), v)
    with pytest.raises(UserInputError, match="not found"):
        load_generator(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(UserInputError, match="not a safetensors"):
        load_generator(tmp_path / "junk.safetensors")
    with pytest.raises(UserInputError, match="unknown generator preset"):
        build_generator("huge")


def test_cot_blocks_are_encoded_separately_with_empty_blocks_masked():
    """The one test that runs the packaged MiniLM encoder."""
    cots = [Cot("a wooden knock", "at 1.0 s", "", "left", negative="speech"), Cot("rain", "", "dry", "", "")]
    blocks = encode_cot_blocks(cots)
    assert len(blocks) == 4 and all(s.shape[2] == 384 for s, _ in blocks)
    assert blocks[2][1][0].sum() == 0 and blocks[2][1][1].sum() > 0  # empty aesthetic of CoT 0
    assert blocks[1][1][1].sum() == 0 and blocks[3][1][1].sum() == 0
    negative = encode_negative(cots)
    assert negative[1][0].sum() > 0 and negative[1][1].sum() == 0  # empty negative -> null text
    model = _model()
    cond = model.prepare_conditions(None, None, None, blocks, 4)
    uncond = model.null_like(cond, negative)
    assert uncond.text_mask[1].sum() == 1 and uncond.text_mask[1, 0]  # only the null slot
    v_c, v_u = model.velocity_pair(torch.randn(2, TINY.latent_dim, 4), torch.rand(2), cond, uncond)
    assert torch.isfinite(v_c).all() and torch.isfinite(v_u).all()


@pytest.mark.slow
def test_prismaudio_preset_builds_and_runs_at_the_reference_size():
    torch.manual_seed(0)
    model = build_generator("prismaudio").eval()
    n_params = model.num_parameters()
    assert 400e6 < n_params < 600e6, n_params
    cfg, n = model.config, 194  # 9 s at ~21.5 latent frames/s
    blocks = [(torch.randn(1, 20, 384), torch.ones(1, 20, dtype=torch.bool)) for _ in range(4)]
    with torch.no_grad():
        cond = model.prepare_conditions(
            torch.randn(1, 36, cfg.video_dim), None, torch.randn(1, n, cfg.sync_dim), blocks, n
        )
        v = model.velocity(torch.randn(1, cfg.latent_dim, n), torch.tensor([0.5]), cond)
    assert v.shape == (1, 64, n) and v.dtype == torch.float32 and torch.isfinite(v).all()


def test_rectified_flow_overfits_two_examples():
    """Flow matching ||v - (x1 - x0)||^2 with logit-normal t on two fixed examples; the ODE sample from fixed
    noise must land much closer to the examples than the untrained model's (which returns the noise)."""
    torch.manual_seed(0)
    model = Generator(config=TINY)
    n, g = 12, torch.Generator().manual_seed(5)
    x0 = torch.randn(2, TINY.latent_dim, n, generator=g) * 0.5 + torch.linspace(-1, 1, n)
    video, sync = torch.randn(2, 4, TINY.video_dim, generator=g), torch.randn(2, n, TINY.sync_dim, generator=g)
    blocks = _blocks(2, seed=6)
    noise = torch.randn(2, TINY.latent_dim, n, generator=g)

    def sample() -> torch.Tensor:
        with torch.no_grad():
            cond = model.prepare_conditions(video, None, sync, blocks, n)
            return sample_ode(lambda x, t: model.velocity(x, t, cond), noise, steps=16)

    before = (sample() - x0).pow(2).mean()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    batch = [(s.repeat(2, 1, 1), m.repeat(2, 1)) for s, m in blocks]  # each example twice per step
    for _ in range(60):
        x1 = torch.randn(4, TINY.latent_dim, n, generator=g)
        t = torch.sigmoid(torch.randn(4, generator=g))  # logit-normal timesteps
        data = x0.repeat(2, 1, 1)  # (4, C, T)
        xt = (1 - t[:, None, None]) * data + t[:, None, None] * x1
        cond = model.prepare_conditions(video.repeat(2, 1, 1), None, sync.repeat(2, 1, 1), batch, n)
        loss = (model.velocity(xt, t, cond) - (x1 - data)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = (sample() - x0).pow(2).mean()
    assert after < before / 5, (float(before), float(after))
