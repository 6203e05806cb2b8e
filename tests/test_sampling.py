"""Samplers: exact analytic cases for the ODE, the SDE step and the hybrid window."""

from __future__ import annotations

import math

import pytest
import torch

from engine.sampling import (
    euler_step,
    gaussian_log_prob,
    guided,
    sample_hybrid,
    sample_ode,
    sde_sigma,
    sde_step,
    timesteps,
)


def test_timesteps_run_from_one_to_zero():
    ts = timesteps(24)
    assert ts.shape == (25,) and ts[0] == 1.0 and ts[-1] == 0.0
    assert torch.all(ts[1:] < ts[:-1])
    shifted = timesteps(24, shift=3.0)
    assert shifted[1] > ts[1]  # more resolution near the noise end


def test_euler_on_a_straight_line_flow_lands_exactly():
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    out = sample_ode(lambda x, t: x1 - x0, x1, steps=7)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)


def test_sde_step_with_zero_noise_level_is_the_euler_step():
    g = torch.Generator().manual_seed(1)
    x, v, eps = (torch.randn(3, 5, generator=g) for _ in range(3))
    a = sde_step(x, 0.6, 0.55, v, eps, noise_level=0.0)
    b = euler_step(x, 0.6, 0.55, v)
    torch.testing.assert_close(a.x_next, b.x_next)
    torch.testing.assert_close(a.mean, b.mean)


def test_sde_mean_matches_the_expanded_form_of_the_reference():
    g = torch.Generator().manual_seed(2)
    x, v = torch.randn(2, 6, generator=g), torch.randn(2, 6, generator=g)
    t, tn, a = 0.7, 0.65, 0.7
    out = sde_step(x, t, tn, v, None, noise_level=a)
    s2, dt = (a**2) * t / (1 - t), tn - t
    expected = x * (1 + s2 * dt / (2 * t)) + v * (1 + s2 * (1 - t) / (2 * t)) * dt
    torch.testing.assert_close(out.mean, expected)
    assert math.isclose(float(out.std), math.sqrt(s2) * math.sqrt(-dt), rel_tol=1e-6)


def test_sigma_at_t_one_uses_the_next_grid_time():
    assert torch.isfinite(sde_sigma(1.0, 0.95, 0.7))
    torch.testing.assert_close(sde_sigma(1.0, 0.95, 0.7), sde_sigma(0.95, 0.9, 0.7))


def test_log_prob_matches_a_direct_gaussian_density():
    g = torch.Generator().manual_seed(3)
    x, v, eps = torch.randn(4, 3, 5, generator=g), torch.randn(4, 3, 5, generator=g), torch.randn(4, 3, 5, generator=g)
    out = sde_step(x, 0.5, 0.45, v, eps, noise_level=0.7, reduce="sum")
    direct = torch.distributions.Normal(out.mean, float(out.std)).log_prob(out.x_next).flatten(1).sum(1)
    torch.testing.assert_close(out.log_prob, direct)
    mean_red = gaussian_log_prob(out.x_next, out.mean, out.std, reduce="mean")
    torch.testing.assert_close(mean_red * 15, direct)


def _gaussian_velocity(mu: float, s: float):
    """Exact velocity E[x1 - x0 | x_t] for data N(mu, s^2) and noise N(0, 1)."""

    def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.reshape(-1, 1)
        var = (1 - t) ** 2 * s**2 + t**2
        cov = t - (1 - t) * s**2
        return -mu + cov / var * (x - (1 - t) * mu)

    return v


def test_sde_keeps_the_marginals_of_the_flow():
    mu, s = 1.5, 0.5
    g = torch.Generator().manual_seed(4)
    x1 = torch.randn(100_000, 1, generator=g)
    traj = sample_hybrid(_gaussian_velocity(mu, s), x1, steps=60, window=(0, 60), noise_level=0.7, generator=g)
    out = traj.states[-1]
    assert abs(float(out.mean()) - mu) < 0.03
    assert abs(float(out.std()) - s) < 0.03
    ode = sample_ode(_gaussian_velocity(mu, s), x1, steps=60)
    assert abs(float(ode.mean()) - mu) < 0.02 and abs(float(ode.std()) - s) < 0.02  # Euler error is O(1/steps)


def test_hybrid_window_confines_the_noise_and_records_log_probs():
    v = _gaussian_velocity(0.0, 1.0)
    x1 = torch.randn(6, 4, generator=torch.Generator().manual_seed(5))
    traj = sample_hybrid(v, x1, steps=10, window=(3, 2), generator=torch.Generator().manual_seed(6))
    assert traj.sde_steps == [3, 4] and set(traj.log_probs) == {3, 4}
    ode = sample_hybrid(v, x1, steps=10, window=(0, 0))
    for i in range(3):  # identical before the window
        torch.testing.assert_close(traj.states[i + 1], ode.states[i + 1])
    assert not torch.allclose(traj.states[5], ode.states[5])


def test_a_shared_prefix_runs_once_and_the_takes_part_at_the_window():
    v = _gaussian_velocity(0.5, 0.8)
    x1 = torch.randn(1, 4, generator=torch.Generator().manual_seed(7))
    calls = []

    def counted(x, t):
        calls.append(x.shape[0])
        return v(x, t)

    shared = sample_hybrid(
        counted, x1, steps=10, window=(4, 2), generator=torch.Generator().manual_seed(8), branch=5, prefix_velocity=v
    )
    # the same as five takes of the repeated start with the same noise draws
    apart = sample_hybrid(v, x1.repeat(5, 1), steps=10, window=(4, 2), generator=torch.Generator().manual_seed(8))
    assert calls == [5] * 6  # the four prefix steps went to the batch-1 velocity
    assert [s.shape[0] for s in shared.states] == [1, 1, 1, 1, 5, 5, 5, 5, 5, 5, 5]
    torch.testing.assert_close(shared.states[4], apart.states[4])
    assert torch.equal(shared.states[4], shared.states[4][:1].expand(5, 4))  # one state for all takes
    for i in range(5, 11):
        torch.testing.assert_close(shared.states[i], apart.states[i])
    assert float(shared.states[-1].std(0).min()) > 1e-3  # the window's noise set them apart
    torch.testing.assert_close(shared.log_probs[5], apart.log_probs[5])
    with pytest.raises(ValueError, match="shared prefix"):
        sample_hybrid(v, x1.repeat(2, 1), steps=10, window=(4, 2), branch=2, prefix_velocity=v)


def test_guidance_interval_guides_only_inside_and_skips_the_unconditional_outside():
    g = torch.Generator().manual_seed(4)
    v_c, v_u = torch.randn(3, 4, 6, generator=g), torch.randn(3, 4, 6, generator=g)
    x = torch.zeros(3, 4, 6)
    pairs, singles = [], []

    def both(x, t):
        pairs.append(t)
        return v_c, v_u

    def cond_only(x, t):
        singles.append(t)
        return v_c

    v = guided(both, 3.0, interval=(0.4, 0.8), velocity_c=cond_only)
    full = v_u + 3.0 * (v_c - v_u)
    torch.testing.assert_close(v(x, torch.full((3,), 0.6)), full)  # inside
    torch.testing.assert_close(v(x, torch.full((3,), 0.4)), full)  # the ends belong to the interval
    torch.testing.assert_close(v(x, torch.full((3,), 0.8)), full)
    assert len(pairs) == 3 and not singles
    torch.testing.assert_close(v(x, torch.full((3,), 0.2)), v_c)  # below: conditional, one branch only
    torch.testing.assert_close(v(x, torch.full((3,), 0.9)), v_c)  # above
    assert len(pairs) == 3 and len(singles) == 2
    mixed = v(x, torch.tensor([0.2, 0.6, 0.9]))  # per sample
    torch.testing.assert_close(mixed, torch.stack([v_c[0], full[1], v_c[2]]))
    no_single = guided(both, 3.0, interval=(0.4, 0.8))(x, torch.full((3,), 0.1))  # without velocity_c
    torch.testing.assert_close(no_single, v_c)
    with pytest.raises(ValueError, match="interval"):
        guided(both, 3.0, interval=(0.8, 0.4))
    # in a whole ODE run, the steps at t < lo see only the conditional branch
    pairs.clear(), singles.clear()
    sample_ode(guided(both, 3.0, interval=(0.45, 1.0), velocity_c=cond_only), torch.zeros(3, 4, 6), steps=10)
    assert [round(float(t[0]), 1) for t in pairs] == [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]
    assert [round(float(t[0]), 1) for t in singles] == [0.4, 0.3, 0.2, 0.1]


def test_guidance_and_its_rescale_exact_cases():
    g = torch.Generator().manual_seed(3)
    v_c, v_u = torch.randn(2, 4, 6, generator=g), torch.randn(2, 4, 6, generator=g)
    x, t = torch.zeros(2, 4, 6), torch.full((2,), 0.5)
    plain = guided(lambda x, t: (v_c, v_u), 3.0)(x, t)
    torch.testing.assert_close(plain, v_u + 3.0 * (v_c - v_u))
    torch.testing.assert_close(guided(lambda x, t: (v_c, v_u), 1.0)(x, t), v_c)  # scale 1: conditional only
    full = guided(lambda x, t: (v_c, v_u), 3.0, rescale=1.0)(x, t)
    torch.testing.assert_close(full.std(dim=(1, 2)), v_c.std(dim=(1, 2)))  # per sample: the conditional spread
    torch.testing.assert_close(full / plain, (full / plain)[:, :1, :1].expand_as(full))  # only a per-sample gain
    half = guided(lambda x, t: (v_c, v_u), 3.0, rescale=0.5)(x, t)
    torch.testing.assert_close(half, 0.5 * (full + plain))


def test_split_guidance_weighs_text_and_picture_separately():
    g = torch.Generator().manual_seed(4)
    v_c, v_t, v_u = (torch.randn(2, 4, 6, generator=g) for _ in range(3))
    x, t = torch.zeros(2, 4, 6), torch.full((2,), 0.5)
    three = lambda x, t: (v_c, v_t, v_u)  # noqa: E731
    torch.testing.assert_close(guided(three, 3.0, video_scale=5.0)(x, t), v_u + 3.0 * (v_t - v_u) + 5.0 * (v_c - v_t))
    torch.testing.assert_close(guided(three, 3.0, video_scale=3.0)(x, t), v_u + 3.0 * (v_c - v_u))  # equal: plain
    torch.testing.assert_close(guided(three, 0.0, video_scale=1.0)(x, t), v_u + v_c - v_t)  # picture only
    torch.testing.assert_close(guided(three, 1.0, video_scale=0.0)(x, t), v_t)  # text alone
    singles = []
    below = guided(three, 3.0, interval=(0.4, 1.0), velocity_c=lambda x, t: singles.append(t) or v_c, video_scale=5.0)
    torch.testing.assert_close(below(x, torch.full((2,), 0.2)), v_c)  # outside the interval: conditional only
    assert len(singles) == 1
