"""Audiobox Aesthetics (Tjandra et al. 2025) as an aesthetic reward head: the predicted production quality
(PQ, 1-10; PrismAudio's aesthetic reward) or the mean of chosen axes (PQ, PC production complexity, CE
content enjoyment, CU content usefulness), mapped to [0, 1] as ``(s - 1) / 9``.

The model code is Meta's ``audiobox-aesthetics`` package from the package index. Install it with
``pip install --no-deps audiobox-aesthetics`` (its declared torchaudio and submitit are used only by its own
command-line tools and pin other torch versions; the model needs torch, numpy and huggingface-hub). Weights
come from a local folder or, when asked, from the hub repository ``facebook/audiobox-aesthetics``, and only
``model.safetensors`` (with ``config.json``) is ever read. Audio is mixed to mono at 16 kHz and scored in
10 s windows (the model's), averaged by window length.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engine.cot import Cot
from engine.errors import UserInputError
from engine.rewards.protocol import as_batch
from engine.rewards.resample import mono_at, windows
from engine.rewards.view import VideoView

DEFAULT_AUDIOBOX = "facebook/audiobox-aesthetics"  # hub repository of the released weights
AXES = ("PQ", "PC", "CE", "CU")  # the model's four outputs
SAMPLE_RATE = 16_000  # Hz the model runs at
WINDOW_S = 10.0  # seconds per scored window


def _model_class():
    try:
        from audiobox_aesthetics.model.aes import AesMultiOutput
    except ImportError:
        raise UserInputError(
            "the Audiobox Aesthetics head needs its model code: pip install --no-deps audiobox-aesthetics"
        ) from None
    return AesMultiOutput


class AudioboxAestheticsHead:
    """Audiobox Aesthetics axes as an aesthetic score in [0, 1] (see the module docstring)."""

    dimension = "aesthetic"

    def __init__(self, model, axes: tuple[str, ...] = ("PQ",), name: str = DEFAULT_AUDIOBOX) -> None:
        unknown = [a for a in axes if a not in AXES]
        if unknown or not axes:
            raise UserInputError(f"Audiobox axes must be some of {', '.join(AXES)}, got {axes}")
        self.model = model.eval()  # audiobox_aesthetics AesMultiOutput
        self.axes = tuple(axes)  # averaged into the score
        self.name = f"audiobox-aesthetics:{name}:{'+'.join(self.axes)}"

    @classmethod
    def load(cls, source: str = DEFAULT_AUDIOBOX, axes: tuple[str, ...] = ("PQ",)) -> AudioboxAestheticsHead:
        """From a local folder holding config.json + model.safetensors, or the hub repo (downloaded on request)."""
        folder = Path(source)
        if not folder.is_dir():
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(source, allow_patterns=["config.json", "model.safetensors"]))
        if not (folder / "model.safetensors").is_file():
            raise UserInputError(f"{source} has no model.safetensors (only safetensors weights are loaded)")
        return cls(_model_class().from_pretrained(str(folder)), axes, source)

    @torch.no_grad()
    def ratings(self, takes: np.ndarray, sr: int) -> list[dict[str, float]]:
        """Per take, each axis on the model's 1-10 scale (length-weighted mean over 10 s windows)."""
        out, length = [], int(WINDOW_S * SAMPLE_RATE)
        device = next(self.model.parameters()).device
        for take in takes:
            pieces = windows(mono_at(take, sr, SAMPLE_RATE), length)
            wav = torch.zeros(len(pieces), 1, max(len(p) for p in pieces))  # (W, 1, L) zero-padded
            mask = torch.zeros_like(wav, dtype=torch.bool)
            for i, p in enumerate(pieces):
                wav[i, 0, : len(p)], mask[i, 0, : len(p)] = torch.from_numpy(p), True
            preds = self.model({"wav": wav.to(device), "mask": mask.to(device)})  # axis -> (W,) normalised
            w = torch.tensor([len(p) for p in pieces], dtype=torch.float64) / sum(len(p) for p in pieces)
            tt = self.model.target_transform
            out.append(
                {a: float((preds[a].double().cpu() * tt[a]["std"] + tt[a]["mean"]) @ w) for a in AXES}
            )  # fmt: skip
        return out

    def score(self, audio: np.ndarray, sample_rate: int, video: VideoView, cot: Cot) -> tuple[np.ndarray, dict]:
        """(B, N, 2) takes -> (B,) mean of the chosen axes mapped from 1-10 to [0, 1]."""
        items = self.ratings(as_batch(audio), sample_rate)
        scores = [float(np.clip((np.mean([it[a] for a in self.axes]) - 1.0) / 9.0, 0.0, 1.0)) for it in items]
        return np.array(scores), {"items": items}
