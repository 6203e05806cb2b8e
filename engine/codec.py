"""The stereo audio codec: 44.1 kHz stereo waveform <-> compact latent sequence for the generator.

The reference system uses Stable Audio Open's "Oobleck" waveform VAE (total stride 2048, ~21.5 latent
frames/s, 64 channels; DESIGN.md). Ours keeps that frame rate and latent size but codes a fixed
time-frequency analysis instead of raw samples, so it trains and runs on a 2-core CPU:

- **Analysis** (no parameters, `Codec.analyse`). A short-time Fourier transform of both channels
  (``n_fft`` 1024, ``stft_hop`` 256: 8 frames per latent frame) gives two things per frame:
  the *total magnitude* ``P = sqrt((|L|^2 + |R|^2) / 2)`` per bin (a centred mono source has ``P = |S|``)
  and the *inter-channel level difference* in dB in ``ild_bands`` mel-spaced bands, the "IID"
  parameter of MPEG parametric stereo (Breebaart et al., 2005). Phase is not coded.
- **Latent.** ``C - bands`` learned channels and ``bands`` stereo channels. The learned ones come from
  residual 1-D convolutions over frames that reduce the normalised log-magnitudes (B, F, 8T) by
  strided convolutions to a tanh-bounded code (B, C - bands, T); the decoder mirrors them back to
  log-magnitudes, seeing the whole latent. The stereo channels are the band level differences of each
  latent frame (energy-weighted over its 8 STFT frames) divided by ``ild_limit_db``: coded exactly, not
  learned, so the stereo image cannot be lost in training; the generator learns them like the others.
  Per-channel mean/std statistics measured after training are stored as buffers; `Codec.encode`
  returns latents normalised to about zero mean and unit variance (what the flow-matching generator
  expects) and `Codec.decode` undoes it and clamps back into the [-1, 1] range.
- **Synthesis** (no parameters, `Codec.synthesize`). A phase for the total magnitude from the fast
  Griffin-Lim algorithm (Perraudin, Balazs and Sondergaard, 2013) started from a seeded random phase,
  so decoding is deterministic; then per-bin gains from the level differences (interpolated between
  band centres; ``gL^2 + gR^2 = 2``) and the matching time difference of `engine.stereo`'s pan law as a
  phase shift, so the stereo image carries both cues the spatial metrics (and ears) use.

The loss is on the log-magnitudes (`trainer.losses.codec_feature_loss`), so training never runs the
iterative synthesis.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine import stereo
from engine.errors import UserInputError

AUDIO_CHANNELS = 2  # the codec is stereo-only: (left, right)
FORMAT_TAG = "foley-codec"  # safetensors metadata "format" of a saved codec
FORMAT_VERSION = "2"  # 2: spectral codec with parametric stereo (1 was a waveform autoencoder)

LOG_MAG_FLOOR = 1e-5  # magnitudes are coded as log(P + floor); the floor is -100 dB re a full-scale bin
LOG_MAG_CENTRE, LOG_MAG_SCALE = -3.0, 4.0  # network inputs/outputs: (log(P + floor) - centre) / scale
BAND_ENERGY_FLOOR = 1e-6  # added to band energies before taking their ratio (silent bands read 0 dB)


@dataclass(frozen=True)
class CodecConfig:
    """Sizes of one codec; the latent rate is ``sample_rate / hop``."""

    sample_rate: int = 44100  # audio samples per second per channel
    n_fft: int = 1024  # STFT size (Hann window)
    stft_hop: int = 256  # STFT hop in samples
    strides: tuple[int, ...] = (2, 2, 2)  # conv downsampling factors from STFT frames to latent frames
    width: int = 160  # channels of every conv stage
    res_units: int = 2  # residual units per stage (act, dilated conv, act, 1x1)
    kernel: int = 3  # kernel size of the dilated conv in each residual unit (odd)
    dilations: tuple[int, ...] = (1, 3)  # dilation of residual unit k is dilations[k % len(dilations)]
    latent_dim: int = 64  # latent channels C
    ild_bands: int = 16  # level-difference bands (mel-spaced over 0 .. sample_rate / 2)
    ild_limit_db: float = 30.0  # level differences are clipped to +-this and coded as ild / limit
    gl_iters: int = 32  # Griffin-Lim iterations in `synthesize`
    gl_momentum: float = 0.99  # the "fast" Griffin-Lim momentum (0: the classic algorithm)
    gl_seed: int = 0  # seed of the initial random phase (decoding is deterministic)
    std_floor: float = 1e-3  # smallest per-channel latent std used for normalisation (dead channels)

    def __post_init__(self) -> None:
        if any(s < 2 for s in self.strides) or self.stft_hop < 1 or self.n_fft < 2 * self.stft_hop:
            raise ValueError(
                f"need strides >= 2 and n_fft >= 2 * stft_hop: {self.strides=} {self.n_fft=} {self.stft_hop=}"
            )
        if self.kernel % 2 == 0 or self.res_units < 0 or self.latent_dim < 1 or not self.dilations:
            raise ValueError(f"bad codec sizes: {self.kernel=} {self.res_units=} {self.latent_dim=} {self.dilations=}")
        if not 1 <= self.ild_bands < min(self.bins, self.latent_dim) or self.ild_limit_db <= 0 or self.gl_iters < 0:
            raise ValueError(f"bad stereo/synthesis sizes: {self.ild_bands=} {self.ild_limit_db=} {self.gl_iters=}")

    @property
    def frames_per_latent(self) -> int:
        """STFT frames per latent frame."""
        return math.prod(self.strides)

    @property
    def hop(self) -> int:
        """Total stride: audio samples per latent frame."""
        return self.stft_hop * self.frames_per_latent

    @property
    def latent_rate(self) -> float:
        """Latent frames per second."""
        return self.sample_rate / self.hop

    @property
    def bins(self) -> int:
        """STFT frequency bins."""
        return self.n_fft // 2 + 1

    @property
    def learned_dim(self) -> int:
        """Latent channels coded by the network (the rest carry the band level differences)."""
        return self.latent_dim - self.ild_bands

    def to_json(self) -> str:
        """The config as a JSON string (for file metadata)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> CodecConfig:
        """Inverse of `to_json` (JSON lists back to tuples)."""
        d = json.loads(text)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


CODEC_PRESETS: dict[str, CodecConfig] = {
    # The shipped codec: hop 256 * 8 = 2048 (21.53 frames/s at 44.1 kHz, as the reference), 64 channels.
    "default": CodecConfig(),
    # For tests: same hop, small width and latent, few Griffin-Lim iterations.
    "tiny": CodecConfig(width=16, res_units=1, dilations=(1,), latent_dim=12, ild_bands=4, gl_iters=4),
}


# ----------------------------------------------------------------------------- building blocks

LEAKY_SLOPE = 0.1  # negative slope of the activation (HiFi-GAN's choice)


def _act() -> nn.Module:
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


def _units(cfg: CodecConfig) -> list[nn.Module]:
    """The residual units of one stage."""
    dil = cfg.dilations
    return [ResidualUnit(width=cfg.width, kernel=cfg.kernel, dilation=dil[k % len(dil)]) for k in range(cfg.res_units)]


def _down(width: int, stride: int) -> nn.Conv1d:
    """Strided conv with kernel 2 * stride: exactly T -> T / stride frames when stride divides T."""
    return nn.Conv1d(width, width, 2 * stride, stride=stride, padding=(stride + 1) // 2)


def _up(width: int, stride: int) -> nn.ConvTranspose1d:
    """Transposed conv with kernel 2 * stride: exactly T -> T * stride frames."""
    pad = (stride + 1) // 2
    return nn.ConvTranspose1d(width, width, 2 * stride, stride=stride, padding=pad, output_padding=2 * pad - stride)


class Encoder(nn.Module):
    """Log-magnitude features (B, F, T * prod(strides)) -> learned latent (B, C - bands, T) in (-1, 1)."""

    def __init__(self, *, config: CodecConfig) -> None:
        super().__init__()
        w = config.width
        layers: list[nn.Module] = [nn.Conv1d(config.bins, w, 3, padding=1)]
        for s in config.strides:
            layers += [*_units(config), _act(), _down(w, s)]
        layers += [*_units(config), _act(), nn.Conv1d(w, config.learned_dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(x))


class Decoder(nn.Module):
    """Whole latent (B, C, T) -> log-magnitude features (B, F, T * prod(strides)); the mirror of `Encoder`."""

    def __init__(self, *, config: CodecConfig) -> None:
        super().__init__()
        w = config.width
        layers: list[nn.Module] = [nn.Conv1d(config.latent_dim, w, 3, padding=1), *_units(config)]
        for s in reversed(config.strides):
            layers += [_act(), _up(w, s), *_units(config)]
        layers += [_act(), nn.Conv1d(w, config.bins, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


# ----------------------------------------------------------------------------- fixed DSP


def _hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def band_matrices(config: CodecConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(analysis (bands, F), synthesis (F, bands)) matrices of the level-difference bands.

    Analysis sums the power of the bins of each band (rectangular, mel-spaced edges, every bin in
    exactly one band). Synthesis interpolates band values linearly between band centres (in mel), flat
    beyond the outer centres, so the level difference changes smoothly across frequency.
    """
    nb, nf = config.ild_bands, config.bins
    freqs = torch.linspace(0.0, config.sample_rate / 2.0, nf, dtype=torch.float64)
    mel = _hz_to_mel(freqs)
    edges = torch.linspace(0.0, float(mel[-1]), nb + 1, dtype=torch.float64)
    idx = torch.bucketize(mel, edges[1:-1], right=True)  # (F,) band of each bin
    analysis = F.one_hot(idx, nb).T.to(torch.float32)  # (bands, F)
    centres = 0.5 * (edges[:-1] + edges[1:])  # (bands,)
    pos = torch.clamp((mel - centres[0]) / (centres[1] - centres[0]) if nb > 1 else mel * 0, 0.0, nb - 1.0)
    lo = pos.floor().long().clamp(max=nb - 1)
    hi = (lo + 1).clamp(max=nb - 1)
    frac = (pos - lo).to(torch.float32)
    synthesis = torch.zeros(nf, nb)
    synthesis[torch.arange(nf), lo] += 1.0 - frac
    synthesis[torch.arange(nf), hi] += frac
    return analysis, synthesis


def stereo_gains(ild_db: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-bin (left, right) gains for level differences in dB (left over right), gL^2 + gR^2 = 2."""
    ratio = torch.pow(10.0, ild_db / 10.0)  # E_L / E_R
    return torch.sqrt(2.0 * ratio / (1.0 + ratio)), torch.sqrt(2.0 / (1.0 + ratio))


def pan_law_delay(ild_db: torch.Tensor) -> torch.Tensor:
    """Time difference (s, positive = left late) that `engine.stereo`'s pan law pairs with a level difference.

    Inverts the constant-power law (``sin_az_from_energies``) and applies ``MAX_ITD * sin(az)``.
    """
    frac_right = 1.0 / (1.0 + torch.pow(10.0, ild_db / 10.0))  # E_R / (E_L + E_R)
    theta = torch.asin(torch.sqrt(frac_right.clamp(0.0, 1.0)))
    sin_az = (4.0 * theta / math.pi - 1.0).clamp(-1.0, 1.0)
    return stereo.MAX_ITD_S * sin_az


# ----------------------------------------------------------------------------- the codec


class Codec(nn.Module):
    """Stereo 44.1 kHz audio autoencoder with a normalised latent at ``config.latent_rate`` frames/s."""

    def __init__(self, *, config: CodecConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config=config)  # features -> tanh-bounded latent
        self.decoder = Decoder(config=config)  # latent -> features
        # Per-channel statistics of the bounded latent, measured after training (`set_latent_stats`);
        # identity normalisation until then.
        self.register_buffer("latent_mean", torch.zeros(config.latent_dim))  # (C,)
        self.register_buffer("latent_std", torch.ones(config.latent_dim))  # (C,)
        analysis, synthesis = band_matrices(config)
        self.register_buffer("band_analysis", analysis, persistent=False)  # (bands, F)
        self.register_buffer("band_synthesis", synthesis, persistent=False)  # (F, bands)
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)  # (n_fft,)
        self._init_weights()

    def _init_weights(self) -> None:
        """Xavier-uniform convolutions with zero bias; residual branches start at zero (each unit the identity)."""
        for m in self.modules():
            if isinstance(m, nn.Conv1d | nn.ConvTranspose1d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, ResidualUnit):
                nn.init.zeros_(m.proj.weight)

    # -- sizes

    def latent_frames(self, n_samples: int) -> int:
        """Latent frames for ``n_samples`` audio samples: ceil(n_samples / hop)."""
        if n_samples < 1:
            raise ValueError(f"need at least one audio sample, got {n_samples=}")
        return -(-n_samples // self.config.hop)

    # -- analysis and synthesis (fixed, no parameters)

    def _stft(self, x: torch.Tensor) -> torch.Tensor:
        """(M, N) waveforms -> complex (M, F, N / stft_hop) (the last centred frame dropped)."""
        c = self.config
        spec = torch.stft(x, c.n_fft, hop_length=c.stft_hop, window=self.window, center=True, return_complex=True)
        return spec[..., :-1]

    def _istft(self, spec: torch.Tensor, n: int) -> torch.Tensor:
        """Inverse of `_stft`: complex (M, F, K) -> (M, n) with n = K * stft_hop."""
        c = self.config
        spec = torch.cat([spec, torch.zeros_like(spec[..., :1])], dim=-1)  # the dropped frame back, silent
        return torch.istft(spec, c.n_fft, hop_length=c.stft_hop, window=self.window, center=True, length=n)

    def _check_audio(self, audio: torch.Tensor) -> None:
        if audio.ndim != 3 or audio.shape[1] != AUDIO_CHANNELS or audio.shape[2] < 1:
            raise ValueError(f"audio must be (B, 2, N) stereo with N >= 1, got {audio.shape=}")
        if not audio.is_floating_point():
            raise ValueError(f"audio must be floating point, got {audio.dtype=}")

    def analyse(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stereo waveform (B, 2, N) -> what the codec codes, over T = ceil(N / hop) latent frames.

        Returns ``{"features": (B, F, 8T) normalised log-magnitudes (network input and target),
        "log_mag": (B, F, 8T) log(P + floor), "ild": (B, bands, T) the stereo latent channels: level
        differences per latent frame in dB / ild_limit_db, in [-1, 1]}``. The end is padded with silence
        up to a whole number of latent frames.
        """
        self._check_audio(audio)
        c = self.config
        n = audio.shape[-1]
        t = self.latent_frames(n)
        x = F.pad(audio.float(), (0, t * c.hop - n))  # (B, 2, T * hop)
        b = x.shape[0]
        power = self._stft(x.reshape(b * 2, -1)).abs().square().reshape(b, 2, c.bins, -1)  # (B, 2, F, 8T)
        log_mag = torch.log(torch.sqrt(power.mean(dim=1)) + LOG_MAG_FLOOR)  # (B, F, 8T)
        bands = torch.einsum("nf,bcft->bcnt", self.band_analysis, power.reshape(b, 2, c.bins, t, -1).sum(-1))
        ratio = (bands[:, 0] + BAND_ENERGY_FLOOR) / (bands[:, 1] + BAND_ENERGY_FLOOR)  # (B, bands, T)
        ild = (10.0 * torch.log10(ratio) / c.ild_limit_db).clamp(-1.0, 1.0)
        return {"features": (log_mag - LOG_MAG_CENTRE) / LOG_MAG_SCALE, "log_mag": log_mag, "ild": ild}

    def features_to_log_mag(self, features: torch.Tensor) -> torch.Tensor:
        """Network features (B, F, K) -> log(P + floor) (B, F, K)."""
        return features * LOG_MAG_SCALE + LOG_MAG_CENTRE

    def griffin_lim(self, magnitude: torch.Tensor, n: int) -> torch.Tensor:
        """A complex spectrum (M, F, K) with the given magnitudes and a consistent phase (fast Griffin-Lim)."""
        c = self.config
        gen = torch.Generator().manual_seed(c.gl_seed)
        phase = torch.rand(magnitude.shape[-2:], generator=gen).to(magnitude.device) * (2.0 * math.pi)  # (F, K)
        angles = torch.polar(torch.ones_like(magnitude), phase.expand_as(magnitude))
        previous = torch.zeros_like(angles)
        for _ in range(c.gl_iters):
            rebuilt = self._stft(self._istft(magnitude * angles, n))
            angles = rebuilt - previous * (c.gl_momentum / (1.0 + c.gl_momentum))
            angles = angles / angles.abs().clamp_min(1e-12)
            previous = rebuilt
        return magnitude * angles

    def synthesize(self, log_mag: torch.Tensor, ild_db: torch.Tensor, n_samples: int | None = None) -> torch.Tensor:
        """log(P + floor) (B, F, K) and level differences (B, bands, K) -> stereo waveform (B, 2, n_samples).

        n_samples defaults to K * stft_hop and may be any length that needs the same latent frames.
        """
        c = self.config
        b, _, k = log_mag.shape
        n_full = k * c.stft_hop
        mono = self.griffin_lim((log_mag.exp() - LOG_MAG_FLOOR).clamp_min(0.0), n_full)  # (B, F, K)
        ild_bins = torch.einsum("fn,bnk->bfk", self.band_synthesis, ild_db)  # (B, F, K) dB
        g_left, g_right = stereo_gains(ild_bins)
        freqs = torch.linspace(0.0, c.sample_rate / 2.0, c.bins, device=log_mag.device)[:, None]  # (F, 1)
        shift = math.pi * freqs * pan_law_delay(ild_bins)  # (B, F, K): half the delay's phase, each channel
        left = mono * torch.polar(g_left, -shift)  # left late by tau/2 ...
        right = mono * torch.polar(g_right, shift)  # ... right early by tau/2
        audio = self._istft(torch.stack([left, right], dim=1).reshape(b * 2, c.bins, k), n_full).reshape(b, 2, -1)
        return audio[..., : n_full if n_samples is None else n_samples]

    # -- raw (bounded) latent

    def encode_raw(self, audio: torch.Tensor) -> torch.Tensor:
        """Stereo waveform (B, 2, N), [-1, 1] -> bounded latent (B, C, ceil(N / hop)) in [-1, 1]:
        the learned channels, then the band level differences."""
        f = self.analyse(audio)
        return torch.cat([self.encoder(f["features"]), f["ild"]], dim=1)

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
        """Bounded latent (B, C, T) -> stereo waveform (B, 2, n_samples) (default T * hop samples).

        The band level differences of the latent frames are interpolated linearly to the STFT frames.
        """
        n = self._check_latent(z, n_samples)
        c = self.config
        z = z.float()
        log_mag = self.features_to_log_mag(self.decoder(z))  # (B, F, 8T)
        return self.synthesize(log_mag, self.ild_to_frames(z[:, c.learned_dim :]), n)

    def ild_to_frames(self, ild: torch.Tensor) -> torch.Tensor:
        """Stereo latent channels (B, bands, T) -> level differences in dB at the STFT frames (B, bands, 8T),
        interpolated linearly between latent-frame centres."""
        c = self.config
        db = ild.clamp(-1.0, 1.0) * c.ild_limit_db
        return F.interpolate(db, scale_factor=c.frames_per_latent, mode="linear", align_corners=False)

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

    Weights are stored in float16 (they are used in float32); ``extra`` (JSON-able) is stored in the
    metadata too, e.g. training steps and final losses.
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
    tensors = {
        k: v.detach().to(torch.float32 if k.startswith("latent_") else torch.float16).contiguous()
        for k, v in codec.state_dict().items()
    }
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def read_codec_metadata(path: str | Path) -> dict:
    """The metadata of a codec file: ``{"config": CodecConfig, "extra": dict}``; raises `UserInputError`."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"codec file {path} does not exist; train one with `python launch.py train codec`")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise UserInputError(f"{path} is not a safetensors file ({e}); point to a codec .safetensors file") from e
    if meta.get("format") != FORMAT_TAG:
        raise UserInputError(f"{path} holds no foley codec (metadata format={meta.get('format')!r})")
    if meta.get("version") != FORMAT_VERSION:
        raise UserInputError(
            f"{path} is a version {meta.get('version')} codec; this build reads version {FORMAT_VERSION}"
        )
    return {"config": CodecConfig.from_json(meta["config"]), "extra": json.loads(meta.get("extra", "{}"))}


def load_codec(path: str | Path) -> Codec:
    """Read a codec written by `save_codec`; returns it in eval mode on CPU (float32)."""
    from safetensors.torch import load_file

    config = read_codec_metadata(path)["config"]
    codec = Codec(config=config)
    codec.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return codec.eval()
