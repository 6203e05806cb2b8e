"""The four-block chain of thought (CoT): schema, validation and text assembly, in one place.

A CoT is ``{"semantic", "temporal", "aesthetic", "spatial"}`` (required strings) plus an optional
``"negative"`` (what the unconditional branch of guidance describes, e.g. "speech, music").
Blocks keep this order wherever they become text for an encoder.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.errors import UserInputError

BLOCKS: tuple[str, ...] = ("semantic", "temporal", "aesthetic", "spatial")
MAX_BLOCK_CHARS = 600  # longer blocks are truncated with a warning (encoders see ~128 tokens per block)
MAX_NEGATIVE_CHARS = 200


@dataclass(frozen=True)
class Cot:
    """A validated CoT; empty blocks are allowed and mean "no guidance on this dimension"."""

    semantic: str
    temporal: str
    aesthetic: str
    spatial: str
    negative: str = ""

    def blocks(self) -> list[str]:
        """The four blocks in canonical order."""
        return [self.semantic, self.temporal, self.aesthetic, self.spatial]

    def monolithic(self) -> str:
        """The four blocks joined into one undifferentiated string (the official release's input)."""
        return " ".join(b for b in self.blocks() if b)

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["negative"]:
            del d["negative"]
        return d


def _clean(value: object, name: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UserInputError(f"CoT field '{name}' must be a string, got {type(value).__name__}")
    text = " ".join(value.split())
    if len(text) > limit:
        warnings.warn(f"CoT block '{name}' is {len(text)} characters; truncated to {limit}", stacklevel=3)
        text = text[:limit].rsplit(" ", 1)[0]
    return text


def validate_cot(obj: object) -> Cot:
    """Check a decoded JSON object against the schema and return a `Cot`.

    Raises `UserInputError` (one line, says what to fix) for a non-object, a missing block, a
    non-string field or an unknown field.
    """
    if isinstance(obj, Cot):
        return obj
    if not isinstance(obj, dict):
        raise UserInputError(f"a CoT must be a JSON object with fields {', '.join(BLOCKS)}; got {type(obj).__name__}")
    missing = [b for b in BLOCKS if b not in obj]
    if missing:
        raise UserInputError(f"CoT is missing the field(s) {', '.join(missing)}")
    unknown = sorted(set(obj) - set(BLOCKS) - {"negative"})
    if unknown:
        raise UserInputError(f"CoT has unknown field(s) {', '.join(unknown)}; allowed: {', '.join(BLOCKS)}, negative")
    fields = {b: _clean(obj[b], b, MAX_BLOCK_CHARS) for b in BLOCKS}
    return Cot(**fields, negative=_clean(obj.get("negative"), "negative", MAX_NEGATIVE_CHARS))


def load_cot(path: str | Path) -> Cot:
    """Read and validate a CoT JSON file; a clear `UserInputError` when it cannot be used."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"CoT file not found: {p}")
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(f"CoT file {p} is not valid JSON ({exc.__class__.__name__}: {exc})") from None
    return validate_cot(obj)
