"""Analytic FoleyBench metrics on synthetic signals whose answers are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine import stereo
from engine.bench.distribution import frechet_distance, kl_divergence
from engine.bench.onsets import desync_offset, detect_onsets, onset_f1
from engine.bench.signal import clipping_rate, dc_offset, k_weighting_sos, loudness_lufs, silence_fraction
from engine.bench.spatial import azimuth_track, gcc_phat, spatial_scores

SR = 44100
# 0.45 s apart (plus a little jitter off the 10 ms frame grid): shifted by 0.3 s no time is within 0.1 s of another
CLICK_TIMES = 0.3 + 0.45 * np.arange(9) + 0.003 * np.arange(9)


def clicks(times: np.ndarray, duration: float, seed: int = 0, amp: float = 0.5) -> np.ndarray:
    """(N,) mono track of 5 ms noise bursts with a 1 ms exponential decay starting at ``times`` s."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(duration * SR))
    n = int(0.005 * SR)
    decay = np.exp(-np.arange(n) / SR / 0.001)
    for t in times:
        i = round(t * SR)
        out[i : i + n] += amp * rng.standard_normal(n) * decay
    return out


def both(mono: np.ndarray) -> np.ndarray:
    """The same (N,) signal in both channels, (N, 2)."""
    return np.stack([mono, mono], axis=1)


def delayed(signal: np.ndarray, n: int) -> np.ndarray:
    """``signal`` (N,) delayed by n >= 0 samples, same length."""
    return np.concatenate([np.zeros(n), signal[: len(signal) - n]])


def tone(freq: float, duration: float, sr: int = SR, amp: float = 1.0) -> np.ndarray:
    """(N,) sine of ``freq`` Hz."""
    return amp * np.sin(2 * np.pi * freq * np.arange(int(duration * sr)) / sr)


def tracks_of(stems: list[np.ndarray], xs: list[np.ndarray], rate: float = 10.0) -> dict:
    """Ground-truth tracks from stereo stems (N, 2): per-frame mean square and the given per-frame x."""
    hop = int(SR / rate)
    energy = [[float(np.mean(s[k : k + hop] ** 2)) for k in range(0, len(s), hop)] for s in stems]
    return {"rate": rate, "x": [list(x) for x in xs], "energy": energy}


# ---- onsets ----


def test_clicks_are_found_at_their_times() -> None:
    detected = detect_onsets(both(clicks(CLICK_TIMES, 4.5)), SR)
    assert onset_f1(detected, CLICK_TIMES, tol=0.05)["f1"] == 1.0
    assert np.max(np.abs(detected - CLICK_TIMES)) < 0.02
    shifted = onset_f1(detected, CLICK_TIMES + 0.3, tol=0.05)
    assert shifted == {"f1": 0.0, "precision": 0.0, "recall": 0.0, "tp": 0, "fp": 9, "fn": 9}


def test_clicks_over_steady_noise_20db_down() -> None:
    burst = clicks(np.array([0.0]), 0.01)[: int(0.005 * SR)]
    noise_rms = np.sqrt(np.mean(burst**2)) * 10 ** (-20 / 20)
    noise = np.random.default_rng(1).standard_normal((int(4.5 * SR), 2)) * noise_rms
    detected = detect_onsets(both(clicks(CLICK_TIMES, 4.5)) + noise, SR)
    assert onset_f1(detected, CLICK_TIMES, tol=0.05)["f1"] >= 0.95


def test_silence_and_steady_noise_have_no_onsets() -> None:
    assert detect_onsets(np.zeros((SR, 2)), SR).size == 0
    noise = np.random.default_rng(2).standard_normal((3 * SR, 2)) * 0.1
    assert detect_onsets(noise, SR).size == 0


def test_onset_f1_matches_one_to_one_closest_first() -> None:
    both_empty = onset_f1(np.array([]), np.array([]), tol=0.05)
    assert both_empty["f1"] == 1.0 and both_empty["tp"] == 0
    assert onset_f1(np.array([1.0]), np.array([]), tol=0.05)["f1"] == 0.0
    # 1.02 is closer to 1.015 than 1.0 is: it takes that reference, 1.0 is left a false positive
    r = onset_f1(np.array([1.0, 1.02, 2.0]), np.array([1.015, 2.04]), tol=0.05)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 1, 0)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == 1.0
    assert r["f1"] == pytest.approx(0.8)


@pytest.mark.parametrize("delay", [0.2, -0.2])
def test_desync_recovers_a_known_delay(delay: float) -> None:
    audio = both(clicks(CLICK_TIMES + delay, 4.5))
    assert desync_offset(audio, SR, CLICK_TIMES, duration=4.5) == pytest.approx(delay, abs=0.02)


def test_desync_without_events_is_nan() -> None:
    assert math.isnan(desync_offset(both(clicks(CLICK_TIMES, 4.5)), SR, np.array([]), duration=4.5))


# ---- spatial ----


def test_gcc_phat_finds_an_integer_delay_of_the_left_channel() -> None:
    noise = np.random.default_rng(3).standard_normal(SR // 2)
    for n in (0, 4, 17):
        tau, peak = gcc_phat(delayed(noise, n), noise, SR, max_tau=0.001)
        assert abs(tau * SR - n) <= 1.0 and peak > 0.9
    tau, _ = gcc_phat(noise, delayed(noise, 9), SR, max_tau=0.001)
    assert abs(tau * SR + 9) <= 1.0
    # same sign as the convention: a source on the right delays the left channel by itd_seconds(x) > 0
    itd = float(stereo.itd_seconds(0.8))
    tau, _ = gcc_phat(delayed(noise, round(itd * SR)), noise, SR, max_tau=0.001)
    assert tau == pytest.approx(itd, abs=1.0 / SR)


def test_tone_panned_hard_left_is_measured_left() -> None:
    sig = tone(1000.0, 2.0, amp=0.5)
    g_left, g_right = stereo.pan_gains(-1.0)
    audio = np.stack([g_left * sig, g_right * sig], axis=1)
    x_est, energy = azimuth_track(audio, SR)
    assert x_est.shape == energy.shape == (20,)
    np.testing.assert_allclose(x_est, -1.0, atol=0.1)
    np.testing.assert_allclose(energy, 0.125 * (g_left**2 + g_right**2) / 2, rtol=1e-2)
    events = [{"time": 0.5, "cls": "beep", "source": 0, "x": -1.0}]
    scores = spatial_scores(audio, SR, events, tracks_of([audio], [np.full(20, -1.0)]), duration=2.0)
    assert scores["lr_accuracy"] == 1.0 and scores["n_probes"] == 3  # the event and two 1-s segments
    assert scores["x_mse"] < 0.01


def test_mirrored_and_mono_audio_fail_every_probe() -> None:
    rng = np.random.default_rng(4)
    sig = rng.standard_normal(2 * SR) * 0.2
    g_left, g_right = stereo.pan_gains(0.6)
    audio = np.stack([g_left * sig, g_right * sig], axis=1)
    truth = tracks_of([audio], [np.full(20, 0.6)])
    events = [{"time": 1.2, "cls": "thud", "source": 0, "x": 0.6}]
    good = spatial_scores(audio, SR, events, truth, duration=2.0)
    bad = spatial_scores(audio[:, ::-1], SR, events, truth, duration=2.0)
    assert good["lr_accuracy"] == 1.0 and good["x_mse"] < 1e-3
    assert bad["lr_accuracy"] == 0.0 and bad["x_mse"] == pytest.approx(1.2**2, rel=0.02)
    mono = spatial_scores(both(audio.mean(axis=1)), SR, events, truth, duration=2.0)
    assert mono["lr_accuracy"] == 0.0 and mono["x_mse"] == pytest.approx(0.6**2, rel=0.02)


def test_source_moving_left_to_right_gives_a_monotone_track() -> None:
    n = 3 * SR
    sig = np.random.default_rng(5).standard_normal(n) * 0.3
    g_left, g_right = stereo.pan_gains(np.linspace(-1.0, 1.0, n))
    x_est, _ = azimuth_track(np.stack([g_left * sig, g_right * sig], axis=1), SR)
    assert np.all(np.diff(x_est) > 0)
    assert x_est[0] == pytest.approx(-1.0, abs=0.1) and x_est[-1] == pytest.approx(1.0, abs=0.1)


def test_delay_only_panning_is_read_from_the_itd() -> None:
    sig = np.random.default_rng(6).standard_normal(SR) * 0.3
    x = 0.7
    audio = np.stack([delayed(sig, round(float(stereo.itd_seconds(x)) * SR)), sig], axis=1) / np.sqrt(2)
    x_est, _ = azimuth_track(audio, SR)
    np.testing.assert_allclose(x_est, x, atol=0.1)


def test_silence_has_no_spatial_scores() -> None:
    silent = np.zeros((SR, 2))
    scores = spatial_scores(silent, SR, [], {"rate": 10.0, "x": [[0.0] * 10], "energy": [[0.0] * 10]}, 1.0)
    assert math.isnan(scores["x_mse"]) and math.isnan(scores["lr_accuracy"]) and scores["n_probes"] == 0


# ---- signal ----


def test_k_weighting_matches_the_bs1770_table_at_48k() -> None:
    expected = [
        [1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0, -1.69065929318241, 0.73248077421585],
        [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621],
    ]
    np.testing.assert_allclose(k_weighting_sos(48000), expected, atol=1e-8)


@pytest.mark.parametrize("sr", [44100, 48000])
def test_loudness_of_a_full_scale_1khz_sine(sr: int) -> None:
    sig = tone(1000.0, 3.0, sr)
    silent = np.zeros_like(sig)
    assert loudness_lufs(np.stack([sig, silent], axis=1), sr) == pytest.approx(-3.01, abs=0.2)
    assert loudness_lufs(both(sig), sr) == pytest.approx(0.0, abs=0.2)
    assert loudness_lufs(both(0.1 * sig), sr) == pytest.approx(-20.0, abs=0.2)
    assert loudness_lufs(np.zeros((sr, 2)), sr) == -math.inf


def test_loudness_gates_out_silence_and_quiet_passages() -> None:
    loud = tone(1000.0, 2.0)
    with_silence = np.concatenate([loud, np.zeros(2 * SR)])
    with_quiet = np.concatenate([loud, 10 ** (-30 / 20) * loud])
    # kept: 17 blocks inside the tone and the 3 straddling its end (3/4, 1/2, 1/4 of it; above both gates)
    expected = 10 * np.log10((17 + 0.75 + 0.5 + 0.25) / 20)
    assert loudness_lufs(both(with_silence), SR) == pytest.approx(expected, abs=0.05)
    assert loudness_lufs(both(with_quiet), SR) == pytest.approx(expected, abs=0.05)


def test_clipping_dc_and_silence() -> None:
    audio = np.zeros((1000, 2))
    audio[:30, 0] = 1.0
    audio[:10, 1] = -0.9995
    assert clipping_rate(audio) == pytest.approx(40 / 2000)
    offset = np.stack([np.full(100, 0.1), np.full(100, -0.3)], axis=1)
    assert dc_offset(offset) == pytest.approx(0.3)
    half_silent = both(np.concatenate([tone(1000.0, 1.0, amp=0.1), np.full(SR, 1e-4)]))
    assert silence_fraction(half_silent, SR) == pytest.approx(0.5)


def test_bad_shapes_are_rejected_with_the_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        loudness_lufs(np.zeros(100), SR)


# ---- distribution ----


def exact_moments(rng: np.random.Generator, n: int, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """(n, D) samples whose sample mean and (unbiased) sample covariance are exactly ``mean``, ``cov``."""
    z = rng.standard_normal((n, len(mean)))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # sample covariance I
    return z @ np.linalg.cholesky(cov).T + mean


def test_frechet_of_a_set_with_itself_is_zero() -> None:
    emb = np.random.default_rng(7).standard_normal((400, 16))
    assert frechet_distance(emb, emb) == pytest.approx(0.0, abs=1e-6)


def test_frechet_matches_the_closed_form() -> None:
    rng = np.random.default_rng(8)
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
    a = exact_moments(rng, 300, mu_a, np.diag(var_a))
    b = exact_moments(rng, 500, mu_b, np.diag(var_b))
    # diagonal covariances commute: d^2 = |mu_a - mu_b|^2 + sum (sqrt(var_a) - sqrt(var_b))^2
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    # a full covariance, same for both sets: only the mean term remains
    cov = np.array([[2.0, 0.5, 0.1], [0.5, 1.0, 0.3], [0.1, 0.3, 0.5]])
    a, b = exact_moments(rng, 300, mu_a, cov), exact_moments(rng, 400, mu_b, cov)
    assert frechet_distance(a, b) == pytest.approx(np.sum((mu_a - mu_b) ** 2), abs=1e-6)


def test_frechet_survives_a_singular_covariance() -> None:
    emb = np.random.default_rng(9).standard_normal((5, 32))  # 5 points in 32 dimensions: rank 4
    assert np.isfinite(frechet_distance(emb, emb + 1.0))


def test_kl_divergence() -> None:
    p = np.array([[0.8, 0.2], [0.3, 0.7]])
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    q = np.array([[0.5, 0.5], [0.5, 0.5]])
    rows = [0.8 * np.log(1.6) + 0.2 * np.log(0.4), 0.3 * np.log(0.6) + 0.7 * np.log(1.4)]
    assert kl_divergence(p, q) == pytest.approx(np.mean(rows), rel=1e-5)
    assert kl_divergence(8 * p, 3 * q) == pytest.approx(np.mean(rows), rel=1e-5)  # rows are normalised
