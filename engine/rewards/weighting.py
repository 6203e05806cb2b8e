"""User weights of the four reward dimensions: parsing ``semantic=1,temporal=0.6``, checking, and the
weighted total ``sum_k w_k s_k / sum_k w_k`` (PrismAudio's multi-reward, normalised so it stays in [0, 1])."""

from __future__ import annotations

import math
from collections.abc import Mapping

from engine.errors import UserInputError
from engine.rewards.protocol import DIMENSIONS


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """All four dimensions (missing = 0) as floats; `UserInputError` for an unknown name, a weight that is
    negative or not finite, or all weights 0."""
    unknown = sorted(set(weights) - set(DIMENSIONS))
    if unknown:
        raise UserInputError(f"unknown reward dimension(s) {', '.join(unknown)}; use {', '.join(DIMENSIONS)}")
    out = {d: float(weights.get(d, 0.0)) for d in DIMENSIONS}
    bad = [f"{d}={w}" for d, w in out.items() if not (math.isfinite(w) and w >= 0.0)]
    if bad:
        raise UserInputError(f"reward weights must be finite and >= 0, got {', '.join(bad)}")
    if not any(out.values()):
        raise UserInputError("at least one reward weight must be positive")
    return out


def parse_weights(text: str) -> dict[str, float]:
    """``"semantic=1,temporal=0.6"`` -> weights of the four dimensions (left out = 0), checked by `check_weights`."""
    weights: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in str(text).split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in DIMENSIONS:
            raise UserInputError(f"weight {item!r}: use NAME=NUMBER with NAME in {', '.join(DIMENSIONS)}")
        if name in weights:
            raise UserInputError(f"weight {name!r} is given twice")
        try:
            weights[name] = float(value)
        except ValueError:
            raise UserInputError(f"weight {item!r}: {value.strip()!r} is not a number") from None
    return check_weights(weights)


def weighted_total(scores: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """``sum_k w_k s_k / sum_k w_k`` over the dimensions with a positive weight (each must have a score)."""
    w = check_weights(weights)
    missing = [d for d, wk in w.items() if wk > 0 and d not in scores]
    if missing:
        raise ValueError(f"no score for weighted dimension(s) {', '.join(missing)}")
    total = sum(wk for wk in w.values())
    return float(sum(wk * float(scores[d]) for d, wk in w.items() if wk > 0) / total)
