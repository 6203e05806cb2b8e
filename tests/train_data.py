"""Small studio data for the fine-tuning tests: a tiny model folder, short videos with their own audio,
tagged sounds and bad files, and the dataset ingest makes of them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.bundle import save_bundle
from tests.bundles import tiny_bundle

DURATION = 2.0  # seconds per video


def model_folder(root: Path, with_planner: bool = False) -> Path:
    """The tiny test bundle saved as a model folder, its codec's latent statistics measured on two FoleyWorld
    clips as codec training does (so the latents are about unit scale), with the shipped planner copied in
    when asked."""
    import shutil

    import torch

    from engine.bundle import MODELS_DIR, PLANNER_FILE
    from trainer.codec_training import measure_latent_stats
    from trainer.foleyworld.scene import WorldConfig
    from trainer.foleyworld.splits import make_clip

    bundle = tiny_bundle()
    clips = [torch.from_numpy(make_clip("train", i, WorldConfig(duration=2.0)).audio.audio.T.copy()) for i in (0, 1)]
    with torch.no_grad():
        bundle.codec.set_latent_stats(*measure_latent_stats(bundle.codec, clips))
    folder = save_bundle(bundle, root / "tiny")
    if with_planner:
        shutil.copyfile(MODELS_DIR / "default" / PLANNER_FILE, folder / PLANNER_FILE)
    return folder


def videos(folder: Path, count: int = 3) -> list[dict]:
    """``count`` 2 s FoleyWorld train clips (48 px, mp4 with audio, json with the ground truth)."""
    from trainer.foleyworld.scene import WorldConfig
    from trainer.foleyworld.splits import write_split

    return write_split("train", folder, count, WorldConfig(duration=DURATION, width=48, height=48))


def tone(seconds: float, sr: int, hz: float, channels: int = 1, level: float = 0.2) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    x = (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1)


def sounds(folder: Path) -> dict[str, Path]:
    """Tagged sounds (mono 22.05 kHz, stereo 48 kHz, one listed in a CSV) and bad ones (broken, silent, short)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "door": folder / "metal_door-slam_03.wav",
        "frog": folder / "frog croak take2.wav",
        "listed": folder / "x17.flac",
        "broken": folder / "broken.wav",
        "silent": folder / "room_tone.wav",
        "short": folder / "blip.wav",
    }
    sf.write(files["door"], tone(1.5, 22050, 440), 22050)
    sf.write(files["frog"], tone(3.0, 48000, 180, channels=2), 48000)
    sf.write(files["listed"], tone(1.0, 44100, 900), 44100)
    files["broken"].write_bytes(b"RIFF not really a wav file")
    sf.write(files["silent"], np.zeros((44100, 2), np.float32), 44100)
    sf.write(files["short"], tone(0.2, 44100, 300), 44100)
    csv = folder / "tags.csv"
    csv.write_text("file,tags\nx17.flac,squeaky hinge; creak\n", encoding="utf-8")
    return files | {"csv": csv}


def write_side_cot(video: Path, cot: dict) -> None:
    video.with_name(f"{video.stem}.cot.json").write_text(json.dumps(cot), encoding="utf-8")
