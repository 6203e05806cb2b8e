"""PrismAudio as a model family (`engine.family.ModelFamily`): conditions from precomputed features, the
official classifier-free guidance, the seeded noise convention and the VAE as the codec.

What it cannot do yet: compute the features itself (VideoPrism frame embeddings, T5Gemma encoder states,
Synchformer), so `prepare` and `encode_cot` raise `UserInputError`; features come in through
`PrismAudioFamily.prepare_features` and `PrismAudioFamily.text_conditions` instead, and everything after that
(windows, guidance, sampling, decoding) goes through the protocol.

Sync modes (OFFICIAL.md 5.3, 5.4):
* ``official`` (default): the learned ``empty_sync_feat`` (1, D) broadcast over every latent frame, what the
  released pipeline does by accident for every video, so the published numbers were made this way;
* ``features``: the Synchformer tokens through their conditioner, resampled linearly to the latent length N,
  so any duration works (the reference only runs where ``int(194 S / 216) == N``).

Guidance (OFFICIAL.md 1.5 step 8): the unconditional half is the conditioner outputs set to zeros (not the
``empty_*`` features), both halves in one batch, ``v = u + cfg (c - u)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from engine.cot import Cot
from engine.errors import UserInputError
from engine.family import CotConditions, Finish, Guidance
from engine.prismaudio.architecture import HOP, LATENT_RATE, SAMPLE_RATE, SYNC_MODES
from engine.prismaudio.checkpoint import PrismAudioNetworks, load_folder
from engine.sampling import Velocity, guided

VIDEO_RATE = 4.0  # VideoPrism frames per second of the official features (int(4 d) frames)
MAX_SECONDS = 30.0  # the longest window rendered in one pass (the reference trained on ~9-10 s clips)
FEATURES_COT = Cot(semantic="", temporal="", aesthetic="", spatial="")  # stands for a CoT given as features


def latent_length(duration: float) -> int:
    """N = round(44100 / 2048 d): the official latent length of ``duration`` seconds."""
    return round(LATENT_RATE * duration)


@dataclass(frozen=True, eq=False)
class PreparedFeatures:
    """What `engine.pipeline.render` needs of a clip, from precomputed features (a `PreparedVideo` stand-in)."""

    duration: float  # seconds of picture; the render is exactly round(duration * 44100) samples
    video: torch.Tensor  # (F, 1024) float32 VideoPrism frame embeddings at 4 fps
    sync: torch.Tensor | None  # (S, 768) float32 Synchformer tokens, S a multiple of 8; None in official mode
    sync_mode: str  # one of SYNC_MODES
    sample_rate: int = SAMPLE_RATE  # audio samples per second
    hop: int = HOP  # audio samples per latent frame

    @property
    def n_samples(self) -> int:
        """The exact length of the render."""
        return round(self.duration * self.sample_rate)

    @property
    def n_latent(self) -> int:
        """N latent frames of the whole clip."""
        return latent_length(self.duration)


@dataclass(frozen=True, eq=False)
class PrismConditions:
    """The conditioner outputs of one window (batch 1); zeros of the same shapes are the unconditional half."""

    context: torch.Tensor  # (1, F + L, D) cross-attention context: video tokens, then text tokens
    add: torch.Tensor  # (1, F, D) video tokens added to the latent sequence (resampled to N in the DiT)
    sync: torch.Tensor  # (1, N, D) or (1, 1, D) sync tokens added through the sync gate

    def zeros(self) -> PrismConditions:
        """The official unconditional conditions."""
        return PrismConditions(
            self.context.new_zeros(self.context.shape),
            self.add.new_zeros(self.add.shape),
            self.sync.new_zeros(self.sync.shape),
        )

    def rows(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(context, add, sync) repeated to ``batch`` rows."""
        return tuple(x.expand(batch, *x.shape[1:]) for x in (self.context, self.add, self.sync))


class PrismAudioFamily:
    """The published PrismAudio checkpoint behind the model family interface."""

    def __init__(self, networks: PrismAudioNetworks, name: str = "prismaudio") -> None:
        self.networks = networks  # loaded once, shared read-only by every render
        self.name = name  # shown in outputs and logs

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> PrismAudioFamily:
        """Load a folder holding prismaudio.ckpt (and vae.ckpt, which then replaces its VAE)."""
        return cls(load_folder(folder), name=f"prismaudio:{os.path.basename(os.path.normpath(folder))}")

    # ---------------------------------------------------------------------------- facts of the family

    @property
    def trainable(self) -> frozenset[str]:
        """None yet: fine-tuning the official model is still to be wired (issue 38 item 7)."""
        return frozenset()

    @property
    def device(self) -> torch.device:
        return next(self.networks.dit.parameters()).device

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def latent_rate(self) -> float:
        return LATENT_RATE

    @property
    def max_frames(self) -> int:
        return latent_length(MAX_SECONDS)

    # ------------------------------------------------------------------------------------- conditions

    def prepare(self, path) -> PreparedFeatures:
        """Not yet: VideoPrism and Synchformer are not part of the engine."""
        raise UserInputError(
            f"PrismAudio cannot read {os.fspath(path)} yet: extract the features with the official tools and "
            "render with `render --features FILE.npz`"
        )

    def prepare_features(
        self, video: torch.Tensor, sync: torch.Tensor | None, duration: float, sync_mode: str = "official"
    ) -> PreparedFeatures:
        """A clip from its features: video (F, 1024), sync (S, 768) (needed in ``features`` mode), duration s."""
        if sync_mode not in SYNC_MODES:
            raise UserInputError(f"sync mode must be one of {', '.join(SYNC_MODES)}, got {sync_mode!r}")
        cfg = self.networks.config.conditioners
        if video.ndim != 2 or video.shape[1] != cfg.video_dim or video.shape[0] < 1:
            raise UserInputError(f"video features must be (T, {cfg.video_dim}) with T >= 1, got {tuple(video.shape)}")
        if sync_mode == "features" and (
            sync is None or sync.ndim != 2 or sync.shape[1] != cfg.sync_dim or sync.shape[0] < 8 or sync.shape[0] % 8
        ):
            got = None if sync is None else tuple(sync.shape)
            raise UserInputError(f"sync features must be (S, {cfg.sync_dim}) with S a multiple of 8, got {got}")
        if not (duration > 0 and latent_length(duration) >= 1):
            raise UserInputError(f"duration must be long enough for one latent frame (> 0.024 s), got {duration}")
        sync = sync.float() if sync_mode == "features" else None
        return PreparedFeatures(float(duration), video.float(), sync, sync_mode)

    def encode_cot(self, cot: Cot) -> CotConditions:
        """Not yet: T5Gemma is not part of the engine (give the text as features, `text_conditions`)."""
        raise UserInputError("PrismAudio cannot encode a CoT yet: give T5Gemma text features (render --features)")

    def text_conditions(self, text: torch.Tensor, cot: Cot = FEATURES_COT) -> CotConditions:
        """T5Gemma encoder states (L, 1024) of the CoT as the family's encoded text."""
        dim = self.networks.config.conditioners.text_dim
        if text.ndim != 2 or text.shape[1] != dim or text.shape[0] < 1:
            raise UserInputError(f"text features must be (L, {dim}) with L >= 1, got {tuple(text.shape)}")
        return CotConditions(cot, [text.float()], None)

    @torch.no_grad()
    def window_conditions(
        self, prepared: PreparedFeatures, text: CotConditions, start: int, length: int
    ) -> tuple[PrismConditions, PrismConditions]:
        """(cond, uncond) of latent frames [start, start + length): the video frames shown in the window (all
        of them for a whole clip, as the reference), the text, and the sync tokens of the mode."""
        nets, dev = self.networks, self.device
        first = int(np.floor(start / LATENT_RATE * VIDEO_RATE))
        last = max(int(np.ceil((start + length) / LATENT_RATE * VIDEO_RATE)), first + 1)
        video = prepared.video[first:last] if (start, length) != (0, prepared.n_latent) else prepared.video
        v = nets.conditioners.video(video[None].to(dev))  # (1, F, D)
        t = nets.conditioners.text(text.text[0][None].to(dev))  # (1, L, D)
        if prepared.sync_mode == "official":
            s = nets.dit.empty_sync_feat[None]  # (1, 1, D): broadcast over every frame
        else:
            s = nets.conditioners.sync(prepared.sync[None].to(dev), length=prepared.n_latent)[:, start : start + length]
        cond = PrismConditions(torch.cat([v, t], dim=1), v, s)
        return cond, cond.zeros()

    # ------------------------------------------------------------------------------------ the velocity

    def model_call(self, x: torch.Tensor, t: torch.Tensor, cond: PrismConditions) -> torch.Tensor:
        """One DiT call on x (B, C, N) at t (B,) with ``cond`` for every row."""
        return self.networks.dit(x, t, *cond.rows(x.shape[0]))

    def guided_velocity(
        self, cond: PrismConditions, uncond: PrismConditions, guidance: Guidance, batch: int = 1
    ) -> Velocity:
        """``u + cfg (c - u)`` with both halves in one batch of 2B (cfg 1: the conditional call alone).
        ``guidance.video_cfg`` has no meaning here (one condition, no text-only branch) and is ignored;
        ``interval`` and ``rescale`` are honoured (`engine.sampling.guided`); the official values are the full
        interval (0, 1) and no rescale."""

        def velocity_c(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.model_call(x, t, cond)

        if guidance.cfg == 1.0:
            return velocity_c
        both = PrismConditions(*(torch.cat([c, u]) for c, u in zip(cond.rows(batch), uncond.rows(batch))))

        def velocity_cu(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.networks.dit(torch.cat([x, x]), torch.cat([t, t]), both.context, both.add, both.sync)
            return out.chunk(2)  # (v_c, v_u), each (B, C, N)

        return guided(velocity_cu, guidance.cfg, guidance.rescale, guidance.interval, velocity_c)

    def noise(self, seed: int, length: int) -> torch.Tensor:
        """``torch.randn((1, 64, length), generator=torch.Generator("cpu").manual_seed(seed))``: one seed is the same
        take on every device."""
        g = torch.Generator("cpu").manual_seed(seed)
        c = self.networks.config.dit.io_channels
        return torch.randn((1, c, length), generator=g, dtype=torch.float32).to(self.device)

    # ----------------------------------------------------------------------------------------- codec

    @torch.no_grad()
    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """Stereo (B, 2, n) at 44.1 kHz -> latent means (B, 64, n // 2048), float32."""
        return self.networks.vae.encode(audio.to(self.device))

    @torch.no_grad()
    def decode_latent(self, z: torch.Tensor, n_samples: int) -> torch.Tensor:
        """Latents (B, 64, T) -> stereo (B, 2, n_samples) float32: the decoder's output cut, or zero-padded
        where T x 2048 falls short (at most 1024 samples for the official N)."""
        audio = self.networks.vae.decode(z.to(self.device))  # (B, 2, T hop), float32
        if audio.shape[-1] >= n_samples:
            return audio[..., :n_samples]
        return torch.nn.functional.pad(audio, (0, n_samples - audio.shape[-1]))

    def decode_window(
        self, z: torch.Tensor, prepared: PreparedFeatures, start: int, length: int, finish: Finish
    ) -> np.ndarray:
        """(B, 64, length) -> (B, n, 2) float32, n the window's samples (to the clip's end for the last
        window). ``finish`` is not used: the official model's latents are decoded as sampled."""
        end = prepared.n_samples if start + length >= prepared.n_latent else (start + length) * HOP
        audio = self.decode_latent(z, end - start * HOP)
        return audio.transpose(1, 2).cpu().numpy()
