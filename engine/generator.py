"""The generator: a diffusion transformer (DiT) that predicts the rectified-flow velocity of codec latents.

Architecture (PrismAudio's generator, DESIGN "Facts about the reference system"; DiT, Peebles & Xie 2023):

- latent tokens: ``x (B, C, T)`` -> one token per latent frame (linear, width D);
- sync/motion features ``(B, T, Ds)`` are added to the latent tokens through a learned sigmoid gate, and
  the video tokens ``(B, F, Dv)``, linearly interpolated to length T, through a second gate; both gates
  start neutral (their value projections are zero-initialised);
- the timestep is a prepended token (sinusoidal embedding -> MLP) and also drives adaLN modulation of
  every block. To keep the reference size near 500M parameters the modulation is "adaLN-single"
  (PixArt-alpha section 2.3): one shared MLP ``t -> 6D`` plus a learned per-block table, zero-initialised
  so each block starts as the identity (DiT's adaLN-Zero);
- each block: self-attention over ``[time token ; latent tokens]`` with rotary positions (any T up to
  ``max_frames``), cross-attention from every token to ``[video tokens ; text tokens]``, and an MLP;
- text: each of the four CoT blocks is encoded separately (MiniLM token states), projected to D and
  tagged with a learned block-type embedding, so the network knows which block a token came from (the
  decomposition is the point of the design, DESIGN "The CoT format"); key-padding masks drop padding
  and empty blocks.

Classifier-free guidance with per-modality dropout (ThinkSound): in training (video + sync) and text are
each replaced by learned null embeddings with probability ``cond_dropout``; at inference the
unconditional branch is `Generator.null_like` (null video, and the ``negative`` text or the null text).
Slot 0 of both the video and the text sequence always holds the learned null token; it is the only
valid token of a row that has no other (dropped, or empty CoT), so no attention row is ever all-masked.

The network knows nothing about samplers or losses: `Generator.velocity` is the callable the samplers of
`engine.sampling` need; the flow-matching loss lives in ``trainer/``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as fn

from engine.cot import Cot
from engine.errors import UserInputError
from engine.sampling import Velocity, guided
from engine.weight_files import read_weights, write_weights

TextBlock = tuple[torch.Tensor, torch.Tensor]  # (states (B, Li, text_dim) float, mask (B, Li) bool, True = token)
TextEncoder = Callable[[list[str]], TextBlock]  # texts -> token states and mask (engine.text_encoder.encode_tokens)
FORMAT = "foley-generator/1"  # safetensors metadata tag of a saved generator


@dataclass(frozen=True)
class GeneratorConfig:
    """Sizes of the generator. The input widths must match the encoders and the codec it is used with."""

    latent_dim: int = 64  # C: codec latent channels per frame (the reference Oobleck VAE has 64)
    width: int = 256  # D: transformer width
    depth: int = 8  # number of DiT blocks
    heads: int = 4  # attention heads; width / heads must be even (rotary embedding pairs)
    mlp_ratio: float = 4.0  # hidden width of each block's MLP, as a multiple of D
    text_dim: int = 384  # width of the text encoder's token states (all-MiniLM-L6-v2)
    video_dim: int = 256  # Dv: width of the video encoder's tokens
    sync_dim: int = 128  # Ds: width of the sync/motion features, given at the latent frame rate
    timeline_dim: int = 0  # width of the Temporal block's time track (`engine.timeline`); 0 = not taken
    max_frames: int = 384  # largest T accepted (~17.8 s at 21.5 latent frames/s); a guard, rotary has no table
    n_blocks: int = 4  # CoT blocks with their own type embedding: semantic, temporal, aesthetic, spatial
    cond_dropout: float = 0.1  # training: probability of nulling (video + sync), and independently text
    freq_dim: int = 256  # size of the sinusoidal timestep embedding fed to the timestep MLP
    time_scale: float = 1000.0  # t in [0, 1] is multiplied by this before the sinusoidal embedding (DiT's range)
    rope_base: float = 10000.0  # base period of the rotary frequencies over token positions

    def __post_init__(self) -> None:
        if self.width % self.heads or self.head_dim % 2:
            raise ValueError(f"width / heads must be an even integer, got {self.width=} {self.heads=}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout=}")
        if min(self.latent_dim, self.depth, self.text_dim, self.video_dim, self.sync_dim, self.max_frames) < 1:
            raise ValueError(f"all sizes must be positive: {self}")
        if self.timeline_dim < 0:
            raise ValueError(f"timeline_dim must be >= 0, got {self.timeline_dim=}")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.width // self.heads

    @property
    def mlp_width(self) -> int:
        """Hidden width of each block's MLP."""
        return int(round(self.width * self.mlp_ratio))


GENERATOR_PRESETS: dict[str, GeneratorConfig] = {
    # unit tests: a few ten thousand parameters, runs in milliseconds
    "tiny": GeneratorConfig(
        latent_dim=8, width=32, depth=2, heads=2, video_dim=16, sync_dim=8, max_frames=64, freq_dim=32
    ),
    # the shipped CPU model: width 192, 6 blocks, sized so it trains on tens of thousands of clips an hour
    # and samples 24 guided steps of a 9 s clip in about a second on the 2-core CPU (DESIGN "Compute
    # budget facts"); video_dim is the width of engine.video_encoder's default preset, sync_dim is
    # engine.motion.SYNC_DIM
    "default": GeneratorConfig(width=192, depth=6, heads=4, video_dim=128, sync_dim=50),
    # the reference size (24 layers, width 1024, 16 heads; VideoPrism 1024-d video, Synchformer 768-d sync)
    "prismaudio": GeneratorConfig(latent_dim=64, width=1024, depth=24, heads=16, video_dim=1024, sync_dim=768),
}


@dataclass
class Conditions:
    """Conditioning of a batch in the generator's width D; made once per video by `Generator.prepare_conditions`.

    Slot 0 of ``video`` and ``text`` is the learned null token, valid only where the row has no other
    valid token (dropped, no video, empty CoT).
    """

    video: torch.Tensor  # (B, 1 + F, D) video tokens for cross-attention (with positions), slot 0 = null
    video_mask: torch.Tensor  # (B, 1 + F) bool, True = attend
    video_seq: torch.Tensor  # (B, T, D) video features interpolated to the latent frame rate (second gate)
    sync: torch.Tensor  # (B, T, D) projected sync features (first gate)
    text: torch.Tensor  # (B, 1 + L, D) projected CoT tokens plus block-type embeddings, slot 0 = null
    text_mask: torch.Tensor  # (B, 1 + L) bool, True = attend
    block_ids: torch.Tensor  # (B, 1 + L) long: CoT block 0..n_blocks-1, n_blocks for the null slot, -1 padding
    timeline: torch.Tensor  # (B, T, D) projected Temporal-block time track (third gate); (B, T, 0) if not taken

    @property
    def batch_size(self) -> int:
        """B, the number of rows."""
        return self.video.shape[0]

    @property
    def n_frames(self) -> int:
        """T, the latent length these conditions were prepared for."""
        return self.sync.shape[1]

    def map(self, f: Callable[[torch.Tensor], torch.Tensor]) -> Conditions:
        """Apply ``f`` to every tensor (``.to(device)``, ``.detach()``, row selection...)."""
        return Conditions(**{k.name: f(getattr(self, k.name)) for k in fields(self)})

    def repeat(self, n: int) -> Conditions:
        """Each row repeated ``n`` times in place (row b -> rows b n .. b n + n - 1), e.g. for candidates."""
        return self.map(lambda x: x.repeat_interleave(n, dim=0))


def _pad_tokens(x: torch.Tensor, length: int, value: float | bool | int) -> torch.Tensor:
    """Pad dim 1 of ``x`` (B, S, ...) to ``length`` with ``value``."""
    pad = torch.full((x.shape[0], length - x.shape[1], *x.shape[2:]), value, dtype=x.dtype, device=x.device)
    return torch.cat([x, pad], 1)


def concat_conditions(conds: Sequence[Conditions]) -> Conditions:
    """Stack conditions along the batch, padding video and text to the longest (padding is masked out)."""
    if len({c.n_frames for c in conds}) != 1:
        raise ValueError(f"conditions prepared for different T: {[c.n_frames for c in conds]}")
    nv, nl = max(c.video.shape[1] for c in conds), max(c.text.shape[1] for c in conds)
    cat = lambda name, n, value: torch.cat([_pad_tokens(getattr(c, name), n, value) for c in conds])
    return Conditions(
        video=cat("video", nv, 0.0),
        video_mask=cat("video_mask", nv, False),
        video_seq=torch.cat([c.video_seq for c in conds]),
        sync=torch.cat([c.sync for c in conds]),
        text=cat("text", nl, 0.0),
        text_mask=cat("text_mask", nl, False),
        block_ids=cat("block_ids", nl, -1),
        timeline=torch.cat([c.timeline for c in conds]),
    )


def _first_only(mask: torch.Tensor) -> torch.Tensor:
    """A mask like ``mask`` (B, S) with only slot 0 valid (the null token)."""
    out = torch.zeros_like(mask)
    out[:, 0] = True
    return out


TIMELINE_SEED = 20_261_205  # seeds the timeline path's initial weights (see `Generator.__init__`)

# ---------------------------------------------------------------------------------------------- layers


def sinusoidal(pos: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (Transformer, Vaswani et al. 2017) of positions ``pos`` (...,) -> (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(base) * torch.arange(half, dtype=torch.float32, device=pos.device) / half)
    angles = pos.float()[..., None] * freqs  # (..., dim / 2)
    return torch.cat([torch.cos(angles), torch.sin(angles)], -1)


class TimestepEmbedder(nn.Module):
    """t (B,) in [0, 1] -> (B, D): sinusoidal embedding of ``t * time_scale`` followed by an MLP (DiT)."""

    def __init__(self, *, width: int, freq_dim: int, time_scale: float) -> None:
        super().__init__()
        self.freq_dim, self.time_scale = freq_dim, time_scale
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal(t * self.time_scale, self.freq_dim))


class Rotary(nn.Module):
    """Rotary position embedding (RoFormer, Su et al. 2021) for positions 0 .. S-1; no table, so any S works."""

    def __init__(self, *, head_dim: int, base: float) -> None:
        super().__init__()
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (hd / 2,)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of shape (n, head_dim / 2)."""
        angles = torch.arange(n, dtype=torch.float32, device=self.inv_freq.device)[:, None] * self.inv_freq
        return torch.cos(angles), torch.sin(angles)


def apply_rotary(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate pairs (first half, second half) of the head dimension of ``x`` (B, H, S, hd)."""
    cos, sin = rope
    x1, x2 = x.chunk(2, dim=-1)  # (B, H, S, hd / 2) each
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, S, D) -> (B, H, S, D / H)."""
    b, s, d = x.shape
    return x.view(b, s, heads, d // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, S, D / H) -> (B, S, D)."""
    b, h, s, hd = x.shape
    return x.transpose(1, 2).reshape(b, s, h * hd)


class SelfAttention(nn.Module):
    """Multi-head self-attention with rotary positions and RMS-normalised queries and keys (QK-norm)."""

    def __init__(self, *, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.q_norm, self.k_norm = nn.RMSNorm(width // heads), nn.RMSNorm(width // heads)
        self.out = nn.Linear(width, width)

    def forward(self, h: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        q, k, v = (_split_heads(z, self.heads) for z in self.qkv(h).chunk(3, -1))  # (B, H, S, hd) each
        q, k = apply_rotary(self.q_norm(q), rope), apply_rotary(self.k_norm(k), rope)
        return self.out(_merge_heads(fn.scaled_dot_product_attention(q, k, v)))


class CrossAttention(nn.Module):
    """Attention from the token sequence to a masked context (video and text tokens), QK-norm, no positions."""

    def __init__(self, *, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.kv = nn.Linear(width, width), nn.Linear(width, 2 * width)
        self.q_norm, self.k_norm = nn.RMSNorm(width // heads), nn.RMSNorm(width // heads)
        self.out = nn.Linear(width, width)

    def keys_values(self, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalised keys and the values of a context (B, K, D): (B, H, K, hd) each."""
        k, v = (_split_heads(z, self.heads) for z in self.kv(ctx).chunk(2, -1))
        return self.k_norm(k), v

    def forward(
        self,
        h: torch.Tensor,
        ctx: torch.Tensor | None,
        ctx_mask: torch.Tensor,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """h (B, S, D), ctx (B, K, D), ctx_mask (B, K) bool with at least one True per row -> (B, S, D);
        ``kv``: `keys_values` of the context computed before (a sampler's context is the same at every
        step), and then ``ctx`` may be None."""
        q = self.q_norm(_split_heads(self.q(h), self.heads))  # (B, H, S, hd)
        k, v = self.keys_values(ctx) if kv is None else kv  # (B, H, K, hd) each
        mask = ctx_mask[:, None, None, :]  # (B, 1, 1, K): padded tokens get no weight
        return self.out(_merge_heads(fn.scaled_dot_product_attention(q, k, v, attn_mask=mask)))


class GatedInjection(nn.Module):
    """``h + sigmoid(gate([h ; f])) * value(f)``: add per-frame features to the latent tokens through a
    learned sigmoid gate (PrismAudio's video and sync paths)."""

    def __init__(self, *, width: int) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * width, width)
        self.value = nn.Linear(width, width)

    def forward(self, h: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """h, f (B, T, D) -> (B, T, D)."""
        return h + torch.sigmoid(self.gate(torch.cat([h, f], -1))) * self.value(f)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x (B, S, D) with per-sample shift, scale (B, D)."""
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """adaLN-modulated self-attention, plain pre-norm cross-attention (as PixArt-alpha), adaLN-modulated MLP."""

    def __init__(self, *, width: int, heads: int, mlp_width: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(width=width, heads=heads)
        self.norm_cross = nn.LayerNorm(width, eps=1e-6)
        self.cross = CrossAttention(width=width, heads=heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_width), nn.GELU(approximate="tanh"), nn.Linear(mlp_width, width))
        # per-block part of the adaLN-single modulation: shift, scale, gate of attention and of the MLP
        self.mod_table = nn.Parameter(torch.zeros(6, width))

    def forward(
        self,
        h: torch.Tensor,
        mod: torch.Tensor,
        ctx: torch.Tensor | None,
        ctx_mask: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """h (B, S, D); mod (B, 6, D) shared modulation from the timestep; ctx (B, K, D); ctx_mask (B, K);
        kv: the cross-attention's keys and values of the context, when computed before (ctx may then be None)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = (mod + self.mod_table).unbind(1)  # (B, D) each
        h = h + gate1[:, None] * self.attn(_modulate(self.norm1(h), shift1, scale1), rope)
        h = h + self.cross(self.norm_cross(h), ctx, ctx_mask, kv)
        return h + gate2[:, None] * self.mlp(_modulate(self.norm2(h), shift2, scale2))


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm and a linear map to the latent channels: (B, T, D) -> (B, T, C)."""

    def __init__(self, *, width: int, latent_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mod = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, latent_dim)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.mod(c).chunk(2, -1)  # (B, D) each
        return self.out(_modulate(self.norm(h), shift, scale))


# ------------------------------------------------------------------------------------------- generator


class Generator(nn.Module):
    """The DiT velocity network ``v(x_t, t, c)`` of the rectified flow (convention in `engine.sampling`)."""

    def __init__(self, *, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = cfg = config
        d = cfg.width
        self.latent_in = nn.Linear(cfg.latent_dim, d)
        self.video_in = nn.Linear(cfg.video_dim, d)
        self.sync_in = nn.Linear(cfg.sync_dim, d)
        self.text_in = nn.Linear(cfg.text_dim, d)
        self.block_embed = nn.Parameter(torch.empty(cfg.n_blocks, d))  # which CoT block a token came from
        self.null_video = nn.Parameter(torch.empty(d))  # stands for "no video" (tokens, interpolated frames)
        self.null_sync = nn.Parameter(torch.empty(d))  # stands for "no sync features" (every frame)
        self.null_text = nn.Parameter(torch.empty(d))  # stands for "no text" (empty CoT or dropped)
        self.sync_gate, self.video_gate = GatedInjection(width=d), GatedInjection(width=d)
        self.t_embed = TimestepEmbedder(width=d, freq_dim=cfg.freq_dim, time_scale=cfg.time_scale)
        self.t_mod = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))  # adaLN-single: shared by all blocks
        self.ctx_norm = nn.LayerNorm(d, eps=1e-6)  # the context is the same for all blocks: normalise once
        self.rotary = Rotary(head_dim=cfg.head_dim, base=cfg.rope_base)
        self.blocks = nn.ModuleList(
            DiTBlock(width=d, heads=cfg.heads, mlp_width=cfg.mlp_width) for _ in range(cfg.depth)
        )
        self.final = FinalLayer(width=d, latent_dim=cfg.latent_dim)
        self.initialize_weights()
        if cfg.timeline_dim:  # the Temporal block's times, frame by frame (`engine.timeline`); part of the text
            # made last and from a random state of its own: every other weight is the same as without it
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(TIMELINE_SEED)
                self.timeline_in = nn.Linear(cfg.timeline_dim, d)
                self.null_timeline = nn.Parameter(torch.empty(d))  # stands for "no text" on every frame
                self.timeline_gate = GatedInjection(width=d)
                nn.init.xavier_uniform_(self.timeline_in.weight)
                nn.init.normal_(self.null_timeline, std=0.02)
                for lin in (self.timeline_in, self.timeline_gate.gate, self.timeline_gate.value):
                    nn.init.zeros_(lin.bias)
                for lin in (self.timeline_gate.gate, self.timeline_gate.value):  # adds nothing at first
                    nn.init.zeros_(lin.weight)

    def initialize_weights(self) -> None:
        """DiT's initialisation, plus zero gates so that a fresh model starts neutral (velocity 0)."""

        def _basic(m: nn.Module) -> None:  # Xavier-uniform linears with zero bias, as DiT
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

        self.apply(_basic)
        for lin in (self.t_embed.mlp[0], self.t_embed.mlp[2]):  # timestep MLP: N(0, 0.02) as DiT
            nn.init.normal_(lin.weight, std=0.02)
        # block types comparable in size to projected MiniLM states, so the block is visible from step one
        nn.init.normal_(self.block_embed, std=0.2)
        for p in (self.null_video, self.null_sync, self.null_text):
            nn.init.normal_(p, std=0.02)
        zero = [self.t_mod[1], self.final.mod[1], self.final.out]  # adaLN-Zero modulation and output layer
        zero += [g.value for g in (self.sync_gate, self.video_gate)]  # gated paths add nothing at first
        zero += [g.gate for g in (self.sync_gate, self.video_gate)]  # gates start half open (sigmoid 0)
        zero += [b.cross.out for b in self.blocks]  # cross-attention residuals start at zero (PixArt)
        for lin in zero:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        for b in self.blocks:
            nn.init.zeros_(b.mod_table)  # gates of attention and MLP are 0: every block starts as identity

    def num_parameters(self) -> int:
        """Number of trainable and frozen parameters (buffers excluded)."""
        return sum(p.numel() for p in self.parameters())

    # -------------------------------------------------------------------------------- conditions

    def prepare_conditions(
        self,
        video_tokens: torch.Tensor | None,
        video_mask: torch.Tensor | None,
        sync: torch.Tensor | None,
        text_states_per_block: Sequence[TextBlock],
        n_frames: int,
        timeline: torch.Tensor | None = None,
    ) -> Conditions:
        """Project the conditioning of a batch once (cache it per video; it does not depend on x or t).

        video_tokens (B, F, Dv) at the video encoder's fixed rate, or None for no video; video_mask (B, F)
        bool (None = all valid); sync (B, T, Ds) at the latent frame rate with T = ``n_frames``, or None;
        text_states_per_block: ``n_blocks`` pairs (states (B, Li, text_dim), mask (B, Li)) in CoT order
        (see `encode_cot_blocks`; mask an empty block out entirely); n_frames: T of the latents to generate;
        timeline (B, T, timeline_dim): the Temporal block's track (`engine.timeline.timeline_track`), for a
        model that takes one (None: the null embedding, as for dropped text; ignored by other models).
        """
        cfg = self.config
        if len(text_states_per_block) != cfg.n_blocks:
            raise ValueError(f"need {cfg.n_blocks} text blocks (CoT order), got {len(text_states_per_block)}")
        b = text_states_per_block[0][0].shape[0]
        if not 1 <= n_frames <= cfg.max_frames:
            raise ValueError(f"n_frames must be in 1..{cfg.max_frames}, got {n_frames=}")
        video, video_mask, video_seq = self._video_conditions(video_tokens, video_mask, b, n_frames)
        text, text_mask, block_ids = self._text_conditions(text_states_per_block, b)
        sync = self._sync_conditions(sync, b, n_frames)
        timeline = self._timeline_conditions(timeline, b, n_frames)
        return Conditions(video, video_mask, video_seq, sync, text, text_mask, block_ids, timeline)

    def _video_conditions(self, video, mask, b: int, n_frames: int):
        """-> video tokens (B, 1 + F, D) with positions and the null slot, mask (B, 1 + F), frames (B, T, D)."""
        cfg, dev = self.config, self.null_video.device
        if video is None:
            video = torch.zeros(b, 0, cfg.video_dim, device=dev)
        if video.ndim != 3 or video.shape[0] != b or video.shape[2] != cfg.video_dim:
            raise ValueError(f"video_tokens must be (B={b}, F, Dv={cfg.video_dim}), got {video.shape=}")
        mask = torch.ones(video.shape[:2], dtype=torch.bool, device=dev) if mask is None else mask.bool()
        if mask.shape != video.shape[:2]:
            raise ValueError(f"video_mask must be (B, F) = {tuple(video.shape[:2])}, got {mask.shape=}")
        v = self.video_in(video)  # (B, F, D)
        seq = self._frames_to_latent_rate(v, mask, n_frames)  # (B, T, D)
        v = v + sinusoidal(torch.arange(v.shape[1], device=dev), cfg.width)  # (B, F, D) frame-index positions
        null = self.null_video.expand(b, 1, cfg.width)  # (B, 1, D)
        return torch.cat([null, v], 1), torch.cat([~mask.any(1, keepdim=True), mask], 1), seq

    def _frames_to_latent_rate(self, v: torch.Tensor, mask: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Linear interpolation of each row's valid frames (B, F, D) to (B, T, D); rows without any -> null."""
        if bool(mask.all()) and v.shape[1] > 0:
            return fn.interpolate(v.transpose(1, 2), size=n_frames, mode="linear").transpose(1, 2)
        rows = []
        for vb, mb in zip(v, mask):
            if not bool(mb.any()):
                rows.append(self.null_video.expand(n_frames, -1))
                continue
            row = vb[mb].T[None]  # (1, D, F_valid)
            rows.append(fn.interpolate(row, size=n_frames, mode="linear")[0].T)  # (T, D)
        return torch.stack(rows)

    def _sync_conditions(self, sync: torch.Tensor | None, b: int, n_frames: int) -> torch.Tensor:
        """(B, T, Ds) -> (B, T, D); None -> the null sync embedding on every frame."""
        cfg = self.config
        if sync is None:
            return self.null_sync.expand(b, n_frames, cfg.width)
        if sync.shape != (b, n_frames, cfg.sync_dim):
            # the reference crashed or silently dropped sync on a length mismatch: say it instead
            raise ValueError(
                f"sync must be (B={b}, T={n_frames}, Ds={cfg.sync_dim}) at the latent rate, got {sync.shape=}"
            )
        return self.sync_in(sync)

    def _timeline_conditions(self, timeline: torch.Tensor | None, b: int, n_frames: int) -> torch.Tensor:
        """(B, T, timeline_dim) -> (B, T, D); None -> the null embedding; (B, T, 0) for a model without."""
        cfg = self.config
        if not cfg.timeline_dim:
            return torch.zeros(b, n_frames, 0, device=self.null_text.device)
        if timeline is None:
            return self.null_timeline.expand(b, n_frames, cfg.width)
        if timeline.shape != (b, n_frames, cfg.timeline_dim):
            raise ValueError(f"timeline must be (B={b}, T={n_frames}, {cfg.timeline_dim}), got {timeline.shape=}")
        return self.timeline_in(timeline)

    def _text_conditions(self, blocks: Sequence[TextBlock], b: int):
        """-> text (B, 1 + L, D) = [null ; block 0 ; ... ; block 3] with block embeddings, mask, block ids."""
        cfg = self.config
        dev = self.null_text.device
        states, masks, ids = [self.null_text.expand(b, 1, cfg.width)], [], [torch.full((b, 1), cfg.n_blocks)]
        for i, (s, m) in enumerate(blocks):
            if s.ndim != 3 or s.shape[0] != b or s.shape[2] != cfg.text_dim or m.shape != s.shape[:2]:
                raise ValueError(
                    f"text block {i} must be (B={b}, Li, {cfg.text_dim}) with a (B, Li) mask, got {s.shape=} {m.shape=}"
                )
            states.append(self.text_in(s) + self.block_embed[i])  # (B, Li, D)
            masks.append(m.bool())
            ids.append(torch.full(m.shape, i))
        mask = torch.cat(masks, 1)  # (B, L)
        mask = torch.cat([~mask.any(1, keepdim=True), mask], 1)  # (B, 1 + L): the null slot fills empty rows
        return torch.cat(states, 1), mask, torch.cat(ids, 1).to(dev)

    def null_like(self, cond: Conditions, negative: TextBlock | None = None) -> Conditions:
        """The unconditional branch of guidance for ``cond``: null video and sync, and as text either the
        ``negative`` prompt's states (B, L, text_dim) with mask (B, L) in the semantic slot, or the null text."""
        drop = torch.ones(cond.batch_size, dtype=torch.bool, device=cond.video.device)
        out = self.substitute_null(cond, drop, drop)
        if negative is None:
            return out
        s, m = negative
        empty = (s[:, :0], m[:, :0])  # (B, 0, text_dim), (B, 0): the other blocks contribute no tokens
        text, mask, ids = self._text_conditions([(s, m)] + [empty] * (self.config.n_blocks - 1), cond.batch_size)
        return replace(out, text=text, text_mask=mask, block_ids=ids)

    def drop_conditions(self, cond: Conditions, generator: torch.Generator | None = None) -> Conditions:
        """Training-time per-modality dropout (ThinkSound): each row's (video + sync) and, independently, its
        text are replaced by the null embeddings with probability ``config.cond_dropout``."""
        return self.substitute_null(cond, *self.dropout_masks(cond.batch_size, cond.video.device, generator))

    def dropout_masks(
        self, batch: int, device, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(drop_video, drop_text), each (B,) bool on ``device``: True with probability ``config.cond_dropout``."""
        p = self.config.cond_dropout
        u = torch.rand(2, batch, generator=generator, device=generator.device if generator is not None else "cpu")
        return (u[0] < p).to(device), (u[1] < p).to(device)

    def substitute_null(self, cond: Conditions, drop_video: torch.Tensor, drop_text: torch.Tensor) -> Conditions:
        """Rows with ``drop_video`` (B,) get null video and sync; rows with ``drop_text`` (B,) the null text
        (and the null timeline: the timeline is read from the text)."""
        dv = drop_video[:, None]  # (B, 1)
        if self.config.timeline_dim:
            null = self.null_timeline.expand_as(cond.timeline)
            cond = replace(cond, timeline=torch.where(drop_text[:, None, None], null, cond.timeline))
        return replace(
            cond,
            video_mask=torch.where(dv, _first_only(cond.video_mask), cond.video_mask),
            video_seq=torch.where(dv[..., None], self.null_video.expand_as(cond.video_seq), cond.video_seq),
            sync=torch.where(dv[..., None], self.null_sync.expand_as(cond.sync), cond.sync),
            text_mask=torch.where(drop_text[:, None], _first_only(cond.text_mask), cond.text_mask),
        )

    # ---------------------------------------------------------------------------------- velocity

    def velocity(self, x: torch.Tensor, t: torch.Tensor, cond: Conditions, context: list | None = None) -> torch.Tensor:
        """Velocity ``v ~ x1 - x0`` at noisy latents x (B, C, T) and times t (B,) in [0, 1] -> (B, C, T).

        ``context``: `context_cache` of ``cond`` (the same at every step of a sampler with fixed weights)."""
        self._check_inputs(x, t, cond)
        b, _, n = x.shape
        c = self.t_embed(t)  # (B, D)
        h = self.latent_in(x.transpose(1, 2))  # (B, C, T) -> (B, T, D)
        h = self.video_gate(self.sync_gate(h, cond.sync), cond.video_seq)  # (B, T, D)
        if self.config.timeline_dim:
            h = self.timeline_gate(h, cond.timeline)
        h = torch.cat([c[:, None], h], 1)  # (B, 1 + T, D): the timestep token first
        ctx = self._context(cond) if context is None else None  # (B, K = 1 + F + 1 + L, D); cached: in `context`
        ctx_mask = torch.cat([cond.video_mask, cond.text_mask], 1)  # (B, K)
        mod = self.t_mod(c).view(b, 6, -1)  # (B, 6, D)
        rope = self.rotary(n + 1)
        kvs = context if context is not None else [None] * len(self.blocks)
        for block, kv in zip(self.blocks, kvs, strict=True):
            h = block(h, mod, ctx, ctx_mask, rope, kv)
        return self.final(h[:, 1:], c).transpose(1, 2)  # (B, T, C) -> (B, C, T)

    def _context(self, cond: Conditions) -> torch.Tensor:
        """The normalised cross-attention context (B, K, D): video tokens then text tokens."""
        return self.ctx_norm(torch.cat([cond.video, cond.text], 1))

    def context_cache(self, cond: Conditions) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every block's cross-attention keys and values of ``cond``'s context, for `velocity`: valid while
        the weights stay as they are (sampling, not training)."""
        ctx = self._context(cond)
        return [block.cross.keys_values(ctx) for block in self.blocks]

    def fixed_velocity(self, conds: Sequence[Conditions]):
        """``velocity_branches`` for conditions that stay fixed over a whole sampler run, with the padded
        batch of conditions and every block's context keys and values computed once:
        ``(x (B, C, T), t (B,)) -> tuple of K velocities``. Only while the weights do not change."""
        both = concat_conditions(list(conds))
        cache, k = self.context_cache(both), len(conds)

        def velocity(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
            v = self.velocity(torch.cat([x] * k), torch.cat([t] * k), both, cache)  # (K B, C, T)
            return tuple(v.split(x.shape[0]))

        return velocity

    def velocity_pair(
        self, x: torch.Tensor, t: torch.Tensor, cond: Conditions, uncond: Conditions
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(v_cond, v_uncond), each (B, C, T), from one network pass on a batch of 2B (for `sampling.guided`)."""
        return self.velocity_branches(x, t, [cond, uncond])

    def velocity_branches(
        self, x: torch.Tensor, t: torch.Tensor, conds: Sequence[Conditions]
    ) -> tuple[torch.Tensor, ...]:
        """The velocity at the same x (B, C, T) and t (B,) under each of K conditions, (B, C, T) each, from one
        network pass on a batch of K B (for `sampling.guided`: two branches, or three with a video scale)."""
        k = len(conds)
        v = self.velocity(torch.cat([x] * k), torch.cat([t] * k), concat_conditions(list(conds)))  # (K B, C, T)
        return tuple(v.split(x.shape[0]))

    def text_only_like(self, cond: Conditions) -> Conditions:
        """``cond`` with the null video and sync and its own text: the text-only branch of split guidance."""
        b, dev = cond.batch_size, cond.video.device
        return self.substitute_null(
            cond, torch.ones(b, dtype=torch.bool, device=dev), torch.zeros(b, dtype=torch.bool, device=dev)
        )

    def _check_inputs(self, x: torch.Tensor, t: torch.Tensor, cond: Conditions) -> None:
        cfg = self.config
        if x.ndim != 3 or x.shape[1] != cfg.latent_dim:
            raise ValueError(f"x must be (B, C={cfg.latent_dim}, T), got {x.shape=}")
        if not 1 <= x.shape[2] <= cfg.max_frames:
            raise ValueError(f"T must be in 1..{cfg.max_frames}, got {x.shape=}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be (B,) = ({x.shape[0]},), got {t.shape=}")
        if cond.batch_size != x.shape[0] or cond.n_frames != x.shape[2]:
            raise ValueError(f"conditions are for B={cond.batch_size}, T={cond.n_frames}; got {x.shape=}")


def generator_guidance(
    gen: Generator,
    cond: Conditions,
    uncond: Conditions,
    cfg: float,
    interval: tuple[float, float],
    video_cfg: float | None,
    rescale: float = 0.0,
    frozen: bool = False,
) -> Velocity:
    """The guided velocity of ``gen`` for ``cond`` against ``uncond`` (`engine.sampling.guided`), the
    branches in one network pass: split guidance with a text-only third branch when ``video_cfg`` is set
    and differs from ``cfg``, plain two-branch guidance otherwise; the conditional velocity alone outside
    ``interval``. Renders and the GRPO policy both sample with it. ``frozen``: the weights (and LoRA
    adapters) stay as they are from here on (a render), so the conditions' context is projected once
    (`Generator.fixed_velocity`); the same velocities, to the bit. Not for GRPO, whose reference policy
    evaluates the same velocity with the adapters switched off."""
    branches = [cond, uncond]
    if video_cfg is not None and video_cfg != cfg:
        branches.insert(1, gen.text_only_like(cond))  # (cond, text only, uncond)
    else:
        video_cfg = None  # the same scale for both: plain guidance
    if frozen:
        every, alone = gen.fixed_velocity(branches), gen.fixed_velocity([cond])
        conditional = lambda x, t: alone(x, t)[0]  # noqa: E731
    else:
        every = lambda x, t: gen.velocity_branches(x, t, branches)  # noqa: E731
        conditional = lambda x, t: gen.velocity(x, t, cond)  # noqa: E731
    return guided(every, cfg, rescale, interval, conditional, video_cfg)


# ---------------------------------------------------------------------------------------- text helpers


def encode_cot_blocks(cots: Sequence[Cot], encode: TextEncoder | None = None) -> list[TextBlock]:
    """Encode the four blocks of each CoT separately: 4 pairs (states (B, Li, 384), mask (B, Li)) in CoT
    order, with the rows of empty blocks masked out entirely (an empty block contributes no tokens)."""
    texts = [list(blocks) for blocks in zip(*(c.blocks() for c in cots))]  # 4 lists of B texts
    return _encode_rows(texts, encode)


def encode_negative(cots: Sequence[Cot], encode: TextEncoder | None = None) -> TextBlock:
    """The ``negative`` prompt of each CoT: states (B, L, 384) and mask (B, L), rows of empty prompts masked
    out, so that `Generator.null_like` falls back to the null text for them."""
    return _encode_rows([[c.negative for c in cots]], encode)[0]


def _encode_rows(texts: list[list[str]], encode: TextEncoder | None) -> list[TextBlock]:
    """Encode K lists of B texts in one encoder call; empty texts get an all-False mask."""
    if encode is None:
        from engine.text_encoder import encode_tokens as encode
    flat = [s for row in texts for s in row]
    states, mask = encode(flat)  # (K B, L, 384), (K B, L)
    mask = mask.bool() & torch.tensor([bool(s.strip()) for s in flat], device=mask.device)[:, None]
    b = len(texts[0])
    return [(states[k * b : (k + 1) * b], mask[k * b : (k + 1) * b]) for k in range(len(texts))]


# ------------------------------------------------------------------------------------------ build, save


def build_generator(preset: str | GeneratorConfig = "default") -> Generator:
    """A freshly initialised generator from a preset name of `GENERATOR_PRESETS` or a config."""
    if isinstance(preset, GeneratorConfig):
        return Generator(config=preset)
    if preset not in GENERATOR_PRESETS:
        raise UserInputError(f"unknown generator preset {preset!r}; choose one of {', '.join(GENERATOR_PRESETS)}")
    return Generator(config=GENERATOR_PRESETS[preset])


def save_generator(model: Generator, path: str | Path) -> None:
    """Write the weights as safetensors with the config JSON in the metadata (written to a temporary file
    first, so a failed save never leaves a half-written checkpoint)."""
    write_weights(path, model.state_dict(), {"format": FORMAT, "config": json.dumps(asdict(model.config))})


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """Rebuild a generator saved by `save_generator`; `UserInputError` when the file cannot be used."""
    state, meta = read_weights(path, FORMAT, "generator checkpoint")
    model = Generator(config=GeneratorConfig(**json.loads(meta["config"])))
    model.load_state_dict(state)
    return model.to(device).eval()


# How the CoT reaches the generator (PrismAudio's ablation): four blocks with their identity, the same
# words joined into one opaque string, or no text at all. One definition for training and inference.
COT_MODES = ("decomposed", "monolithic", "none")
BLOCK_TOKENS = 128  # token limit per CoT block
MONO_TOKENS = 512  # token limit of the monolithic string (4x a block: never cut where the blocks are not)


def cot_text_blocks(
    cots: Sequence[Cot], mode: str, block_tokens: int = BLOCK_TOKENS, mono_tokens: int = MONO_TOKENS, encode=None
) -> list[TextBlock]:
    """The generator's four text slots for a CoT mode: 4 pairs (states (B, Lk, 384), mask (B, Lk)).

    - "decomposed": the four blocks encoded separately, slot k = block k (`encode_cot_blocks`), so the
      generator's block-type embedding k marks where each token came from;
    - "monolithic": `Cot.monolithic()` (the same words, joined) encoded as ONE string into slot 0, slots
      1-3 empty. Every token then carries the same slot-0 embedding, a constant offset that tells the
      model nothing about which block a word came from: the official release's single opaque string.
      The token limit is 4x the per-block one, so the monolithic text is never cut where the blocks are not;
    - "none": all four slots empty (only the generator's null text token is attended).
    ``encode``: texts -> (states, mask) (default `engine.text_encoder.encode_tokens`).
    """
    if mode not in COT_MODES:
        raise ValueError(f"unknown cot mode {mode!r}; choose one of {', '.join(COT_MODES)}")
    if mode == "none":
        empty = (torch.zeros(len(cots), 0, 384), torch.zeros(len(cots), 0, dtype=torch.bool))  # MiniLM width
        return [empty] * 4
    if encode is None:
        from engine.text_encoder import encode_tokens as encode
    if mode == "decomposed":
        return encode_cot_blocks(cots, partial(encode, max_tokens=block_tokens))
    mono = [Cot(semantic=c.monolithic(), temporal="", aesthetic="", spatial="") for c in cots]
    return encode_cot_blocks(mono, partial(encode, max_tokens=mono_tokens))
