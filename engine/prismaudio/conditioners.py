"""The three feature conditioners of the official checkpoint (keys ``conditioner.conditioners.<id>.*``):
bias-free MLPs from the VideoPrism, T5Gemma and Synchformer feature widths to the DiT's token width.
OFFICIAL.md 1.4 and 1.5 step 1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.prismaudio.architecture import SYNC_TOKENS_PER_WINDOW, ConditionerConfig
from engine.prismaudio.dit import mlp

REFERENCE_SYNC_RATIO = (194, 216)  # the reference resamples S sync tokens to int(194 S / 216) (9 s: 216 -> 194)


class FeatureMLP(nn.Module):
    """``Cond_MLP``: features (B, T, d_in) -> (B, T, d_out). ``proj_out`` is the reference's unused Linear,
    kept only so that the checkpoint's keys load strictly."""

    def __init__(self, *, d_in: int, d_out: int, proj_out: bool) -> None:
        super().__init__()
        self.embedder = mlp(d_in, d_out, bias=False)
        if proj_out:
            self.proj_out = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedder(x)


class SyncMLP(nn.Module):
    """``Sync_MLP``: Synchformer tokens (B, S, d_in), 8 per segment, get a learned position within their
    segment, then the MLP, then linear resampling along time."""

    def __init__(self, *, d_in: int, d_out: int, proj_out: bool) -> None:
        super().__init__()
        self.sync_pos_emb = nn.Parameter(torch.zeros(1, 1, SYNC_TOKENS_PER_WINDOW, d_in))
        self.embedder = mlp(d_in, d_out, bias=False)
        if proj_out:
            self.proj_out = nn.Linear(d_in, d_out)  # unused in forward, as in the reference

    def forward(self, x: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """x (B, S, d_in), S a multiple of 8 -> (B, length, d_out); ``length`` None: the reference's
        ``int(194 S / 216)`` (only equal to the latent length N at a few durations, OFFICIAL.md 5.4)."""
        b, s, d = x.shape
        if s % SYNC_TOKENS_PER_WINDOW:
            raise ValueError(f"sync tokens must be a multiple of {SYNC_TOKENS_PER_WINDOW}, got {x.shape=}")
        x = x.view(b, s // SYNC_TOKENS_PER_WINDOW, SYNC_TOKENS_PER_WINDOW, d) + self.sync_pos_emb
        x = self.embedder(x.reshape(b, s, d))  # (B, S, d_out)
        if length is None:
            num, den = REFERENCE_SYNC_RATIO
            length = int(num * s / den)
        return F.interpolate(x.transpose(1, 2), size=length, mode="linear", align_corners=False).transpose(1, 2)


class Conditioners(nn.Module):
    """The three conditioners, keyed as in the checkpoint (``conditioners.{video,text,sync}_features``)."""

    def __init__(self, *, config: ConditionerConfig) -> None:
        super().__init__()
        c = config
        self.config = config
        self.conditioners = nn.ModuleDict(
            {
                "video_features": FeatureMLP(d_in=c.video_dim, d_out=c.out_dim, proj_out=c.video_proj_out),
                "text_features": FeatureMLP(d_in=c.text_dim, d_out=c.out_dim, proj_out=c.text_proj_out),
                "sync_features": SyncMLP(d_in=c.sync_dim, d_out=c.out_dim, proj_out=c.sync_proj_out),
            }
        )

    def video(self, x: torch.Tensor) -> torch.Tensor:
        """VideoPrism frame embeddings (B, F, 1024) -> (B, F, D)."""
        return self.conditioners["video_features"](x)

    def text(self, x: torch.Tensor) -> torch.Tensor:
        """T5Gemma encoder states (B, L, 1024) -> (B, L, D)."""
        return self.conditioners["text_features"](x)

    def sync(self, x: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Synchformer tokens (B, S, 768) -> (B, length, D) (`SyncMLP`)."""
        return self.conditioners["sync_features"](x, length)
