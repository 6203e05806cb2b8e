"""Exporting a take: 48 kHz 24-bit WAV, FLAC, the video with the take muxed in (video stream copied),
the CoT as JSON, with optional loudness normalisation.

Takes are rendered at the codec's rate (44.1 kHz); delivery formats for picture are 48 kHz, so the
take is resampled by a polyphase filter (`scipy.signal.resample_poly`, 160/147 for 44.1 -> 48 kHz)
with our own Kaiser low-pass: flat to 20 kHz, 100 dB down from 22.05 kHz, so no image of the 44.1 kHz
spectrum is left in the 48 kHz file (resample_poly's default filter leaves images only ~20 dB down near
the top of the band). The result is cut or padded to exactly ``round(duration * 48000)`` samples, the
picture's length. Loudness is ITU-R BS.1770 integrated loudness
(`engine.bench.signal.loudness_lufs`); normalisation is one gain for the whole take, and samples the
gain would push past full scale go through the render's safety limiter (`engine.pipeline.safety_limit`)
instead of clipping, so the measured result is reported, not assumed.
"""

from __future__ import annotations

import functools
import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import firwin, kaiserord, resample_poly

from .atomic import write_json
from .bench.signal import loudness_lufs
from .cot import Cot, validate_cot
from .errors import UserInputError
from .media import mux_audio, write_pcm

EXPORT_RATE = 48000  # Hz of every exported file
EXPORT_BITS = 24  # integer bits per sample in WAV and FLAC
FORMATS = ("wav", "flac", "mp4", "cot")  # what `export_take` can write
LUFS_RANGE = (-70.0, -1.0)  # accepted normalisation targets (broadcast -23/-24, streaming -14/-16)
PASSBAND = 20000 / 22050  # resampling: flat up to this fraction of the lower Nyquist frequency
STOPBAND_DB = 100.0  # resampling: attenuation from the lower Nyquist frequency up


@functools.lru_cache(maxsize=8)
def _low_pass(up: int, down: int, rate_in: int) -> np.ndarray:
    """FIR taps at ``rate_in * up`` Hz for resampling by up/down: Kaiser design (`kaiserord`), passband to
    PASSBAND x the lower Nyquist, STOPBAND_DB down from the lower Nyquist (odd length, linear phase)."""
    fs = rate_in * up
    nyquist = min(rate_in, rate_in * up / down) / 2
    edge = PASSBAND * nyquist
    numtaps, beta = kaiserord(STOPBAND_DB, (nyquist - edge) / (fs / 2))
    return firwin(numtaps | 1, (edge + nyquist) / 2, window=("kaiser", beta), fs=fs)


def resample(audio: np.ndarray, rate_in: int, rate_out: int, n_out: int | None = None) -> np.ndarray:
    """(N, C) float audio at ``rate_in`` -> (n_out, C) float32 at ``rate_out`` (polyphase, `_low_pass`).

    ``n_out`` defaults to ``round(N * rate_out / rate_in)``; the result is cut or zero-padded to it.
    """
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 2 or len(audio) < 1:
        raise ValueError(f"audio must be (N, C) with N >= 1, got {audio.shape=}")
    n_out = round(len(audio) * rate_out / rate_in) if n_out is None else int(n_out)
    ratio = Fraction(int(rate_out), int(rate_in))
    if ratio == 1:
        out = audio
    else:
        up, down = ratio.numerator, ratio.denominator
        out = resample_poly(audio, up, down, axis=0, window=_low_pass(up, down, int(rate_in)))
    if len(out) < n_out:
        out = np.pad(out, ((0, n_out - len(out)), (0, 0)))
    return np.ascontiguousarray(out[:n_out], dtype=np.float32)


def normalise_loudness(audio: np.ndarray, sample_rate: int, target_lufs: float) -> tuple[np.ndarray, dict]:
    """One gain that brings (N, 2) audio to ``target_lufs`` integrated loudness.

    Returns (audio, report) with report ``{"target", "before", "after", "gain_db", "limited"}``
    (``limited``: some samples went through the safety limiter). Silence is returned unchanged
    (``gain_db`` 0) since it has no loudness to correct.
    """
    lo, hi = LUFS_RANGE
    if not (isinstance(target_lufs, int | float) and math.isfinite(target_lufs) and lo <= target_lufs <= hi):
        raise UserInputError(f"the loudness target must be between {lo:g} and {hi:g} LUFS, got {target_lufs}")
    from .pipeline import safety_limit  # the take's own limiter; imported here to keep this module light

    before = loudness_lufs(audio, sample_rate)
    report = {"target": float(target_lufs), "before": before, "gain_db": 0.0, "limited": False}
    if not math.isfinite(before):
        return audio, report | {"after": before}
    gain_db = float(target_lufs) - before
    out = (np.asarray(audio, dtype=np.float64) * 10 ** (gain_db / 20)).astype(np.float32)
    limited = bool(np.abs(out).max() > 1.0)
    out = safety_limit(out)
    return out, report | {"gain_db": gain_db, "limited": limited, "after": loudness_lufs(out, sample_rate)}


def export_take(
    audio: np.ndarray,
    sample_rate: int,
    folder: str | os.PathLike,
    stem: str,
    *,
    duration: float,
    formats: tuple[str, ...] = ("wav",),
    video: str | os.PathLike | None = None,
    cot: Cot | dict | None = None,
    lufs_target: float | None = None,
) -> dict:
    """Write a take (N, 2) float at ``sample_rate`` into ``folder`` as ``<stem>.wav`` (48 kHz, 24-bit),
    ``<stem>.flac`` (48 kHz, 24-bit), ``<stem>.mp4`` (``video``'s picture stream copied + the take as
    AAC) and ``<stem>.cot.json``, as chosen by ``formats``; every file atomically.

    The audio is exactly ``round(duration * 48000)`` samples. Returns ``{"files": {format: path},
    "sample_rate", "n_samples", "loudness": report or None}``.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise UserInputError(f"choose export formats among {', '.join(FORMATS)}; got {list(formats)}")
    if "mp4" in formats and video is None:
        raise UserInputError("a muxed MP4 needs the take's video")
    if "cot" in formats and cot is None:
        raise UserInputError("the CoT export needs the take's CoT")
    if not duration > 0:
        raise UserInputError(f"the take's video has no length ({duration} s)")
    out = resample(audio, sample_rate, EXPORT_RATE, round(duration * EXPORT_RATE))
    loudness = None
    if lufs_target is not None:
        out, loudness = normalise_loudness(out, EXPORT_RATE, lufs_target)
    folder = Path(folder)
    files: dict[str, str] = {}
    if "wav" in formats:
        files["wav"] = str(folder / f"{stem}.wav")
        write_pcm(files["wav"], out, EXPORT_RATE, "WAV", EXPORT_BITS)
    if "flac" in formats:
        files["flac"] = str(folder / f"{stem}.flac")
        write_pcm(files["flac"], out, EXPORT_RATE, "FLAC", EXPORT_BITS)
    if "mp4" in formats:
        files["mp4"] = str(folder / f"{stem}.mp4")
        mux_audio(video, out, EXPORT_RATE, files["mp4"])
    if "cot" in formats:
        files["cot"] = str(folder / f"{stem}.cot.json")
        write_json(files["cot"], validate_cot(cot).to_dict())
    return {"files": files, "sample_rate": EXPORT_RATE, "n_samples": len(out), "loudness": loudness}
