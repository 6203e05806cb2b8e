"""Loading the official files: ``prismaudio.ckpt`` (a flat dict: ``model.model.*`` DiT, ``conditioner.conditioners.*``,
``pretransform.model.*`` VAE) and optionally ``vae.ckpt`` (``{"state_dict": {"autoencoder.*": ...}}``), which
replaces the VAE inside prismaudio.ckpt as the official predict.py does (OFFICIAL.md 2 "Storage", 4).

The architecture is read from the shapes (`architecture`), the networks are built on the meta device and the
tensors assigned to them after a strict check of every key and shape against what our modules expect; any
problem is a one-line `UserInputError` that names the file and the missing or unexpected keys.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from engine.errors import UserInputError
from engine.prismaudio.architecture import (
    CONDITIONER_PREFIX,
    DIT_PREFIX,
    VAE_FILE_PREFIX,
    VAE_PREFIX,
    PrismAudioConfig,
    conditioner_config_from_state,
    dit_config_from_state,
    vae_config_from_state,
)
from engine.prismaudio.conditioners import Conditioners
from engine.prismaudio.dit import PrismDiT
from engine.prismaudio.oobleck import OobleckVAE

CHECKPOINT_FILE = "prismaudio.ckpt"  # the generator (and a VAE copy) in a model folder
VAE_FILE = "vae.ckpt"  # the VAE that replaces the copy, when the folder has it
SHOWN_KEYS = 4  # keys named in a key-mismatch message before "... (n in all)"


@dataclass(frozen=True, eq=False)
class PrismAudioNetworks:
    """The three networks of a checkpoint, in eval mode, float32."""

    config: PrismAudioConfig  # sizes read from the checkpoint
    dit: PrismDiT  # the generator (``model.model.*``)
    conditioners: Conditioners  # the feature MLPs (``conditioner.*``, without the ``conditioner.`` level)
    vae: OobleckVAE  # the audio codec (``pretransform.model.*`` or vae.ckpt's ``autoencoder.*``)

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor under its key in prismaudio.ckpt (850 keys for the full-size model)."""
        parts = ((DIT_PREFIX, self.dit), ("conditioner.", self.conditioners), (VAE_PREFIX, self.vae))
        return {prefix + k: v for prefix, module in parts for k, v in module.state_dict().items()}

    def generator_parameters(self) -> int:
        """Parameters of the DiT and the conditioners (the paper's "518M"; buffers not counted)."""
        return sum(p.numel() for m in (self.dit, self.conditioners) for p in m.parameters())


def build_networks(config: PrismAudioConfig, device: torch.device | str = "cpu") -> PrismAudioNetworks:
    """Networks of ``config`` with fresh weights on ``device`` ("meta": shapes only, no memory)."""
    with torch.device(device):
        return PrismAudioNetworks(
            config,
            PrismDiT(config=config.dit),
            Conditioners(config=config.conditioners),
            OobleckVAE(config=config.vae),
        )


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a torch checkpoint file (``weights_only``, on the CPU); a ``{"state_dict": ...}`` wrapper
    is opened. `UserInputError` for a missing, truncated or foreign file."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"checkpoint not found: {p}")
    try:
        obj = torch.load(p, weights_only=True, map_location="cpu")
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        message = f"{p.name} is not a readable PyTorch checkpoint (truncated or wrong file?): {reason}"
        raise UserInputError(message) from e
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserInputError(f"{p.name} holds no dict of tensors; is it a PrismAudio checkpoint?")
    return obj


def with_prefix(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``sd`` whose key starts with ``prefix``, the prefix removed."""
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > SHOWN_KEYS else "")


def check_keys(module: nn.Module, sd: dict[str, torch.Tensor], prefix: str, source: str) -> None:
    """`UserInputError` naming the missing and unexpected keys (with ``prefix``) and any shape mismatch."""
    expected = module.state_dict()
    missing = sorted(prefix + k for k in expected.keys() - sd.keys())
    unexpected = sorted(prefix + k for k in sd.keys() - expected.keys())
    problems = []
    if missing:
        problems.append(f"missing keys {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listed(unexpected)}")
    wrong = sorted(
        f"{prefix}{k} {list(sd[k].shape)} (expected {list(v.shape)})"
        for k, v in expected.items()
        if k in sd and sd[k].shape != v.shape
    )
    if wrong:
        problems.append(f"wrong shapes {_listed(wrong)}")
    if problems:
        raise UserInputError(f"{source} does not fit the PrismAudio architecture: {'; '.join(problems)}")


def _assign(module: nn.Module, sd: dict[str, torch.Tensor], prefix: str, source: str) -> None:
    check_keys(module, sd, prefix, source)
    module.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True, assign=True)
    module.eval().requires_grad_(False)


def load_networks(checkpoint: str | os.PathLike, vae: str | os.PathLike | None = None) -> PrismAudioNetworks:
    """The networks of ``checkpoint`` (prismaudio.ckpt layout), the VAE from ``vae`` (vae.ckpt layout) when given.

    Every key of prismaudio.ckpt is checked strictly, its VAE copy included, as the official pipeline loads it
    before it overwrites the VAE. Raises `UserInputError` (one line) for bad files.
    """
    name = Path(checkpoint).name
    sd = read_state_dict(checkpoint)
    foreign = sorted(k for k in sd if not k.startswith((DIT_PREFIX, CONDITIONER_PREFIX, VAE_PREFIX)))
    if foreign:
        raise UserInputError(f"{name} does not fit the PrismAudio architecture: unexpected keys {_listed(foreign)}")
    parts = {p: with_prefix(sd, p) for p in (DIT_PREFIX, CONDITIONER_PREFIX, VAE_PREFIX)}
    vae_sd, vae_name, vae_prefix = parts[VAE_PREFIX], name, VAE_PREFIX
    if vae is not None:
        vae_name, vae_prefix = Path(vae).name, VAE_FILE_PREFIX
        vae_sd = with_prefix(read_state_dict(vae), VAE_FILE_PREFIX)
        vae_sd = {k: v for k, v in vae_sd.items() if k.startswith(("encoder.", "decoder."))}
    config = PrismAudioConfig(
        dit_config_from_state(parts[DIT_PREFIX], name),
        conditioner_config_from_state(parts[CONDITIONER_PREFIX], name),
        vae_config_from_state(vae_sd, vae_name),
    )
    nets = build_networks(config, "meta")
    _assign(nets.dit, parts[DIT_PREFIX], DIT_PREFIX, name)
    _assign(nets.conditioners.conditioners, parts[CONDITIONER_PREFIX], CONDITIONER_PREFIX, name)
    if vae is not None:  # the copy inside prismaudio.ckpt must still be a valid VAE (strict, as predict.py)
        copy = build_networks(PrismAudioConfig(vae=vae_config_from_state(parts[VAE_PREFIX], name)), "meta").vae
        check_keys(copy, parts[VAE_PREFIX], VAE_PREFIX, name)
    _assign(nets.vae, vae_sd, vae_prefix, vae_name)
    return nets


def model_files(folder: str | os.PathLike) -> tuple[Path, Path | None]:
    """(prismaudio.ckpt, vae.ckpt or None) of a model folder; `UserInputError` when it has no prismaudio.ckpt."""
    folder = Path(folder)
    ckpt = folder / CHECKPOINT_FILE
    if not ckpt.is_file():
        raise UserInputError(f"{folder} holds no {CHECKPOINT_FILE}; give a folder with the official checkpoint")
    vae = folder / VAE_FILE
    return ckpt, vae if vae.is_file() else None


def load_folder(folder: str | os.PathLike) -> PrismAudioNetworks:
    """`load_networks` of a model folder (prismaudio.ckpt, and vae.ckpt when present)."""
    return load_networks(*model_files(folder))
