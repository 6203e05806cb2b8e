"""Writing a take: 48 kHz 24-bit WAV, FLAC, the video with the take muxed in (video stream copied) and the
CoT as JSON, level-safe (optional loudness normalisation, a true-peak limiter); the one write path of takes.

Takes are rendered at the codec's rate (44.1 kHz); delivery formats for picture are 48 kHz, so the
take is resampled by a polyphase filter (`scipy.signal.resample_poly`, 160/147 for 44.1 -> 48 kHz)
with our own Kaiser low-pass: flat to 20 kHz, 100 dB down from 22.05 kHz, so no image of the 44.1 kHz
spectrum is left in the 48 kHz file (resample_poly's default filter leaves images only ~20 dB down near
the top of the band). The result is cut or padded to exactly ``round(duration * 48000)`` samples, the
picture's length. Before it is written the take is made level-safe (`engine.level`: loudness
normalisation when asked, then a true-peak limiter), measured by libebur128, and the report is returned.
"""

from __future__ import annotations

import functools
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import firwin, kaiserord, resample_poly

from engine.atomic import staged_paths, write_json
from engine.cot import Cot, validate_cot
from engine.errors import UserInputError
from engine.level import CEILING_DBTP, LevelSettings, make_safe
from engine.media import mux_audio, write_pcm

EXPORT_RATE = 48000  # Hz of every exported file
EXPORT_BITS = 24  # integer bits per sample in WAV and FLAC
FORMATS = ("wav", "flac", "mp4", "cot")  # what `export_take` can write
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


SUFFIXES = {"wav": ".wav", "flac": ".flac", "mp4": ".mp4", "cot": ".cot.json"}  # format -> file name ending


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
    ceiling_dbtp: float = CEILING_DBTP,
    rate: int | None = EXPORT_RATE,
    mode: int | None = None,
) -> dict:
    """Write a take (N, 2) float at ``sample_rate`` into ``folder`` as ``<stem>.wav`` (24-bit), ``<stem>.flac``
    (24-bit), ``<stem>.mp4`` (``video``'s picture stream copied + the take as AAC) and ``<stem>.cot.json``, as
    chosen by ``formats``: every take the project writes (studio exports, command-line renders) comes here.

    The audio is resampled to ``rate`` (48 kHz; None: kept at ``sample_rate``), cut or padded to exactly
    ``round(duration * rate)`` samples, and made level-safe (`engine.level.make_safe`: optional loudness
    normalisation to ``lufs_target``, then the true-peak limiter at ``ceiling_dbtp``). The files appear
    together or not at all (`engine.atomic.staged_paths`), with permissions ``mode`` (None: private).
    Returns ``{"files": {format: path}, "sample_rate", "n_samples", "level": engine.level report}``.
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
    level = LevelSettings(lufs_target=lufs_target, ceiling_dbtp=ceiling_dbtp)  # checked before any work
    rate = int(sample_rate) if rate is None else rate
    out = resample(audio, sample_rate, rate, round(duration * rate))
    out, level_report = make_safe(out, rate, level)
    chosen = [f for f in FORMATS if f in formats]
    targets = [Path(folder) / f"{stem}{SUFFIXES[f]}" for f in chosen]
    with staged_paths(targets, mode) as temps:
        for f, tmp in zip(chosen, temps):
            if f in ("wav", "flac"):
                write_pcm(tmp, out, rate, f.upper(), EXPORT_BITS)
            elif f == "mp4":
                mux_audio(video, out, rate, tmp)
            else:
                write_json(tmp, validate_cot(cot).to_dict())
    files = {f: str(t) for f, t in zip(chosen, targets)}
    return {"files": files, "sample_rate": rate, "n_samples": len(out), "level": level_report}
