"""Level safety (engine.level): the true-peak limiter keeps every take under its ceiling as an independent 4x
oversampled meter reads it, leaves quiet takes alone bit for bit, normalises loudness to its target, and
libebur128's loudness agrees with the project's own BS.1770 meter."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import resample_poly

from engine.bench.signal import loudness_lufs
from engine.errors import UserInputError
from engine.level import LevelSettings, limiter_gain, make_safe, measure, peak_envelope

SR = 44100


def loud_clip(seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    """(N, 2) float64 that passes full scale: noise bursts, a kick-like thump and a sine whose samples sit at
    0.707 of its true peak (fs / 4 at 45 degrees: the classic inter-sample peak)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SR)) / SR
    bursts = rng.normal(0.0, 0.6, len(t)) * ((t % 1.0) < 0.3)
    thump = 1.6 * np.sin(2 * np.pi * 60 * t) * np.exp(-8 * (t % 0.5))
    isp = 1.2 * np.sin(2 * np.pi * SR / 4 * t + np.pi / 4) * ((t % 2.0) > 1.5)
    return np.stack([bursts + thump, isp + 0.5 * thump], axis=1)


def oversampled_peak_db(audio: np.ndarray, factor: int = 4) -> float:
    """The true peak as an independent meter reads it: scipy's polyphase 4x interpolation."""
    return 20 * np.log10(np.abs(resample_poly(np.asarray(audio, np.float64), factor, 1, axis=0)).max())


def test_a_loud_take_stays_under_the_ceiling_and_never_reaches_full_scale():
    x = loud_clip()
    assert measure(x, SR)["true_peak_dbtp"] > 3.0  # the clip really is too loud
    for ceiling in (-1.0, -2.0):
        out, report = make_safe(x, SR, LevelSettings(ceiling_dbtp=ceiling))
        assert out.dtype == np.float32 and out.shape == x.shape
        assert report["true_peak_dbtp"] <= ceiling + 1e-6  # libebur128
        assert oversampled_peak_db(out) <= ceiling + 0.01  # an independent 4x meter
        assert np.abs(out).max() < 10 ** (ceiling / 20) and report["limited_db"] > 3.0


def test_the_limiter_gain_never_exceeds_what_a_sample_needs_and_moves_smoothly():
    x = loud_clip(2.0)
    ceiling = 10 ** (-1 / 20)
    gain = limiter_gain(x, SR, ceiling)
    need = np.minimum(1.0, ceiling / peak_envelope(x))
    assert np.all(gain <= need + 1e-12) and gain.min() < 0.6
    assert np.abs(np.diff(gain)).max() < 0.01  # spread over 10 ms, not a step


def test_a_quiet_take_is_left_exactly_as_it_was():
    x = (0.1 * loud_clip(2.0)).astype(np.float32)
    out, report = make_safe(x, SR)
    np.testing.assert_array_equal(out, x)
    assert report["limited_db"] == 0.0 and report["gain_db"] == 0.0
    silent, report = make_safe(np.zeros((SR, 2), np.float32), SR)
    assert not silent.any() and report["lufs"] is None


def test_loudness_normalisation_reaches_its_target():
    rng = np.random.default_rng(1)
    x = 0.05 * rng.normal(size=(3 * SR, 2))  # -29 LUFS or so: room to go up without limiting
    out, report = make_safe(x, SR, LevelSettings(lufs_target=-20.0))
    assert report["lufs"] == pytest.approx(-20.0, abs=0.05) and report["limited_db"] == 0.0
    assert measure(out, SR)["lufs"] == pytest.approx(-20.0, abs=0.05)


def test_a_tone_of_known_loudness_and_our_meter_agrees_with_libebur128():
    t = np.arange(3 * SR) / SR
    tone = np.stack([0.5 * np.sin(2 * np.pi * 997 * t)] * 2, axis=1)
    assert measure(tone, SR)["lufs"] == pytest.approx(-6.02, abs=0.05)  # -3.01 per full-scale channel, x2, -6 dB
    rng = np.random.default_rng(2)
    for audio in (tone, 0.2 * rng.normal(size=(4 * SR, 2)), 0.3 * loud_clip(3.0)):
        assert loudness_lufs(audio, SR) == pytest.approx(measure(audio, SR)["lufs"], abs=0.1)


@pytest.mark.parametrize("kw", [{"ceiling_dbtp": 1.0}, {"ceiling_dbtp": float("nan")}, {"lufs_target": 0.0}])
def test_bad_level_settings_are_refused(kw):
    with pytest.raises(UserInputError):
        LevelSettings(**kw)
