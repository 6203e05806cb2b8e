"""The model family interface: what the engine needs to know about one kind of generator.

A family says how to prepare a video once, how a prepared video and a CoT become the generator's
conditions, what the guided velocity is, and how a sampled latent becomes audio, plus which training
methods it supports. Every caller (render, best-of-N, the studio, the bench, GRPO, fine-tuning, DPO) goes
through these calls and nothing else, so a family whose conditions come from other encoders (frame
embeddings, encoder states of another text model, synchrony features) and whose codec is a neural VAE
plugs in without touching them.

The order of the calls for one take (`engine.pipeline.render`):

    prepared = family.prepare(path)                    # once per file version (cached)
    text = family.encode_cot(cot)                      # once per CoT, shared by every window and candidate
    cond, uncond = family.window_conditions(prepared, text, start, length)
    velocity = family.guided_velocity(cond, uncond, guidance)    # (x (B, C, T), t (B,)) -> (B, C, T)
    z = engine.sampling.sample_ode(velocity, family.noise(seed, length), steps, shift)
    audio = family.decode_window(z, prepared, start, length, finish)   # (n, 2) float32

The shipped bundle (`engine.bundle.ModelBundle`) is the first family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from engine.cot import Cot
from engine.prepared import PreparedVideo
from engine.sampling import Velocity

TRAINING_METHODS = ("pretrain", "finetune", "dpo", "grpo")  # what `ModelFamily.trainable` may name


@dataclass(frozen=True)
class Guidance:
    """How the conditional and unconditional velocities are combined (`engine.sampling.guided`)."""

    cfg: float  # classifier-free guidance scale of the text
    interval: tuple[float, float]  # noise levels lo <= t <= hi that are guided; the conditional velocity elsewhere
    video_cfg: float | None  # scale of the picture and motion on top of the text; None: plain two-branch guidance
    rescale: float = 0.0  # guidance rescale phi in [0, 1]


@dataclass(frozen=True)
class Finish:
    """What a sampled latent goes through before it is decoded."""

    declick: bool = True  # smooth clicks out of the latent's envelope
    gate: bool = True  # slow weak envelope rises where the picture shows no event


@dataclass(frozen=True, eq=False)
class CotConditions:
    """A CoT encoded once for one family: whatever its text encoder makes of the four blocks and the negative
    prompt (for the shipped bundle: four (states (1, L, D), mask (1, L)) slots and the negative's pair or None)."""

    cot: Cot  # the validated CoT these were encoded from
    text: list  # the family's encoded blocks
    negative: object | None  # the family's encoded negative prompt; None when the CoT has none


@runtime_checkable
class ModelFamily(Protocol):
    """What every model family provides (the shipped bundle, the published checkpoints...)."""

    name: str  # shown in outputs and logs

    @property
    def trainable(self) -> frozenset[str]:
        """The training methods of TRAINING_METHODS this family supports."""

    @property
    def device(self) -> torch.device:
        """Where its networks run."""

    @property
    def sample_rate(self) -> int:
        """Audio samples per second per channel of its renders."""

    @property
    def latent_rate(self) -> float:
        """Latent frames per second of its codec."""

    @property
    def max_frames(self) -> int:
        """The most latent frames its generator takes in one window."""

    def prepare(self, path) -> PreparedVideo:
        """Decode a video once (cached per file version); `UserInputError` for a bad file."""

    def encode_cot(self, cot: Cot) -> CotConditions:
        """The CoT's text conditions, computed once per CoT."""

    def window_conditions(self, prepared: PreparedVideo, text: CotConditions, start: int, length: int) -> tuple:
        """(cond, uncond) of latent frames [start, start + length) of ``prepared``."""

    def guided_velocity(self, cond, uncond, guidance: Guidance, batch: int = 1) -> Velocity:
        """The guided velocity for fixed weights, for ``batch`` rows of noise sharing one condition."""

    def noise(self, seed: int, length: int) -> torch.Tensor:
        """The start noise (1, C, length) of a seed, on the CPU generator (the same on every machine)."""

    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """Stereo audio (B, 2, N) at ``sample_rate`` -> its latents (B, C, T) (what fine-tuning trains toward)."""

    def decode_latent(self, z: torch.Tensor, n_samples: int) -> torch.Tensor:
        """Latents (B, C, T) -> stereo audio (B, 2, n_samples), nothing finished before decoding."""

    def decode_window(
        self, z: torch.Tensor, prepared: PreparedVideo, start: int, length: int, finish: Finish
    ) -> np.ndarray:
        """Sampled latents (B, C, length) of a window -> audio (B, n, 2) float32, n = the window's samples."""
