"""The stereo audio codec: 44.1 kHz stereo waveform <-> compact latent sequence for the generator.

The reference system uses Stable Audio Open's "Oobleck" VAE (total stride 2048, ~21.5 latent frames/s,
64 channels; DESIGN.md). Ours keeps the same frame rate but is built to be cheap on a 2-core CPU:

- **Patching.** The waveform (B, 2, N) is first reshaped into patches of ``patch`` samples per channel,
  (B, 2 * P, N / P), so no layer ever runs at the full sample rate (the idea of patch-based audio
  autoencoders; it replaces Oobleck's first stride-1 stages, which hold most of its compute).
- **Encoder.** Residual 1-D conv units (LeakyReLU; see `_act` for why not Oobleck's Snake) and strided
  convolutions down to total stride ``hop = patch * prod(strides)``.
- **Bounded latent.** The encoder ends in ``tanh`` so every latent value lies in (-1, 1) (deterministic
  autoencoder, no KL term). Per-channel mean/std statistics measured after training are stored as
  buffers; `Codec.encode` returns latents normalised to roughly zero mean and unit variance (what the
  flow-matching generator expects) and `Codec.decode` undoes it and clamps back into the tanh range.
- **Decoder.** The mirror image: transposed strided convolutions and residual units back to patches,
  then un-patching.

Stereo is encoded jointly (left and right patches enter the same first convolution), so level and
time differences between the channels are represented in the latent; the training loss
(`trainer.losses.codec_loss`) checks left, right, mid and side spectra.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import UserInputError

AUDIO_CHANNELS = 2  # the codec is stereo-only: (left, right)
FORMAT_TAG = "foley-codec"  # safetensors metadata "format" of a saved codec
FORMAT_VERSION = "1"  # bumped when the file layout changes


@dataclass(frozen=True)
class CodecConfig:
    """Sizes of one codec; the latent rate is ``sample_rate / hop``."""

    sample_rate: int = 44100  # audio samples per second per channel
    patch: int = 64  # samples per channel folded into one patch frame (first "stride")
    strides: tuple[int, ...] = (2, 4, 4)  # conv downsampling factors after patching (each >= 2)
    widths: tuple[int, ...] = (64, 96, 128, 192)  # channels per stage: patch level, then after each stride
    res_units: int = 2  # residual units before each stride, mirrored after it in the decoder (act, conv, act, 1x1)
    kernel: int = 3  # kernel size of the dilated conv in each residual unit (odd)
    dilations: tuple[int, ...] = (1, 3)  # dilation of residual unit k is dilations[k % len(dilations)]
    latent_dim: int = 64  # latent channels C
    std_floor: float = 1e-3  # smallest per-channel latent std used for normalisation (dead channels)

    def __post_init__(self) -> None:
        if len(self.widths) != len(self.strides) + 1:
            raise ValueError(f"need one width per stage: {len(self.strides)=} strides -> {len(self.widths)=} != +1")
        if any(s < 2 for s in self.strides) or self.patch < 1:
            raise ValueError(f"strides must be >= 2 and patch >= 1, got {self.strides=} {self.patch=}")
        if self.kernel % 2 == 0 or self.res_units < 0 or self.latent_dim < 1 or not self.dilations:
            raise ValueError(f"bad codec sizes: {self.kernel=} {self.res_units=} {self.latent_dim=} {self.dilations=}")

    @property
    def hop(self) -> int:
        """Total stride: audio samples per latent frame."""
        return self.patch * math.prod(self.strides)

    @property
    def latent_rate(self) -> float:
        """Latent frames per second."""
        return self.sample_rate / self.hop

    @property
    def patch_dim(self) -> int:
        """Channels of the patched waveform (both audio channels)."""
        return AUDIO_CHANNELS * self.patch

    def to_json(self) -> str:
        """The config as a JSON string (for file metadata)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> CodecConfig:
        """Inverse of `to_json` (JSON lists back to tuples)."""
        d = json.loads(text)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


CODEC_PRESETS: dict[str, CodecConfig] = {
    # The shipped codec: hop 64 * 32 = 2048 (21.53 frames/s at 44.1 kHz, as the reference), 64 channels;
    # 1.24 M parameters (4.96 MB in float32).
    "default": CodecConfig(),
    # For tests: same hop, very small widths and latent.
    "tiny": CodecConfig(widths=(8, 8, 16, 16), res_units=1, kernel=3, dilations=(1,), latent_dim=8),
}


# ----------------------------------------------------------------------------- building blocks

LEAKY_SLOPE = 0.1  # negative slope of the activation (HiFi-GAN's choice)


def _act() -> nn.Module:
    """The activation: LeakyReLU.

    Snake (BigVGAN, Oobleck) needs several elementwise passes including ``sin``; on our CPU that cost
    2-10 ms per (64, 6208) tensor against 0.05 ms for LeakyReLU and took over half of the codec's time.
    """
    return nn.LeakyReLU(LEAKY_SLOPE)


class ResidualUnit(nn.Module):
    """``x + conv1x1(act(conv_k,dilated(act(x))))``; zero-initialised so it starts as the identity."""

    def __init__(self, *, width: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.act1 = _act()  # before the dilated conv
        self.conv = nn.Conv1d(width, width, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
        self.act2 = _act()  # before the 1x1 projection
        self.proj = nn.Conv1d(width, width, 1)  # zero-initialised in `Codec._init_weights`

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, D, T) -> (B, D, T)."""
        return x + self.proj(self.act2(self.conv(self.act1(x))))


def _units(cfg: CodecConfig, width: int) -> list[nn.Module]:
    """The residual units of one stage at ``width`` channels."""
    dil = cfg.dilations
    return [ResidualUnit(width=width, kernel=cfg.kernel, dilation=dil[k % len(dil)]) for k in range(cfg.res_units)]


def _down(w_in: int, w_out: int, stride: int) -> nn.Conv1d:
    """Strided conv with kernel 2 * stride: exactly T -> T / stride frames when stride divides T."""
    return nn.Conv1d(w_in, w_out, 2 * stride, stride=stride, padding=(stride + 1) // 2)


def _up(w_in: int, w_out: int, stride: int) -> nn.ConvTranspose1d:
    """Transposed conv with kernel 2 * stride: exactly T -> T * stride frames."""
    pad = (stride + 1) // 2
    return nn.ConvTranspose1d(w_in, w_out, 2 * stride, stride=stride, padding=pad, output_padding=2 * pad - stride)


class Encoder(nn.Module):
    """Patched waveform (B, 2P, T0) -> bounded latent (B, C, T), T = T0 / prod(strides), values in (-1, 1)."""

    def __init__(self, *, config: CodecConfig) -> None:
        super().__init__()
        w = config.widths
        layers: list[nn.Module] = [nn.Conv1d(config.patch_dim, w[0], 3, padding=1)]  # mixes neighbouring patches
        for i, s in enumerate(config.strides):
            layers += [*_units(config, w[i]), _act(), _down(w[i], w[i + 1], s)]
        layers += [_act(), nn.Conv1d(w[-1], config.latent_dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 2P, T0) -> (B, C, T) in (-1, 1)."""
        return torch.tanh(self.net(x))


class Decoder(nn.Module):
    """Latent (B, C, T) -> patched waveform (B, 2P, T * prod(strides)); the mirror of `Encoder`."""

    def __init__(self, *, config: CodecConfig) -> None:
        super().__init__()
        w = config.widths
        layers: list[nn.Module] = [nn.Conv1d(config.latent_dim, w[-1], 3, padding=1)]
        for i in reversed(range(len(config.strides))):
            layers += [_act(), _up(w[i + 1], w[i], config.strides[i]), *_units(config, w[i])]
        layers += [_act(), nn.Conv1d(w[0], config.patch_dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, C, T) -> (B, 2P, T0)."""
        return self.net(z)


# ----------------------------------------------------------------------------- the codec


class Codec(nn.Module):
    """Stereo 44.1 kHz audio autoencoder with a normalised latent at ``config.latent_rate`` frames/s."""

    def __init__(self, *, config: CodecConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config=config)  # patched audio -> tanh-bounded latent
        self.decoder = Decoder(config=config)  # latent -> patched audio
        # Per-channel statistics of the bounded latent, measured after training (`set_latent_stats`);
        # identity normalisation until then.
        self.register_buffer("latent_mean", torch.zeros(config.latent_dim))  # (C,)
        self.register_buffer("latent_std", torch.ones(config.latent_dim))  # (C,)
        self._init_weights()

    def _init_weights(self) -> None:
        """Xavier-uniform convolutions with zero bias; residual branches and the decoder output start at zero.

        Zero-initialised residual projections make every unit the identity at step 0 (the trick of
        DiT's `initialize_weights` / "Fixup"), which keeps a normalisation-free conv stack stable; the zero
        output conv makes the untrained decoder output silence instead of loud noise.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv1d | nn.ConvTranspose1d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, ResidualUnit):
                nn.init.zeros_(m.proj.weight)
        nn.init.zeros_(self.decoder.net[-1].weight)

    # -- sizes

    def latent_frames(self, n_samples: int) -> int:
        """Latent frames for ``n_samples`` audio samples: ceil(n_samples / hop)."""
        if n_samples < 1:
            raise ValueError(f"need at least one audio sample, got {n_samples=}")
        return -(-n_samples // self.config.hop)

    # -- patching

    def patchify(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, 2, N) waveform, N a multiple of ``patch`` -> (B, 2P, N / P); channel index = c * P + p."""
        b, c, n = audio.shape
        p = self.config.patch
        x = audio.reshape(b, c, n // p, p)  # (B, 2, T0, P)
        return x.permute(0, 1, 3, 2).reshape(b, c * p, n // p)  # (B, 2P, T0)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of `patchify`: (B, 2P, T0) -> (B, 2, T0 * P)."""
        b, _, t0 = x.shape
        p = self.config.patch
        x = x.reshape(b, AUDIO_CHANNELS, p, t0)  # (B, 2, P, T0)
        return x.permute(0, 1, 3, 2).reshape(b, AUDIO_CHANNELS, t0 * p)  # (B, 2, N)

    # -- raw (bounded) latent

    def _check_audio(self, audio: torch.Tensor) -> None:
        if audio.ndim != 3 or audio.shape[1] != AUDIO_CHANNELS or audio.shape[2] < 1:
            raise ValueError(f"audio must be (B, 2, N) stereo with N >= 1, got {audio.shape=}")
        if not audio.is_floating_point():
            raise ValueError(f"audio must be floating point, got {audio.dtype=}")

    def encode_raw(self, audio: torch.Tensor) -> torch.Tensor:
        """Stereo waveform (B, 2, N), [-1, 1] -> bounded latent (B, C, ceil(N / hop)) in (-1, 1).

        The end is padded with zeros (silence) up to a whole number of latent frames.
        """
        self._check_audio(audio)
        n = audio.shape[-1]
        pad = self.latent_frames(n) * self.config.hop - n
        x = F.pad(audio.float(), (0, pad))  # (B, 2, T * hop)
        return self.encoder(self.patchify(x))  # (B, C, T)

    def _check_latent(self, z: torch.Tensor, n_samples: int | None) -> int:
        """Validate z (B, C, T) and return the number of samples to output."""
        if z.ndim != 3 or z.shape[1] != self.config.latent_dim or z.shape[2] < 1:
            raise ValueError(f"latent must be (B, {self.config.latent_dim}, T) with T >= 1, got {z.shape=}")
        t = z.shape[2]
        if n_samples is None:
            return t * self.config.hop
        if n_samples < 1 or self.latent_frames(n_samples) != t:
            raise ValueError(f"{n_samples=} needs {self.latent_frames(max(n_samples, 1))} latent frames, {z.shape=}")
        return n_samples

    def decode_raw(self, z: torch.Tensor, n_samples: int | None = None) -> torch.Tensor:
        """Bounded latent (B, C, T) -> stereo waveform (B, 2, n_samples) (default T * hop samples)."""
        n = self._check_latent(z, n_samples)
        return self.unpatchify(self.decoder(z.float()))[..., :n]  # (B, 2, n)

    # -- normalised latent (what the generator sees)

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Stereo waveform (B, 2, N) -> normalised latent (B, C, ceil(N / hop)), about zero mean, unit std."""
        z = self.encode_raw(audio)
        return (z - self.latent_mean[:, None]) / self.latent_std[:, None]

    def decode(self, z: torch.Tensor, n_samples: int | None = None) -> torch.Tensor:
        """Normalised latent (B, C, T) -> stereo waveform (B, 2, n_samples), cropped exactly.

        The un-normalised latent is clamped to [-1, 1], the range the encoder's tanh can produce, so a
        generator's overshoot cannot drive the decoder outside what it was trained on.
        """
        self._check_latent(z, n_samples)
        raw = z.float() * self.latent_std[:, None] + self.latent_mean[:, None]
        return self.decode_raw(raw.clamp(-1.0, 1.0), n_samples)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Reconstruction: (B, 2, N) -> (B, 2, N)."""
        return self.decode(self.encode(audio), audio.shape[-1])

    @torch.no_grad()
    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-channel statistics (C,) of the bounded latent; std is floored at ``config.std_floor``."""
        c = self.config.latent_dim
        if mean.shape != (c,) or std.shape != (c,):
            raise ValueError(f"latent stats must be ({c},), got {mean.shape=} {std.shape=}")
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std.clamp_min(self.config.std_floor))


# ----------------------------------------------------------------------------- files


def save_codec(codec: Codec, path: str | Path, extra: dict | None = None) -> None:
    """Write weights, latent statistics and config to one safetensors file (write, then rename).

    ``extra`` (JSON-able) is stored in the metadata too, e.g. training steps and final losses.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT_TAG,
        "version": FORMAT_VERSION,
        "config": codec.config.to_json(),
        "extra": json.dumps(extra or {}),
    }
    tensors = {k: v.detach().float().contiguous() for k, v in codec.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def read_codec_metadata(path: str | Path) -> dict:
    """The metadata of a codec file: ``{"config": CodecConfig, "extra": dict}``; raises `UserInputError`."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"codec file {path} does not exist; train one with `trainer.train_codec.train_codec`")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise UserInputError(f"{path} is not a safetensors file ({e}); point to a codec .safetensors file") from e
    if meta.get("format") != FORMAT_TAG:
        raise UserInputError(f"{path} holds no foley codec (metadata format={meta.get('format')!r})")
    return {"config": CodecConfig.from_json(meta["config"]), "extra": json.loads(meta.get("extra", "{}"))}


def load_codec(path: str | Path) -> Codec:
    """Read a codec written by `save_codec`; returns it in eval mode on CPU."""
    from safetensors.torch import load_file

    config = read_codec_metadata(path)["config"]
    codec = Codec(config=config)
    codec.load_state_dict(load_file(str(path)))
    return codec.eval()
