"""CLAP (LAION's contrastive language-audio model, Wu et al. 2023) as a semantic reward head, through
transformers' `ClapModel` / `ClapProcessor`: the cosine between the take's audio embedding and the text
embedding of the Semantic block, mapped to [0, 1] as ``(1 + c) / 2`` like the default semantic head.

PrismAudio's semantic reward is MS-CLAP; LAION-CLAP is the CLAP that transformers carries. Weights come
from a local folder or, only when the user names a hub model (e.g. ``laion/clap-htsat-unfused``), through
huggingface-hub, as safetensors only. Audio is mixed to mono, resampled to the processor's rate (48 kHz)
and cut into windows of the processor's length (10 s); the window embeddings are averaged, weighted by
their length, so long takes are scored whole and deterministically (no random crop).
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from engine.cot import Cot
from engine.rewards.protocol import as_batch
from engine.rewards.resample import mono_at, windows
from engine.rewards.semantic import cosine_to_unit, semantic_text
from engine.rewards.view import VideoView

DEFAULT_CLAP = "laion/clap-htsat-unfused"  # the hub model `load` fetches when asked for with no name


class ClapHead:
    """Semantic agreement by a transformers CLAP model (see the module docstring)."""

    dimension = "semantic"

    def __init__(self, model, processor, name: str) -> None:
        self.model = model.eval()  # transformers ClapModel
        self.processor = processor  # transformers ClapProcessor (feature extractor + tokenizer)
        self.name = f"clap:{name}"
        self._lock = threading.Lock()  # the fast tokenizer is not safe to share between threads
        fe = processor.feature_extractor
        self.sample_rate = int(fe.sampling_rate)  # Hz the model was trained at
        self.window = int(fe.max_length_s * fe.sampling_rate)  # samples per window
        self.truncation = "fusion" if model.config.audio_config.enable_fusion else "rand_trunc"

    @classmethod
    def load(cls, source: str = DEFAULT_CLAP, device: str = "cpu") -> ClapHead:
        """From a local folder (written by ``save_pretrained``) or a hub id (downloaded once, on request)."""
        from transformers import ClapModel, ClapProcessor

        model = ClapModel.from_pretrained(source, use_safetensors=True).to(device)
        return cls(model, ClapProcessor.from_pretrained(source), source)

    @torch.no_grad()
    def audio_embeddings(self, takes: np.ndarray, sr: int) -> torch.Tensor:
        """(B, N, 2) -> (B, E) unit embeddings: length-weighted mean of the windows' embeddings."""
        out = []
        for take in takes:
            pieces = windows(mono_at(take, sr, self.sample_rate), self.window)
            feats = self.processor.feature_extractor(
                pieces, sampling_rate=self.sample_rate, return_tensors="pt", truncation=self.truncation,
                padding="repeatpad",
            )  # fmt: skip
            device = next(self.model.parameters()).device
            emb = self.model.get_audio_features(**{k: v.to(device) for k, v in feats.items()}).pooler_output  # (W, E)
            w = torch.tensor([len(p) for p in pieces], dtype=emb.dtype, device=emb.device)
            out.append(torch.nn.functional.normalize((emb * w[:, None]).sum(0), dim=-1))
        return torch.stack(out)

    @torch.no_grad()
    def text_embedding(self, text: str) -> torch.Tensor:
        """(E,) unit embedding of ``text``."""
        with self._lock:
            tokens = self.processor.tokenizer([text], return_tensors="pt", padding=True, truncation=True)
        device = next(self.model.parameters()).device
        return self.model.get_text_features(**{k: v.to(device) for k, v in tokens.items()}).pooler_output[0]

    def score(self, audio: np.ndarray, sample_rate: int, video: VideoView, cot: Cot) -> tuple[np.ndarray, dict]:
        """(B, N, 2) takes -> (B,) ``(1 + cos) / 2`` against the Semantic block (0.5 without any text)."""
        takes, text = as_batch(audio), semantic_text(cot)
        if not text:
            return np.full(len(takes), 0.5), {"items": [{"cosine": None}] * len(takes), "text": ""}
        cos = (self.audio_embeddings(takes, sample_rate) @ self.text_embedding(text)).double().cpu().numpy()
        return cosine_to_unit(cos), {"items": [{"cosine": float(c)} for c in cos], "text": text}
