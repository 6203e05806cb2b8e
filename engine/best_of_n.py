"""Best-of-N takes: render N seeds of one video and CoT, score every take with the reward heads, and rank
them by the user's weighted total (the reranking use of the heads, DESIGN "Reward heads").

The CoT is encoded once and every window's conditions and guided velocity are shared by the N takes
(`engine.pipeline.render_takes`); the video side of the rewards is computed once from the prepared video
(`engine.rewards.view_of_prepared`) and the N takes are scored as one batch. Seeds are
``settings.seed .. settings.seed + n - 1``. On a CPU the takes are sampled one after another, so a candidate
is reproduced exactly by rendering its seed alone; on a GPU, where a batch costs about one take, they are
sampled as one batch (the same takes to within float rounding).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from engine.cot import Cot, validate_cot
from engine.errors import UserInputError
from engine.family import ModelFamily
from engine.pipeline import RenderSettings, render_takes
from engine.prepared import PreparedVideo
from engine.rewards import RewardHeads, check_weights, view_of_prepared, weighted_total

Progress = Callable[[int, int], None]  # (sampler steps done, steps in all) over the N renders
MAX_CANDIDATES = 64  # a guard against a typo costing hours


@dataclass(frozen=True, eq=False)
class Candidate:
    """One scored take."""

    seed: int  # the noise seed that renders this take
    audio: np.ndarray  # (N, 2) float32 at the bundle's sample rate
    scores: dict[str, float]  # dimension -> score in [0, 1]
    total: float  # weighted total of ``scores`` under the weights it was ranked with

    def summary(self) -> dict:
        """JSON-ready seed, scores and total (no audio)."""
        return {
            "seed": self.seed,
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "total": round(self.total, 4),
        }


def best_of_n(
    prepared: PreparedVideo,
    bundle: ModelFamily,
    cot: Cot | dict,
    settings: RenderSettings,
    n: int,
    weights: Mapping[str, float],
    heads: RewardHeads,
    progress: Progress | None = None,
    batch: bool | None = None,
) -> list[Candidate]:
    """Render seeds ``settings.seed + k`` (k < n), score them, and return the candidates best first
    (ties keep the lower seed first). ``weights`` is checked before any render (`UserInputError`).
    ``batch``: sample the takes as one batch (default: on a GPU only, see the module docstring)."""
    if not 1 <= n <= MAX_CANDIDATES:
        raise UserInputError(f"candidates must be 1 .. {MAX_CANDIDATES}, got {n}")
    weights, cot = check_weights(weights), validate_cot(cot)
    if settings.seed + n - 1 >= 2**63:
        raise UserInputError(f"seed {settings.seed} + {n} candidates runs past 2^63 - 1; pick a smaller seed")
    seeds = [settings.seed + k for k in range(n)]
    batch = bundle.device.type != "cpu" if batch is None else batch
    takes = render_takes(prepared, cot, bundle, settings, seeds, progress, batch=batch)
    scores, _ = heads.score_batch(np.stack(takes), bundle.sample_rate, view_of_prepared(prepared), cot)
    out = [Candidate(s, a, sc, weighted_total(sc, weights)) for s, a, sc in zip(seeds, takes, scores)]
    return sorted(out, key=lambda c: -c.total)  # stable: equal totals stay in seed order
