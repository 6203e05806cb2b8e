"""The stereo audio codec: 44.1 kHz stereo waveform <-> compact latent sequence for the generator.

The reference system uses Stable Audio Open's "Oobleck" waveform VAE (total stride 2048, ~21.5 latent
frames/s, 64 channels; DESIGN.md). Ours keeps that frame rate and codes a time-frequency description
that a 2-core CPU can train a generator on, with every latent channel meaning something audible:

- **Analysis** (`Codec.analyse`, no parameters). A short-time Fourier transform of both channels
  (``n_fft`` 1024, ``stft_hop`` 256: 8 frames per latent frame) gives the *total power* per bin,
  ``P^2 = (|L|^2 + |R|^2) / 2`` (a centred mono source has ``P = |S|``).
- **Latent** (C = shape_bands + env_groups * env_steps + ild_bands = 40 + 32 + 16 = 88 channels per
  latent frame, natural logs normalised by stored per-channel statistics):
  *spectral shape*: the log mean power per bin in each of ``shape_bands`` mel-spaced bands over the
  latent frame; *temporal envelope*: the log power of each of ``env_groups`` groups of neighbouring
  bands in each of ``env_steps`` sub-frames (11.6 ms at the defaults), so onsets keep their timing
  inside a latent frame; *stereo*: the inter-channel level difference in ``ild_bands`` bands in dB /
  ``ild_limit_db``, the "IID" parameter of MPEG parametric stereo (Breebaart et al., 2005).
  The encoder is this analysis alone, so encoding is exact and cheap and nothing about the stereo
  image or the timing can be lost in training.
- **Decoder.** The spectral shape, interpolated across bins, is scaled within each group so its power
  in each sub-frame equals the envelope's: a separable estimate of the power spectrogram (the idea of
  the envelope coding in spectral band replication). A trained network (residual 1-D convolutions,
  zero-initialised output) adds a correction to its log-magnitudes, learned on FoleyWorld with a
  log-magnitude L1 and spectral-convergence loss (`trainer.losses.codec_feature_loss`).
- **Synthesis** (`Codec.synthesize`, no parameters). A phase for the total magnitude from the fast
  Griffin-Lim algorithm (Perraudin, Balazs and Sondergaard, 2013) from a seeded random phase, so
  decoding is deterministic; then per-bin gains from the level differences (interpolated between band
  centres; ``gL^2 + gR^2 = 2``) and the matching time difference of `engine.stereo`'s pan law as a
  phase shift, so the stereo image carries both cues the spatial metrics (and ears) use.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine import stereo
from engine.atomic import atomic_path
from engine.errors import UserInputError

AUDIO_CHANNELS = 2  # the codec is stereo-only: (left, right)
FORMAT_TAG = "foley-codec"  # safetensors metadata "format" of a saved codec
FORMAT_VERSION = "3"  # 3: time-frequency latent with a learned residual decoder (1, 2: earlier layouts)

LOG_MAG_FLOOR = 1e-5  # decoded magnitudes are log(P + floor); the floor is -100 dB re a full-scale bin
LOG_MAG_CENTRE, LOG_MAG_SCALE = -3.0, 4.0  # loss features: (log(P + floor) - centre) / scale


@dataclass(frozen=True)
class CodecConfig:
    """Sizes of one codec; the latent rate is ``sample_rate / hop``."""

    sample_rate: int = 44100  # audio samples per second per channel
    n_fft: int = 1024  # STFT size (Hann window)
    stft_hop: int = 256  # STFT hop in samples
    frames_per_latent: int = 8  # STFT frames per latent frame (hop = stft_hop * frames_per_latent)
    shape_bands: int = 40  # spectral-shape bands (mel-spaced over 0 .. sample_rate / 2)
    env_groups: int = 8  # envelope groups: consecutive runs of shape_bands / env_groups bands
    env_steps: int = 4  # envelope sub-frames per latent frame (must divide frames_per_latent)
    ild_bands: int = 16  # level-difference bands (mel-spaced)
    ild_limit_db: float = 30.0  # level differences are clipped to +-this and coded as ild / limit
    width: int = 128  # channels of the residual decoder's conv stages
    res_units: int = 2  # residual units per decoder stage (act, dilated conv, act, 1x1)
    kernel: int = 3  # kernel size of the dilated conv in each residual unit (odd)
    dilations: tuple[int, ...] = (1, 3)  # dilation of residual unit k is dilations[k % len(dilations)]
    gl_iters: int = 32  # Griffin-Lim iterations in `synthesize`
    gl_momentum: float = 0.99  # the "fast" Griffin-Lim momentum (0: the classic algorithm)
    gl_seed: int = 0  # seed of the initial random phase (decoding is deterministic)
    std_floor: float = 1e-3  # smallest per-channel latent std used for normalisation (dead channels)

    def __post_init__(self) -> None:
        if self.stft_hop < 1 or self.n_fft < 2 * self.stft_hop or self.frames_per_latent < 2:
            raise ValueError(f"need n_fft >= 2 * stft_hop and frames_per_latent >= 2: {self}")
        if self.frames_per_latent & (self.frames_per_latent - 1):
            raise ValueError(f"frames_per_latent must be a power of two, got {self.frames_per_latent}")
        if self.frames_per_latent % self.env_steps or self.shape_bands % self.env_groups:
            raise ValueError(f"env_steps must divide frames_per_latent and env_groups shape_bands: {self}")
        if not 1 <= self.ild_bands < self.bins or not 1 <= self.shape_bands < self.bins or self.ild_limit_db <= 0:
            raise ValueError(f"bad band counts: {self.shape_bands=} {self.ild_bands=} {self.ild_limit_db=}")
        if self.kernel % 2 == 0 or self.res_units < 0 or not self.dilations or self.gl_iters < 0:
            raise ValueError(f"bad decoder sizes: {self.kernel=} {self.res_units=} {self.dilations=} {self.gl_iters=}")

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
    def env_dim(self) -> int:
        """Temporal-envelope channels."""
        return self.env_groups * self.env_steps

    @property
    def latent_dim(self) -> int:
        """Latent channels C: spectral shape, temporal envelope, level differences (in this order)."""
        return self.shape_bands + self.env_dim + self.ild_bands

    def to_json(self) -> str:
        """The config as a JSON string (for file metadata)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> CodecConfig:
        """Inverse of `to_json` (JSON lists back to tuples)."""
        d = json.loads(text)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


CODEC_PRESETS: dict[str, CodecConfig] = {
    # The shipped codec: hop 256 * 8 = 2048 (21.53 frames/s at 44.1 kHz, as the reference), 88 channels.
    "default": CodecConfig(),
    # For tests: same hop and analysis, fewer bands, a small decoder, few Griffin-Lim iterations.
    "tiny": CodecConfig(shape_bands=8, env_groups=2, env_steps=2, ild_bands=4, width=16, res_units=1, gl_iters=4),
}


# ----------------------------------------------------------------------------- building blocks


@functools.lru_cache(maxsize=16)
def _inverse_envelope(n_fft: int, hop: int, frames: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    """1 / (overlap-added squared Hann windows) of ``frames`` frames, (frames + R - 1, hop), R = n_fft / hop
    (the sum floored at 1e-11)."""
    r = n_fft // hop
    w2 = torch.hann_window(n_fft, dtype=dtype, device=device).square().reshape(r, hop)
    env = torch.zeros(frames + r - 1, hop, dtype=dtype, device=device)
    for j in range(r):
        env[j : j + frames] += w2[j]
    return 1.0 / env.clamp_min(1e-11)


LEAKY_SLOPE = 0.1  # negative slope of the activation (HiFi-GAN's choice)
POWER_FLOOR = 1e-8  # added to band and envelope powers before the log (-80 dB re a unit bin power)
LOG_POWER_MAX = 30.0  # decoded log powers are clamped below this (far above full scale)
GATE_SLEW = 0.1  # `Codec.gate_transients`: nats of log power an envelope group may rise per sub-frame where gated
GATE_PASS = 1.5  # ... and the mean rise over the groups (nats, one sub-frame) that passes the gate anyway


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


def _up(width: int) -> nn.ConvTranspose1d:
    """Transposed conv with kernel 4, stride 2: exactly T -> 2T frames."""
    return nn.ConvTranspose1d(width, width, 4, stride=2, padding=1)


class Decoder(nn.Module):
    """Normalised latent (B, C, T) -> log-magnitude correction (B, F, T * frames_per_latent).

    Residual units and transposed convolutions doubling the frame rate up to the STFT's; the output
    convolution starts at zero, so the untrained codec decodes the analysis estimate alone.
    """

    def __init__(self, *, config: CodecConfig) -> None:
        super().__init__()
        w = config.width
        layers: list[nn.Module] = [nn.Conv1d(config.latent_dim, w, 3, padding=1), *_units(config)]
        for _ in range(int(math.log2(config.frames_per_latent))):
            layers += [_act(), _up(w), *_units(config)]
        layers += [_act(), nn.Conv1d(w, config.bins, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


# ----------------------------------------------------------------------------- fixed DSP


def _hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def band_matrices(config: CodecConfig, n_bands: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(analysis (bands, F), synthesis (F, bands)) matrices of ``n_bands`` mel-spaced bands.

    Analysis sums the bins of each band (rectangular, every bin in exactly one band). Synthesis
    interpolates band values linearly between band centres (in mel), flat beyond the outer centres,
    so a band profile changes smoothly across frequency.
    """
    nf = config.bins
    mel = _hz_to_mel(torch.linspace(0.0, config.sample_rate / 2.0, nf, dtype=torch.float64))
    edges = torch.linspace(0.0, float(mel[-1]), n_bands + 1, dtype=torch.float64)
    idx = torch.bucketize(mel, edges[1:-1], right=True)  # (F,) band of each bin
    analysis = F.one_hot(idx, n_bands).T.to(torch.float32)  # (bands, F)
    centres = 0.5 * (edges[:-1] + edges[1:])  # (bands,)
    step = centres[1] - centres[0] if n_bands > 1 else torch.tensor(1.0, dtype=torch.float64)
    pos = torch.clamp((mel - centres[0]) / step, 0.0, n_bands - 1.0)
    lo = pos.floor().long().clamp(max=n_bands - 1)
    hi = (lo + 1).clamp(max=n_bands - 1)
    frac = (pos - lo).to(torch.float32)
    synthesis = torch.zeros(nf, n_bands)
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
    """Stereo 44.1 kHz audio codec with a normalised latent at ``config.latent_rate`` frames/s."""

    def __init__(self, *, config: CodecConfig) -> None:
        super().__init__()
        self.config = config
        self.decoder = Decoder(config=config)  # normalised latent -> log-magnitude correction
        # Per-channel statistics of the raw latent (`set_latent_stats`); identity normalisation until then.
        self.register_buffer("latent_mean", torch.zeros(config.latent_dim))  # (C,)
        self.register_buffer("latent_std", torch.ones(config.latent_dim))  # (C,)
        shape_a, shape_s = band_matrices(config, config.shape_bands)
        ild_a, ild_s = band_matrices(config, config.ild_bands)
        group = shape_a.argmax(dim=0) // (config.shape_bands // config.env_groups)  # (F,) envelope group of a bin
        self.register_buffer("shape_analysis", shape_a, persistent=False)  # (NB, F)
        self.register_buffer("shape_synthesis", shape_s, persistent=False)  # (F, NB)
        self.register_buffer("group_of_bin", group, persistent=False)  # (F,) long
        self.register_buffer("groups", F.one_hot(group, config.env_groups).T.float(), persistent=False)  # (G, F)
        self.register_buffer("ild_analysis", ild_a, persistent=False)  # (bands, F)
        self.register_buffer("ild_synthesis", ild_s, persistent=False)  # (F, bands)
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)  # (n_fft,)
        self._init_weights()

    def _init_weights(self) -> None:
        """Xavier-uniform convolutions with zero bias; residual branches and the output start at zero."""
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

    # -- STFT

    def _stft(self, x: torch.Tensor) -> torch.Tensor:
        """(M, N) waveforms -> complex (M, F, N / stft_hop) (the last centred frame dropped)."""
        c = self.config
        spec = torch.stft(x, c.n_fft, hop_length=c.stft_hop, window=self.window, center=True, return_complex=True)
        return spec[..., :-1]

    def _istft(self, spec: torch.Tensor, n: int) -> torch.Tensor:
        """Inverse of `_stft`: complex (M, F, K) -> (M, n) with n = K * stft_hop.

        What ``torch.istft`` computes (windowed overlap-add over the squared-window envelope, the dropped
        last frame silent, centred), written out for n_fft a multiple of the hop: the overlap-add is R =
        n_fft / hop shifted sums, and the envelope's inverse is cached per length. Four times faster on
        the CPU, and Griffin-Lim calls it every iteration.
        """
        c = self.config
        r, hop = c.n_fft // c.stft_hop, c.stft_hop
        if c.n_fft % hop:
            spec = torch.cat([spec, torch.zeros_like(spec[..., :1])], dim=-1)  # the dropped frame back, silent
            return torch.istft(spec, c.n_fft, hop_length=hop, window=self.window, center=True, length=n)
        m, _, k = spec.shape
        frames = (torch.fft.irfft(spec.transpose(1, 2), n=c.n_fft) * self.window).reshape(m, k, r, hop)
        out = frames.new_zeros(m, k + r, hop)  # (M, K + R, hop): the overlap-add in blocks of one hop
        for j in range(r):
            out[:, j : j + k] += frames[:, :, j]
        inverse = _inverse_envelope(c.n_fft, hop, k + 1, str(frames.device), frames.dtype)  # (K + R, hop)
        return (out * inverse).reshape(m, -1)[:, c.n_fft // 2 : c.n_fft // 2 + n]

    def _check_audio(self, audio: torch.Tensor) -> None:
        if audio.ndim != 3 or audio.shape[1] != AUDIO_CHANNELS or audio.shape[2] < 1:
            raise ValueError(f"audio must be (B, 2, N) stereo with N >= 1, got {audio.shape=}")
        if not audio.is_floating_point():
            raise ValueError(f"audio must be floating point, got {audio.dtype=}")

    # -- analysis (the encoder)

    def analyse(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stereo waveform (B, 2, N) -> the raw latent and the decoder's training target.

        Returns ``{"latent": (B, C, T) raw latent (natural-log powers and level differences / limit),
        "log_mag": (B, F, 8T) log(P + floor), "features": (B, F, 8T) normalised log-magnitudes}``,
        T = ceil(N / hop). The end is padded with silence up to a whole number of latent frames.
        """
        self._check_audio(audio)
        c = self.config
        n, t = audio.shape[-1], self.latent_frames(audio.shape[-1])
        x = F.pad(audio.float(), (0, t * c.hop - n))  # (B, 2, T * hop)
        b = x.shape[0]
        power = self._stft(x.reshape(b * 2, -1)).abs().square().reshape(b, 2, c.bins, t, c.frames_per_latent)
        total = power.mean(dim=1)  # (B, F, T, K) total power P^2 = (|L|^2 + |R|^2) / 2
        width = self.shape_analysis.sum(dim=1)[:, None]  # (NB, 1) bins per band
        mean_power = torch.einsum("nf,bft->bnt", self.shape_analysis, total.mean(dim=-1)) / width
        shape = torch.log(mean_power + POWER_FLOOR)  # (B, NB, T)
        steps = total.reshape(b, c.bins, t, c.env_steps, -1).mean(dim=-1)  # (B, F, T, J) mean per STFT frame
        env = torch.log(torch.einsum("gf,bftj->bgjt", self.groups, steps) + POWER_FLOOR)  # (B, G, J, T)
        bands = torch.einsum("nf,bcft->bcnt", self.ild_analysis, power.sum(dim=-1))  # (B, 2, bands, T)
        ratio = (bands[:, 0] + POWER_FLOOR) / (bands[:, 1] + POWER_FLOOR)
        ild = (10.0 * torch.log10(ratio) / c.ild_limit_db).clamp(-1.0, 1.0)  # (B, bands, T)
        latent = torch.cat([shape, env.reshape(b, c.env_dim, t), ild], dim=1)  # (B, C, T)
        log_mag = torch.log(total.reshape(b, c.bins, -1).sqrt() + LOG_MAG_FLOOR)  # (B, F, 8T)
        return {"latent": latent, "log_mag": log_mag, "features": (log_mag - LOG_MAG_CENTRE) / LOG_MAG_SCALE}

    # -- decoding

    def clamp_raw(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw latent (B, C, T) clamped into what the analysis can produce (a generator may overshoot)."""
        c = self.config
        powers = raw[:, : c.shape_bands + c.env_dim].clamp(math.log(POWER_FLOOR), LOG_POWER_MAX)
        return torch.cat([powers, raw[:, c.shape_bands + c.env_dim :].clamp(-1.0, 1.0)], dim=1)

    def estimate_log_mag(self, raw: torch.Tensor) -> torch.Tensor:
        """The analysis estimate: raw latent (B, C, T) -> log(P + floor) (B, F, 8T).

        Per latent frame, the band shape (interpolated across bins) is scaled within each envelope
        group so that the group's power in every sub-frame equals the envelope's.
        """
        c = self.config
        b, _, t = raw.shape
        shape_log = torch.einsum("fn,bnt->bft", self.shape_synthesis, raw[:, : c.shape_bands])  # (B, F, T)
        shape = torch.exp(shape_log - shape_log.amax(dim=1, keepdim=True))  # (B, F, T), max 1 per frame
        group_sum = torch.einsum("gf,bft->bgt", self.groups, shape)  # (B, G, T)
        share = shape / group_sum[:, self.group_of_bin].clamp_min(1e-30)  # (B, F, T): sums to 1 per group
        env = raw[:, c.shape_bands : c.shape_bands + c.env_dim].reshape(b, c.env_groups, c.env_steps, t)
        env = (env.exp() - POWER_FLOOR).clamp_min(0.0)  # (B, G, J, T) group power per STFT frame
        env = env.permute(0, 1, 3, 2).repeat_interleave(c.frames_per_latent // c.env_steps, dim=-1)  # (B, G, T, K)
        power = share[..., None] * env[:, self.group_of_bin]  # (B, F, T, K)
        return torch.log(power.reshape(b, c.bins, -1).sqrt() + LOG_MAG_FLOOR)

    def raw_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latent (B, C, T) -> raw latent, clamped into what the analysis can produce."""
        return self.clamp_raw(z.float() * self.latent_std[:, None] + self.latent_mean[:, None])

    def decode_log_mag(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latent (B, C, T) -> decoded log(P + floor) (B, F, 8T): estimate + learned correction."""
        raw = self.raw_latent(z)
        norm = (raw - self.latent_mean[:, None]) / self.latent_std[:, None]
        return self.estimate_log_mag(raw) + self.decoder(norm) * LOG_MAG_SCALE

    def declick(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latent (B, C, T) with its temporal envelope de-clicked: each group's envelope, read as one
        sequence of sub-frames (4 T of them, 11.6 ms apart in the default codec), goes through a 3-point
        running median, the ends held. Spikes and dips one sub-frame long go; steps, attacks and decays two
        or more sub-frames long stay. Shape and level-difference channels are untouched.

        Generated envelopes are rougher than real ones, most of all across latent-frame boundaries
        (docs/RESULTS.md, "Split guidance and de-clicking"), and each such jag is heard as a click and
        counted as an onset.
        """
        seq = self._envelope_sequence(z)  # (B, G, J T)
        padded = F.pad(seq, (1, 1), mode="replicate")  # (B, G, J T + 2)
        return self._with_envelope_sequence(z, padded.unfold(-1, 3, 1).median(dim=-1).values)

    def _envelope_sequence(self, z: torch.Tensor) -> torch.Tensor:
        """The raw envelope (natural-log group powers) of a normalised latent (B, C, T), one sequence of
        sub-frames per group: (B, G, J T) float32."""
        c = self.config
        if z.ndim != 3 or z.shape[1] != c.latent_dim:
            raise ValueError(f"latent must be (B, {c.latent_dim}, T), got {z.shape=}")
        b, _, t = z.shape
        lo, hi = c.shape_bands, c.shape_bands + c.env_dim
        raw = z[:, lo:hi].float() * self.latent_std[lo:hi, None] + self.latent_mean[lo:hi, None]  # (B, G J, T)
        return raw.reshape(b, c.env_groups, c.env_steps, t).transpose(2, 3).reshape(b, c.env_groups, t * c.env_steps)

    def _with_envelope_sequence(self, z: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        """A copy of the normalised latent ``z`` (B, C, T) with its envelope replaced by ``seq`` (B, G, J T)."""
        c = self.config
        b, _, t = z.shape
        lo, hi = c.shape_bands, c.shape_bands + c.env_dim
        env = seq.reshape(b, c.env_groups, t, c.env_steps).transpose(2, 3).reshape(b, c.env_dim, t)
        out = z.clone()
        out[:, lo:hi] = ((env - self.latent_mean[lo:hi, None]) / self.latent_std[lo:hi, None]).to(z.dtype)
        return out

    def gate_transients(
        self, z: torch.Tensor, closed: torch.Tensor, slew: float = GATE_SLEW, pass_rise: float = GATE_PASS
    ) -> torch.Tensor:
        """Normalised latent (B, C, T) with the weak rises of its envelope slowed where ``closed`` (B, T) bool
        says the picture shows no sound event at that latent frame (`engine.sync.event_gate`).

        The envelope is read as in `declick`, one sequence of sub-frames per group. In the sub-frames of a
        closed frame, unless the take's own rise into that sub-frame averages ``pass_rise`` nats or more over
        the groups (a strong attack passes), each group may rise at most ``slew`` nats above its previous
        (gated) value, so a weak jump becomes a ramp that catches up within a few sub-frames; falls, the spectral
        shape and the level differences are untouched. Generated takes add weak onsets inside sustained
        sounds and second bumps after an impact where the picture shows nothing (docs/RESULTS.md,
        "Transient gate"); the picture's events keep the gate open.
        """
        seq = self._envelope_sequence(z)  # (B, G, J T)
        b, _, t = z.shape
        if closed.shape != (b, t):
            raise ValueError(f"closed must be (B={b}, T={t}) bool, got {tuple(closed.shape)}")
        rise = F.pad(seq.diff(dim=-1), (1, 0)).clamp_min(0.0).mean(1)  # (B, J T): the take's own rise, group mean
        limit = closed.to(torch.bool).repeat_interleave(self.config.env_steps, dim=1) & (rise < pass_rise)  # (B, J T)
        limit[:, 0] = False
        out = seq.clone()  # (B, G, J T)
        for j in limit.any(0).nonzero().flatten().tolist():
            cur = out[:, :, j]
            out[:, :, j] = torch.where(limit[:, j, None], torch.minimum(cur, out[:, :, j - 1] + slew), cur)
        return self._with_envelope_sequence(z, out)

    def ild_to_frames(self, ild: torch.Tensor) -> torch.Tensor:
        """Stereo latent channels (B, bands, T) -> level differences in dB at the STFT frames (B, bands, 8T),
        interpolated linearly between latent-frame centres."""
        c = self.config
        db = ild.clamp(-1.0, 1.0) * c.ild_limit_db
        return F.interpolate(db, scale_factor=c.frames_per_latent, mode="linear", align_corners=False)

    def griffin_lim(self, magnitude: torch.Tensor, n: int) -> torch.Tensor:
        """A complex spectrum (M, F, K) with the given magnitudes and a consistent phase (fast Griffin-Lim)."""
        c = self.config
        gen = torch.Generator().manual_seed(c.gl_seed)
        phase = torch.rand(magnitude.shape[-2:], generator=gen).to(magnitude.device) * (2.0 * math.pi)  # (F, K)
        angles = torch.polar(torch.ones_like(magnitude), phase.expand_as(magnitude))
        previous = torch.zeros_like(angles)
        beta = c.gl_momentum / (1.0 + c.gl_momentum)
        for _ in range(c.gl_iters):
            rebuilt = self._stft(self._istft(magnitude * angles, n))
            angles = torch.sgn(torch.sub(rebuilt, previous, alpha=beta))  # unit phasors a / |a| (0 where a = 0)
            previous = rebuilt
        return magnitude * angles

    def synthesize(self, log_mag: torch.Tensor, ild_db: torch.Tensor, n_samples: int | None = None) -> torch.Tensor:
        """log(P + floor) (B, F, K) and level differences in dB (B, bands, K) -> stereo waveform (B, 2, n_samples).

        n_samples defaults to K * stft_hop and may be any length that needs the same latent frames.
        """
        c = self.config
        b, _, k = log_mag.shape
        n_full = k * c.stft_hop
        mono = self.griffin_lim((log_mag.exp() - LOG_MAG_FLOOR).clamp_min(0.0), n_full)  # (B, F, K)
        ild_bins = torch.einsum("fn,bnk->bfk", self.ild_synthesis, ild_db)  # (B, F, K) dB
        g_left, g_right = stereo_gains(ild_bins)
        freqs = torch.linspace(0.0, c.sample_rate / 2.0, c.bins, device=log_mag.device)[:, None]  # (F, 1)
        shift = math.pi * freqs * pan_law_delay(ild_bins)  # (B, F, K): half the delay's phase, each channel
        left = mono * torch.polar(g_left, -shift)  # left late by tau/2 ...
        right = mono * torch.polar(g_right, shift)  # ... right early by tau/2
        audio = self._istft(torch.stack([left, right], dim=1).reshape(b * 2, c.bins, k), n_full).reshape(b, 2, -1)
        return audio[..., : n_full if n_samples is None else n_samples]

    # -- raw latent

    def encode_raw(self, audio: torch.Tensor) -> torch.Tensor:
        """Stereo waveform (B, 2, N), [-1, 1] -> raw latent (B, C, ceil(N / hop))."""
        return self.analyse(audio)["latent"]

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

    # -- normalised latent (what the generator sees)

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Stereo waveform (B, 2, N) -> normalised latent (B, C, ceil(N / hop)), about zero mean, unit std."""
        z = self.encode_raw(audio)
        return (z - self.latent_mean[:, None]) / self.latent_std[:, None]

    def decode(self, z: torch.Tensor, n_samples: int | None = None) -> torch.Tensor:
        """Normalised latent (B, C, T) -> stereo waveform (B, 2, n_samples), cropped exactly.

        The raw latent is clamped into the range the analysis can produce (`clamp_raw`), so a
        generator's overshoot cannot drive the decoder outside what it was trained on.
        """
        n = self._check_latent(z, n_samples)
        c = self.config
        ild = self.raw_latent(z)[:, -c.ild_bands :]
        return self.synthesize(self.decode_log_mag(z), self.ild_to_frames(ild), n)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Reconstruction: (B, 2, N) -> (B, 2, N)."""
        return self.decode(self.encode(audio), audio.shape[-1])

    @torch.no_grad()
    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-channel statistics (C,) of the raw latent; std is floored at ``config.std_floor``."""
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
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


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
