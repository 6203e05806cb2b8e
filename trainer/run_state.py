"""What every training loop of the project shares: the learning-rate schedule, the EMA, and a
checkpoint of the whole training state (model, EMA, AdamW moments, data RNG, step) in one
safetensors file, so a resumed run continues exactly where it stopped (no pickle is ever loaded)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from engine.atomic import atomic_path


def cosine_lr(step: int, lr: float, warmup: int, steps: int, min_ratio: float) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up over ``warmup`` steps, then a
    cosine from ``lr`` down to ``min_ratio * lr`` at ``steps``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * frac)))


def ema_decay(step: int, decay: float) -> float:
    """EMA decay after ``step`` steps: ``min(decay, (1 + step) / (10 + step))``.

    The warm-up (as in timm's / diffusers' EMA) keeps a short run's EMA from being mostly the random
    initialisation: with a flat 0.999, 300 steps would still weigh the initial weights by 0.74.
    """
    return min(decay, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * model`` for every parameter."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1.0 - decay)


def save_training_state(path: Path, state: dict) -> None:
    """``state`` = {model, ema, optim, gen, step, config (a dataclass), optional extra (JSON-able: a loop's
    own bookkeeping, e.g. its evaluation history)} in one safetensors file (written to a temporary file,
    then renamed); ``gen`` (a torch.Generator) may be None."""
    from safetensors.torch import save_file

    opt = state["optim"].state_dict()
    tensors = {f"model.{k}": v for k, v in state["model"].state_dict().items()}
    tensors |= {f"ema.{k}": v for k, v in state["ema"].state_dict().items()}
    tensors |= {f"optim.{i}.{name}": t for i, s in opt["state"].items() for name, t in s.items()}
    if state.get("gen") is not None:  # loops whose randomness is a pure function of the step have none
        tensors["rng"] = state["gen"].get_state()
    meta = {
        "step": str(state["step"]),
        "config": json.dumps(asdict(state["config"])),
        "param_groups": json.dumps(opt["param_groups"]),
        "extra": json.dumps(state.get("extra") or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)


def load_training_state(path: Path, state: dict, must_match: tuple[str, ...] = (), defaults: dict | None = None) -> int:
    """Restore ``state`` (model, ema, optim, gen, and ``extra`` when the file has it) in place from
    `save_training_state`'s file; returns the step. Raises ValueError when a config field named in
    ``must_match`` differs from the saved run (``defaults``: what a field reads as in a file saved before
    the field existed)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    saved, now = json.loads(meta["config"]), json.loads(json.dumps(asdict(state["config"])))
    for key in must_match:
        if saved.get(key, (defaults or {}).get(key)) != now.get(key):
            raise ValueError(f"checkpoint {path} has {key}={saved.get(key)!r}, this run {now.get(key)!r}")
    tensors = load_file(str(path))
    state["model"].load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state["ema"].load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = v
    groups = [{**g, "betas": tuple(g["betas"])} for g in json.loads(meta["param_groups"])]
    state["optim"].load_state_dict({"state": opt_state, "param_groups": groups})
    if state.get("gen") is not None:
        state["gen"].set_state(tensors["rng"])
    state["extra"] = json.loads(meta.get("extra", "{}"))
    return int(meta["step"])
