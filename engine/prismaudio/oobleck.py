"""The Oobleck VAE of Stable Audio Open, as fine-tuned for PrismAudio (OFFICIAL.md section 2): weight-normalised
convolutions and SnakeBeta activations, 2048x down/up-sampling, 64 latent channels, no latent scaling.

Our own module in the reference's ``layers.N`` layout, so that both the copy inside prismaudio.ckpt
(``pretransform.model.*``) and vae.ckpt (``autoencoder.*``) load without a key map (diffusers'
`AutoencoderOobleck` is the same network under other names; we chose not to depend on it). Always run in
float32: SnakeBeta overflows in float16.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engine.prismaudio.architecture import VAEConfig


def weight_from_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Weight normalisation over dim 0: ``w = g v / ||v||``, the norm taken over every other dim."""
    return v * (g / v.flatten(1).norm(dim=1).reshape(-1, *([1] * (v.ndim - 1))))


class WNConv1d(nn.Module):
    """Conv1d whose weight is ``weight_g`` (Cout, 1, 1) x ``weight_v`` (Cout, Cin, k) / ||weight_v||."""

    def __init__(
        self, *, c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1, bias=True
    ) -> None:
        super().__init__()
        self.weight_g = nn.Parameter(torch.ones(c_out, 1, 1))
        self.weight_v = nn.Parameter(torch.randn(c_out, c_in, kernel) / math.sqrt(c_in * kernel))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.stride, self.padding, self.dilation = stride, padding, dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = weight_from_norm(self.weight_g, self.weight_v)
        return F.conv1d(x, w, self.bias, self.stride, self.padding, self.dilation)


class WNConvTranspose1d(nn.Module):
    """ConvTranspose1d with weight normalisation over dim 0, which is its *input* channels:
    ``weight_g`` (Cin, 1, 1), ``weight_v`` (Cin, Cout, k)."""

    def __init__(self, *, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.weight_g = nn.Parameter(torch.ones(c_in, 1, 1))
        self.weight_v = nn.Parameter(torch.randn(c_in, c_out, kernel) / math.sqrt(c_in * kernel))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = weight_from_norm(self.weight_g, self.weight_v)
        return F.conv_transpose1d(x, w, self.bias, self.stride, self.padding)


class SnakeBeta(nn.Module):
    """``y = x + 1 / (exp(beta) + 1e-9) sin(exp(alpha) x)^2`` per channel, alpha and beta in log scale."""

    def __init__(self, *, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, T) -> (B, C, T)."""
        alpha = self.alpha.exp()[None, :, None]
        beta = self.beta.exp()[None, :, None]
        return x + 1.0 / (beta + 1e-9) * torch.sin(x * alpha).pow(2)


class ResidualUnit(nn.Module):
    """Snake, dilated conv k7, Snake, conv k1, plus the input."""

    def __init__(self, *, channels: int, dilation: int) -> None:
        super().__init__()
        c = channels
        self.layers = nn.Sequential(
            SnakeBeta(channels=c),
            WNConv1d(c_in=c, c_out=c, kernel=7, dilation=dilation, padding=3 * dilation),
            SnakeBeta(channels=c),
            WNConv1d(c_in=c, c_out=c, kernel=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class EncoderBlock(nn.Module):
    """Three residual units (dilations 1, 3, 9), Snake, a strided conv k = 2 s down by ``stride``."""

    def __init__(self, *, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *(ResidualUnit(channels=c_in, dilation=d) for d in (1, 3, 9)),
            SnakeBeta(channels=c_in),
            WNConv1d(c_in=c_in, c_out=c_out, kernel=2 * stride, stride=stride, padding=math.ceil(stride / 2)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DecoderBlock(nn.Module):
    """Snake, a transposed conv k = 2 s up by ``stride``, three residual units (dilations 1, 3, 9)."""

    def __init__(self, *, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            SnakeBeta(channels=c_in),
            WNConvTranspose1d(c_in=c_in, c_out=c_out, kernel=2 * stride, stride=stride, padding=math.ceil(stride / 2)),
            *(ResidualUnit(channels=c_out, dilation=d) for d in (1, 3, 9)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class OobleckEncoder(nn.Module):
    """Audio (B, 2, T * hop) -> (B, 2 C, T): the latent's mean and (pre-softplus) scale."""

    def __init__(self, *, config: VAEConfig) -> None:
        super().__init__()
        widths = [config.channels * m for m in (1, *config.c_mults)]  # [128, 128, 256, 512, 1024, 2048]
        self.layers = nn.Sequential(
            WNConv1d(c_in=config.audio_channels, c_out=widths[0], kernel=7, padding=3),
            *(EncoderBlock(c_in=widths[i], c_out=widths[i + 1], stride=s) for i, s in enumerate(config.strides)),
            SnakeBeta(channels=widths[-1]),
            WNConv1d(c_in=widths[-1], c_out=config.encoder_latent_dim, kernel=3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class OobleckDecoder(nn.Module):
    """Latents (B, C, T) -> audio (B, 2, T * hop); no final tanh."""

    def __init__(self, *, config: VAEConfig) -> None:
        super().__init__()
        widths = [config.channels * m for m in (1, *config.c_mults)][::-1]  # [2048, 1024, 512, 256, 128, 128]
        strides = config.strides[::-1]
        self.layers = nn.Sequential(
            WNConv1d(c_in=config.latent_dim, c_out=widths[0], kernel=7, padding=3),
            *(DecoderBlock(c_in=widths[i], c_out=widths[i + 1], stride=s) for i, s in enumerate(strides)),
            SnakeBeta(channels=widths[-1]),
            WNConv1d(c_in=widths[-1], c_out=config.audio_channels, kernel=7, padding=3, bias=False),
            nn.Identity(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)


class OobleckVAE(nn.Module):
    """Encoder and decoder (keys ``encoder.*``, ``decoder.*``); the VAE bottleneck has no weights."""

    def __init__(self, *, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = OobleckEncoder(config=config)
        self.decoder = OobleckDecoder(config=config)

    def encode(self, audio: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Stereo audio (B, 2, n) -> latents (B, C, n // hop) in float32: the mean, or with ``generator`` a
        sample ``mean + (softplus(scale) + 1e-4) eps`` (the reference's VAE bottleneck)."""
        if audio.ndim != 3 or audio.shape[1] != self.config.audio_channels:
            raise ValueError(f"audio must be (B, {self.config.audio_channels}, n), got {audio.shape=}")
        mean, scale = self.encoder(audio.float()).chunk(2, dim=1)
        if generator is None:
            return mean
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + (F.softplus(scale) + 1e-4) * eps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, C, T) -> audio (B, 2, T * hop), float32 (the bottleneck is the identity on decode)."""
        if z.ndim != 3 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"latents must be (B, {self.config.latent_dim}, T), got {z.shape=}")
        return self.decoder(z.float())
