"""Weight files: safetensors only, written to a temporary file and renamed, read with a clear error.

Every network of the engine saves its state dict plus a metadata dict holding a ``format`` tag and its
config JSON; loading checks the tag so a codec file handed to the generator says so in one line.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from engine.atomic import atomic_path
from engine.errors import UserInputError


def write_weights(path: str | Path, state: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Save ``state`` (tensors as given) with string ``metadata``; a failed save leaves no partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp), metadata=metadata)


def read_weights(path: str | Path, fmt: str, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state as float32 on CPU, metadata) of a file written with ``metadata["format"] == fmt``.

    ``what`` names the kind of file in errors ("generator checkpoint", "planner"). Raises
    `UserInputError` for a missing file, a file that is not safetensors, or another format.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{what} file not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k).float() for k in f.keys()}
    except Exception as exc:  # safetensors raises several types for a corrupt header
        raise UserInputError(f"{path} is not a safetensors file ({exc})") from None
    if meta.get("format") != fmt or "config" not in meta:
        raise UserInputError(f"{path} is not a {what} (no {fmt!r} config in its metadata)")
    return state, meta
