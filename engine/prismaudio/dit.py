"""The PrismAudio generator: the DiffusionTransformer of the official checkpoint, written from OFFICIAL.md
section 1.5 (module and attribute names follow the checkpoint's keys, so ``model.model.*`` loads as it is).

One call (shapes for batch B, N latent frames, F video frames, L context tokens, D width):

    c = to_cond_embed(context)                       # (B, L, D) the cross-attention context
    temb = to_timestep_embed(fourier(t))             # (B, D), prepended as one token (position 0)
    x = preprocess_conv(x) + x                       # (B, C, N)
    h = project_in(x) + sigmoid(gate) add + sigmoid(sync_gate) sync     # (B, N, D)
    h = blocks(cat([temb, h]))                       # (B, N + 1, D): self-attn (rotary), cross-attn, GLU
    o = project_out(h)[:, 1:]                        # (B, N, C), then postprocess_conv(o) + o
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engine.prismaudio.architecture import DiTConfig


def mlp(d_in: int, d_out: int, bias: bool) -> nn.Sequential:
    """Linear, SiLU, Linear (keys ``0.*`` and ``2.*``), the embedders of the reference."""
    return nn.Sequential(nn.Linear(d_in, d_out, bias=bias), nn.SiLU(), nn.Linear(d_out, d_out, bias=bias))


class FourierFeatures(nn.Module):
    """Random Fourier features of the time: ``[cos 2 pi t W^T, sin 2 pi t W^T]`` (cos first), W stored."""

    def __init__(self, *, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim // 2, 1))  # (out/2, 1), N(0, 1) as the reference

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t (B,) -> (B, out_dim)."""
        f = 2 * math.pi * t[:, None] @ self.weight.T  # (B, out/2)
        return torch.cat([f.cos(), f.sin()], dim=-1)


class LayerNorm(nn.Module):
    """LayerNorm with a learned gain and a stored bias buffer of zeros (the checkpoint holds it), eps 1e-5."""

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.register_buffer("beta", torch.zeros(dim))  # persistent: strict loading expects it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], weight=self.gamma, bias=self.beta, eps=1e-5)


class RotaryEmbedding(nn.Module):
    """Rotary positions (GPT-NeoX halves, not interleaved pairs) on the first ``dim`` dims of each head."""

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        inv_freq = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)  # (dim/2,)
        self.register_buffer("inv_freq", inv_freq)  # persistent: stored in the checkpoint

    def forward(self, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Angles (n, dim) of positions 0 .. n-1 (``cat(pos x inv_freq, pos x inv_freq)``), computed in
        ``dtype`` (float32 as the reference; float64 for a float64 model)."""
        pos = torch.arange(n, device=self.inv_freq.device, dtype=dtype)
        freqs = torch.outer(pos, self.inv_freq.to(dtype))  # (n, dim/2)
        return torch.cat([freqs, freqs], dim=-1)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(..., 2k) -> cat(-x2, x1) with x1, x2 the first and last k dims."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """x (B, H, n, d): dims [0:r] rotated by ``freqs`` (n, r) in at least float32 (as the reference, so a
    bf16 model rotates in float32), dims [r:d] passed through."""
    r = freqs.shape[-1]
    rot, rest = x[..., :r].to(freqs.dtype), x[..., r:]
    rot = rot * freqs.cos() + rotate_half(rot) * freqs.sin()
    return torch.cat([rot.to(x.dtype), rest], dim=-1)


class Attention(nn.Module):
    """Multi-head attention with RMS-normed q and k (``qk_norm: "rns"``), no biases; self-attention when
    ``context_dim`` is None (fused ``to_qkv``), cross-attention otherwise (``to_q``, ``to_kv``)."""

    def __init__(self, *, dim: int, head_dim: int, context_dim: int | None) -> None:
        super().__init__()
        self.heads = dim // head_dim
        if context_dim is None:
            self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        else:
            self.to_q = nn.Linear(dim, dim, bias=False)
            self.to_kv = nn.Linear(context_dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)
        self.q_norm = nn.RMSNorm(head_dim, eps=None)  # eps None: torch.finfo(dtype).eps, as the reference
        self.k_norm = nn.RMSNorm(head_dim, eps=None)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)  # (B, n, H d) -> (B, H, n, d)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, rotary: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, n, D), context (B, L, Dc) or None, rotary (n, r) angles or None -> (B, n, D)."""
        if context is None:
            q, k, v = self.to_qkv(x).chunk(3, dim=-1)  # order q, k, v
        else:
            q = self.to_q(x)
            k, v = self.to_kv(context).chunk(2, dim=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)  # (B, H, n|L, d)
        q, k = self.q_norm(q), self.k_norm(k)
        if rotary is not None:
            q, k = apply_rotary(q, rotary), apply_rotary(k, rotary)
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(d), no mask (the reference drops it)
        b, h, n, d = out.shape
        return self.to_out(out.transpose(1, 2).reshape(b, n, h * d))  # (B, H, n, d) -> (B, n, D)


class GLU(nn.Module):
    """``a, g = proj(x).chunk(2); a * silu(g)``: the value half first, the gate second."""

    def __init__(self, *, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, g = self.proj(x).chunk(2, dim=-1)
        return a * F.silu(g)


class FeedForward(nn.Module):
    """GLU then Linear; keys ``ff.0.proj`` and ``ff.2`` (slots 1 and 3 are the reference's Identities)."""

    def __init__(self, *, dim: int, inner: int) -> None:
        super().__init__()
        self.ff = nn.Sequential(GLU(dim=dim, inner=inner), nn.Identity(), nn.Linear(inner, dim), nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(x)


class Block(nn.Module):
    """Pre-norm block: self-attention with rotary, cross-attention to the context, GLU feed-forward."""

    def __init__(self, *, config: DiTConfig) -> None:
        super().__init__()
        d = config.width
        self.pre_norm = LayerNorm(dim=d)
        self.self_attn = Attention(dim=d, head_dim=config.head_dim, context_dim=None)
        self.cross_attend_norm = LayerNorm(dim=d)
        self.cross_attn = Attention(dim=d, head_dim=config.head_dim, context_dim=d)
        self.ff_norm = LayerNorm(dim=d)
        self.ff = FeedForward(dim=d, inner=config.ff_inner)

    def forward(self, h: torch.Tensor, context: torch.Tensor, rotary: torch.Tensor) -> torch.Tensor:
        h = h + self.self_attn(self.pre_norm(h), rotary=rotary)
        h = h + self.cross_attn(self.cross_attend_norm(h), context=context)
        return h + self.ff(self.ff_norm(h))


class Transformer(nn.Module):
    """The ContinuousTransformer: projections, the video and sync gates, the blocks (keys ``transformer.*``)."""

    def __init__(self, *, config: DiTConfig) -> None:
        super().__init__()
        d = config.width
        self.project_in = nn.Linear(config.io_channels, d, bias=False)
        self.project_out = nn.Linear(d, config.io_channels, bias=False)
        self.gate = nn.Parameter(torch.zeros(1, 1, d))  # use_gated: h += sigmoid(gate) add
        self.sync_gate = nn.Parameter(torch.zeros(1, 1, d))  # use_sync_gated: h += sigmoid(sync_gate) sync
        self.rotary_pos_emb = RotaryEmbedding(dim=config.rotary_dim)
        self.layers = nn.ModuleList(Block(config=config) for _ in range(config.depth))

    def forward(
        self, x: torch.Tensor, prepend: torch.Tensor, context: torch.Tensor, add: torch.Tensor, sync: torch.Tensor
    ) -> torch.Tensor:
        """x (B, N, C), prepend (B, 1, D), context (B, L, D), add (B, N, D), sync (B, N|1, D) -> (B, N + 1, C)."""
        h = self.project_in(x)  # (B, N, D)
        h = h + torch.sigmoid(self.gate) * add
        h = h + torch.sigmoid(self.sync_gate) * sync  # broadcasts a single (official mode) sync token
        h = torch.cat([prepend, h], dim=1)  # (B, N + 1, D): the timestep token is position 0
        rotary = self.rotary_pos_emb(h.shape[1], torch.promote_types(h.dtype, torch.float32))  # (N + 1, r)
        for block in self.layers:
            h = block(h, context, rotary)
        return self.project_out(h)


class PrismDiT(nn.Module):
    """The DiffusionTransformer (keys ``model.model.*`` of prismaudio.ckpt). Rectified flow, t = 1 noise."""

    def __init__(self, *, config: DiTConfig) -> None:
        super().__init__()
        d = config.width
        self.config = config
        self.empty_clip_feat = nn.Parameter(torch.zeros(1, d))  # unused by PrismAudio; in the checkpoint
        self.empty_sync_feat = nn.Parameter(torch.zeros(1, d))  # the sync condition of official inference
        self.timestep_features = FourierFeatures(out_dim=config.fourier_dim)
        self.to_timestep_embed = mlp(config.fourier_dim, d, bias=True)
        self.to_cond_embed = nn.Sequential(  # bias-free MLPs; their input widths are the token dims
            nn.Linear(config.cond_token_dim, d, bias=False), nn.SiLU(), nn.Linear(d, d, bias=False)
        )
        self.to_add_embed = nn.Sequential(
            nn.Linear(config.add_token_dim, d, bias=False), nn.SiLU(), nn.Linear(d, d, bias=False)
        )
        self.to_sync_embed = nn.Sequential(
            nn.Linear(config.sync_token_dim, d, bias=False), nn.SiLU(), nn.Linear(d, d, bias=False)
        )
        self.transformer = Transformer(config=config)
        self.preprocess_conv = nn.Conv1d(config.io_channels, config.io_channels, 1, bias=False)
        self.postprocess_conv = nn.Conv1d(config.io_channels, config.io_channels, 1, bias=False)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Zero-init of the residual convs, the output projection and the empty features (as the reference),
        so an untrained model starts as the identity on x; the gates start at sigmoid(0) = 1/2."""
        for p in (self.preprocess_conv.weight, self.postprocess_conv.weight, self.transformer.project_out.weight):
            nn.init.zeros_(p)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, add: torch.Tensor, sync: torch.Tensor
    ) -> torch.Tensor:
        """The velocity (B, C, N) of latents x (B, C, N) at times t (B,), given the conditioner outputs:
        context (B, L, Dc) (video then text tokens), add (B, F, Da) (video, resampled to N after its MLP)
        and sync (B, N, Ds) or (B, 1, Ds) (broadcast over time)."""
        b, _, n = x.shape
        if t.shape != (b,) or context.shape[0] != b or add.shape[0] != b or sync.shape[0] != b:
            raise ValueError(f"batch mismatch: {x.shape=} {t.shape=} {context.shape=} {add.shape=} {sync.shape=}")
        c = self.to_cond_embed(context)  # (B, L, D)
        prepend = self.to_timestep_embed(self.timestep_features(t))[:, None, :]  # (B, 1, D)
        x = self.preprocess_conv(x) + x
        a = self.to_add_embed(add)  # (B, F, D)
        if a.shape[1] != n:  # linear resampling of the embedded video to the latent frames
            a = F.interpolate(a.transpose(1, 2), size=n, mode="linear", align_corners=False).transpose(1, 2)
        s = self.to_sync_embed(sync)  # (B, N|1, D)
        if s.shape[1] not in (1, n):
            raise ValueError(f"sync tokens must be 1 or N = {n}, got {sync.shape=}")
        o = self.transformer(x.transpose(1, 2), prepend, c, a, s)  # (B, N + 1, C)
        o = o[:, 1:].transpose(1, 2)  # drop the timestep token: (B, C, N)
        return self.postprocess_conv(o) + o
