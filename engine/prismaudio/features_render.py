"""Rendering with the published PrismAudio model from features extracted by the official tools
(`render --features FILE.npz`, DESIGN "Command-line contract").

FILE.npz holds ``video_features`` (T, 1024), ``text_features`` (L, 1024), ``sync_features`` (S, 768) and
``duration`` (seconds); other entries (the official file also has ``caption_cot``, ``latent``...) are ignored.
Everything is checked before any work or any file: a bad file is one `UserInputError` line and nothing is
written. The render is exactly ``round(duration * 44100)`` samples (the decoder's N x 2048 cut, or zero-padded
by at most 1024 samples) and has none of the reference's peak normalisation.
"""

from __future__ import annotations

import functools
import math
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from engine.atomic import staged_paths
from engine.errors import FoleyError, UserInputError
from engine.export import export_take
from engine.family import Guidance
from engine.media import write_wav
from engine.prismaudio.architecture import OFFICIAL_CFG, SYNC_MODES
from engine.prismaudio.checkpoint import model_files
from engine.prismaudio.model_family import PrismAudioFamily
from engine.prismaudio.sampler import sample_euler

FEATURE_KEYS = {  # key -> (rank, last dim) of each array of FILE.npz (duration: a scalar)
    "video_features": (2, 1024),
    "text_features": (2, 1024),
    "sync_features": (2, 768),
    "duration": (0, None),
}


def read_features(path: str | Path) -> dict[str, np.ndarray | float]:
    """The four entries of a features file, checked: `UserInputError` naming a missing key or a wrong shape."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"features file not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as npz:
            missing = [k for k in FEATURE_KEYS if k not in npz.files]
            if missing:
                raise UserInputError(f"{p.name} lacks {', '.join(missing)}; it must hold {', '.join(FEATURE_KEYS)}")
            arrays = {k: np.asarray(npz[k]) for k in FEATURE_KEYS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise UserInputError(f"{p.name} is not a readable .npz features file: {e}") from e
    for key, (rank, dim) in FEATURE_KEYS.items():
        a = arrays[key]
        least = 0 if key == "sync_features" else 1  # short clips have no sync segment (unused in official mode)
        if a.ndim != rank or (dim is not None and (a.shape[-1] != dim or a.shape[0] < least)):
            want = "a scalar" if rank == 0 else f"(n, {dim}) with n >= {least}"
            raise UserInputError(f"{p.name}: {key} must be {want}, got shape {a.shape}")
        if not np.issubdtype(a.dtype, np.floating) and not (rank == 0 and np.issubdtype(a.dtype, np.integer)):
            raise UserInputError(f"{p.name}: {key} must be floating point, got {a.dtype}")
        if not np.isfinite(a).all():
            raise UserInputError(f"{p.name}: {key} holds NaN or infinite values")
    if arrays["sync_features"].shape[0] % 8:
        n = arrays["sync_features"].shape[0]
        raise UserInputError(f"{p.name}: sync_features must hold a multiple of 8 tokens (8 per segment), got {n}")
    duration = float(arrays["duration"])
    if not duration > 0:
        raise UserInputError(f"{p.name}: duration must be a positive number of seconds, got {duration}")
    return {**{k: arrays[k].astype(np.float32) for k in FEATURE_KEYS if k != "duration"}, "duration": duration}


@functools.lru_cache(maxsize=2)
def _cached_family(folder: str, stamp: tuple) -> PrismAudioFamily:
    """The family of a model folder, loaded once per version of its files (``stamp``: mtimes and sizes)."""
    return PrismAudioFamily.from_folder(folder)


def load_family(model_folder: str | Path) -> PrismAudioFamily:
    """The PrismAudio family of a folder holding prismaudio.ckpt (+ vae.ckpt), cached per file version."""
    ckpt, vae = model_files(model_folder)
    stamp = tuple((f.stat().st_mtime_ns, f.stat().st_size) for f in (ckpt, vae) if f is not None)
    return _cached_family(str(Path(model_folder).resolve()), stamp)


def check_settings(seed: int, steps: int, cfg: float, sync: str) -> None:
    """`UserInputError` for a bad seed, step count, guidance scale or sync mode."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise UserInputError(f"seed must be a whole number in 0 .. 2^63 - 1, got {seed!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UserInputError(f"steps must be a whole number >= 1, got {steps!r}")
    if not (isinstance(cfg, (int, float)) and math.isfinite(cfg) and cfg >= 0):
        raise UserInputError(f"cfg (guidance scale) must be a finite number >= 0, got {cfg!r}")
    if sync not in SYNC_MODES:
        raise UserInputError(f"--sync must be one of {', '.join(SYNC_MODES)}, got {sync!r}")


def sample_latent(
    family: PrismAudioFamily, features: dict, seed: int, steps: int, cfg: float, sync: str
) -> torch.Tensor:
    """The final latent (1, 64, N) of one render from checked features (`read_features`)."""
    prepared = family.prepare_features(
        torch.from_numpy(features["video_features"]),
        torch.from_numpy(features["sync_features"]),
        features["duration"],
        sync,
    )
    text = family.text_conditions(torch.from_numpy(features["text_features"]))
    with torch.inference_mode():
        cond, uncond = family.window_conditions(prepared, text, 0, prepared.n_latent)
        velocity = family.guided_velocity(cond, uncond, Guidance(float(cfg), (0.0, 1.0), None, 0.0))
        return sample_euler(velocity, family.noise(seed, prepared.n_latent), steps)


def render_features(
    npz_path: str | Path,
    model_folder: str | Path,
    out_dir: str | Path,
    seed: int,
    steps: int = 24,
    cfg: float = OFFICIAL_CFG,
    sync: str = "official",
    raw: bool = False,
) -> dict:
    """Render FILE.npz with the PrismAudio checkpoint of ``model_folder`` into ``out_dir``/<stem>.wav.

    Normal: the take through `engine.export.export_take` at 44.1 kHz (24-bit, true-peak limited). ``raw``: a
    32-bit float WAV of the decoder's output, nothing changed but the length, and ``<stem>.latent.npy``
    ((64, N) float32, the final latent), both or neither. Returns the paths and the render's facts.
    """
    began = time.perf_counter()
    check_settings(seed, steps, cfg, sync)
    features = read_features(npz_path)
    family = load_family(model_folder)
    z = sample_latent(family, features, seed, steps, cfg, sync)  # (1, 64, N)
    duration = features["duration"]
    n_samples = round(duration * family.sample_rate)
    audio = family.decode_latent(z, n_samples)[0].T.cpu().numpy()  # (n, 2) float32
    if not np.isfinite(audio).all():
        raise FoleyError(f"{family.name} produced NaN or infinite samples; its weights may be damaged")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(npz_path).stem
    if raw:
        targets = [out / f"{stem}.wav", out / f"{stem}.latent.npy"]
        with staged_paths(targets) as (wav_tmp, latent_tmp):
            write_wav(wav_tmp, audio, family.sample_rate, subtype="FLOAT")
            with open(latent_tmp, "wb") as f:
                np.save(f, z[0].cpu().numpy().astype(np.float32))
        files = {"wav": str(targets[0]), "latent": str(targets[1])}
    else:
        take = export_take(audio, family.sample_rate, out, stem, duration=duration, formats=("wav",), rate=None)
        files = take["files"]
    return {
        "files": files,
        "model": family.name,
        "seed": seed,
        "steps": steps,
        "cfg": cfg,
        "sync": sync,
        "duration": duration,
        "sample_rate": family.sample_rate,
        "n_samples": n_samples,
        "latent_frames": int(z.shape[-1]),
        "seconds": round(time.perf_counter() - began, 3),
    }
