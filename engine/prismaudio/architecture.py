"""The sizes of a PrismAudio checkpoint, read from its tensor shapes (so the official file and small test
files load through the same code). OFFICIAL.md section 1 (generator) and section 2 (VAE)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from engine.errors import UserInputError

DIT_PREFIX = "model.model."  # the DiT's keys inside prismaudio.ckpt (DiTWrapper.model)
CONDITIONER_PREFIX = "conditioner.conditioners."  # the three conditioners' keys
VAE_PREFIX = "pretransform.model."  # the VAE copy inside prismaudio.ckpt
VAE_FILE_PREFIX = "autoencoder."  # the VAE's keys inside vae.ckpt's "state_dict"

SAMPLE_RATE = 44100  # Hz of the audio the VAE codes
HOP = 2048  # audio samples per latent frame (VAE strides 2*4*4*8*8)
LATENT_RATE = SAMPLE_RATE / HOP  # latent frames per second (21.533)
SYNC_MODES = ("official", "features")  # the empty sync embedding (the released pipeline) or the features' own
OFFICIAL_CFG = 5.0  # the reference's guidance scale
SYNC_TOKENS_PER_WINDOW = 8  # Synchformer tokens per 16-frame segment


@dataclass(frozen=True)
class DiTConfig:
    """The DiffusionTransformer of `prismaudio.json` (`dit.PrismDiT`)."""

    width: int = 1024  # D: embed_dim of the transformer
    depth: int = 24  # transformer blocks
    head_dim: int = 64  # dims per attention head (q_norm/k_norm size)
    io_channels: int = 64  # C: latent channels in and out
    cond_token_dim: int = 1024  # width of the cross-attention context the conditioners give
    add_token_dim: int = 1024  # width of the added video features
    sync_token_dim: int = 1024  # width of the added sync features
    fourier_dim: int = 256  # FourierFeatures output (cos and sin of 128 random frequencies)
    rotary_dim: int = 32  # dims of each head that get rotary embedding: max(head_dim // 2, 32)
    ff_mult: int = 4  # GLU inner width = ff_mult * D

    @property
    def heads(self) -> int:
        """Attention heads: width / head_dim."""
        return self.width // self.head_dim

    @property
    def ff_inner(self) -> int:
        """Width of the GLU's value (and gate) half."""
        return self.ff_mult * self.width


@dataclass(frozen=True)
class ConditionerConfig:
    """The three conditioners (`Cond_MLP` x2 and `Sync_MLP`, OFFICIAL.md 1.1, 1.4)."""

    video_dim: int = 1024  # VideoPrism frame embedding width
    text_dim: int = 1024  # T5Gemma encoder state width
    sync_dim: int = 768  # Synchformer token width
    out_dim: int = 1024  # width of every conditioner output (= the DiT's token dims)
    video_proj_out: bool = False  # an unused proj_out Linear exists (the reference adds one when dim != out_dim;
    text_proj_out: bool = False  #   the official key set has it for sync only)
    sync_proj_out: bool = True  # the unused proj_out of the sync conditioner (in the official file)


@dataclass(frozen=True)
class VAEConfig:
    """The Oobleck VAE of `stable_audio_2_0_vae.json` (`oobleck.OobleckVAE`)."""

    channels: int = 128  # base width; the stages are channels x c_mults
    c_mults: tuple[int, ...] = (1, 2, 4, 8, 16)  # width multipliers of the stages
    strides: tuple[int, ...] = (2, 4, 4, 8, 8)  # down- (encoder) and up-sampling (decoder) of the stages
    audio_channels: int = 2  # stereo
    latent_dim: int = 64  # C: latent channels the decoder takes
    encoder_latent_dim: int = 128  # encoder output: mean and scale of the latent (2 x latent_dim)

    @property
    def hop(self) -> int:
        """Audio samples per latent frame."""
        hop = 1
        for s in self.strides:
            hop *= s
        return hop


@dataclass(frozen=True)
class PrismAudioConfig:
    """A whole checkpoint: the generator, its conditioners and the VAE."""

    dit: DiTConfig = DiTConfig()  # the generator
    conditioners: ConditionerConfig = ConditionerConfig()  # the feature conditioners
    vae: VAEConfig = VAEConfig()  # the audio codec


def _shape(sd: dict[str, torch.Tensor], key: str, source: str) -> tuple[int, ...]:
    if key not in sd:
        raise UserInputError(f"{source} is not a PrismAudio checkpoint: key {key!r} is missing")
    return tuple(sd[key].shape)


def dit_config_from_state(sd: dict[str, torch.Tensor], source: str = "checkpoint") -> DiTConfig:
    """The DiT's sizes from its keys (without the ``model.model.`` prefix)."""
    width, io = _shape(sd, "transformer.project_in.weight", source)  # (D, C)
    depth = len({m.group(1) for k in sd if (m := re.match(r"transformer\.layers\.(\d+)\.", k))})
    head_dim = _shape(sd, "transformer.layers.0.self_attn.q_norm.weight", source)[0]
    rotary = 2 * _shape(sd, "transformer.rotary_pos_emb.inv_freq", source)[0]
    return DiTConfig(
        width=width,
        depth=depth,
        head_dim=head_dim,
        io_channels=io,
        cond_token_dim=_shape(sd, "to_cond_embed.0.weight", source)[1],
        add_token_dim=_shape(sd, "to_add_embed.0.weight", source)[1],
        sync_token_dim=_shape(sd, "to_sync_embed.0.weight", source)[1],
        fourier_dim=2 * _shape(sd, "timestep_features.weight", source)[0],
        rotary_dim=rotary,
        ff_mult=_shape(sd, "transformer.layers.0.ff.ff.2.weight", source)[1] // width,
    )


def conditioner_config_from_state(sd: dict[str, torch.Tensor], source: str = "checkpoint") -> ConditionerConfig:
    """The conditioners' sizes from their keys (without the ``conditioner.conditioners.`` prefix)."""
    out, video = _shape(sd, "video_features.embedder.0.weight", source)
    return ConditionerConfig(
        video_dim=video,
        text_dim=_shape(sd, "text_features.embedder.0.weight", source)[1],
        sync_dim=_shape(sd, "sync_features.embedder.0.weight", source)[1],
        out_dim=out,
        video_proj_out="video_features.proj_out.weight" in sd,
        text_proj_out="text_features.proj_out.weight" in sd,
        sync_proj_out="sync_features.proj_out.weight" in sd,
    )


def vae_config_from_state(sd: dict[str, torch.Tensor], source: str = "checkpoint") -> VAEConfig:
    """The VAE's sizes from its keys (``encoder.*``, ``decoder.*``); c_mults and strides are the official ones."""
    return VAEConfig(
        channels=_shape(sd, "decoder.layers.7.weight_v", source)[1],
        audio_channels=_shape(sd, "decoder.layers.7.weight_v", source)[0],
        latent_dim=_shape(sd, "decoder.layers.0.weight_v", source)[1],
        encoder_latent_dim=_shape(sd, "encoder.layers.7.weight_v", source)[0],
    )
