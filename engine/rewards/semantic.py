"""The semantic reward head: the audio-text contrastive score of each take against the Semantic block.

PrismAudio rewards semantics with MS-CLAP; this head uses the shipped FoleyBench contrastive model
(``assets/bench/contrastive.safetensors``: a log-mel CNN and a projection of MiniLM sentence embeddings
into one space, our CLAP analogue) and maps the cosine c in [-1, 1] to ``(1 + c) / 2`` in [0, 1]
(linear, so an RL group keeps every difference). The text is the CoT's Semantic block; when it is
empty, the whole CoT joined; when that is empty too there is nothing to compare and the score is 0.5.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
import torch

from engine.bench.mel import log_mel
from engine.bench.metric_nets import ContrastiveModel
from engine.cot import Cot
from engine.rewards.protocol import as_batch
from engine.rewards.view import VideoView

_TEXT_LOCK = threading.Lock()  # the fast tokenizer of the text encoder must not be used by two threads at once


def semantic_text(cot: Cot) -> str:
    """The text a take is compared with: the Semantic block, else the whole CoT joined ('' if all empty)."""
    return cot.semantic or cot.monolithic()


@functools.lru_cache(maxsize=256)
def sentence_embedding(text: str) -> torch.Tensor:
    """(384,) MiniLM sentence embedding of ``text`` (cached; the text encoder is guarded by a lock)."""
    from engine.text_encoder import encode_sentences

    with _TEXT_LOCK:
        return encode_sentences([text])[0]


def cosine_to_unit(cos: np.ndarray) -> np.ndarray:
    """Cosines in [-1, 1] -> scores (1 + c) / 2 in [0, 1]."""
    return np.clip((1.0 + np.asarray(cos, dtype=np.float64)) / 2.0, 0.0, 1.0)


class SemanticHead:
    """Contrastive audio-text agreement with the Semantic block."""

    dimension = "semantic"
    name = "contrastive (FoleyBench CLAP analogue)"

    def __init__(self, contrastive: ContrastiveModel) -> None:
        self.model = contrastive.eval()  # audio tower + text projection into one space

    @torch.no_grad()
    def cosines(self, takes: np.ndarray, sr: int, text: str) -> np.ndarray:
        """(B, N, 2) takes and a text -> (B,) cosines between their embeddings."""
        mel = torch.from_numpy(np.stack([log_mel(t, sr) for t in takes]))  # (B, N_MELS, T)
        audio = self.model.audio_embed(mel)  # (B, E) unit vectors
        text_emb = self.model.text_embed(sentence_embedding(text)[None])  # (1, E)
        return (audio @ text_emb[0]).double().numpy()

    def score(self, audio: np.ndarray, sample_rate: int, video: VideoView, cot: Cot) -> tuple[np.ndarray, dict]:
        """(B, N, 2) takes -> (B,) scores in [0, 1]; the video is not used."""
        takes = as_batch(audio)
        text = semantic_text(cot)
        if not text:
            return np.full(len(takes), 0.5), {"items": [{"cosine": None}] * len(takes), "text": ""}
        cos = self.cosines(takes, sample_rate, text)
        return cosine_to_unit(cos), {"items": [{"cosine": float(c)} for c in cos], "text": text}
