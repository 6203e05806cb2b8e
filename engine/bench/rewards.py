"""The reward heads on a written FoleyWorld split: the mean score of every dimension and the weighted total
for rows of audio, which calibrates the heads (the ground truth must score high, and each row that breaks
one dimension must lose on that dimension) and measures a model by what RL optimises.

Rows: those of `engine.bench.run` (``ground_truth``, ``shuffled``, ``noise``, a model's renders) plus
``late`` (the ground truth 300 ms late: timing broken) and ``mirrored`` (left and right swapped: space
broken). Each clip is scored against its own video and ground-truth CoT.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from engine.bench.run import AudioFn, load_clips, noise_audio, shuffled_audio

LATE_S = 0.3  # the ``late`` row's delay


def _late(meta: dict, gt: np.ndarray, sr: int) -> np.ndarray:
    k = min(len(gt), round(LATE_S * sr))
    return np.concatenate([np.zeros((k, 2), gt.dtype), gt[: len(gt) - k]])


def _mirrored(meta: dict, gt: np.ndarray, sr: int) -> np.ndarray:
    return np.ascontiguousarray(gt[:, ::-1])


def reward_table(
    folder: str | Path,
    rows: list[str],
    weights: Mapping[str, float],
    limit: int | None = None,
    heads=None,
    extra_rows: dict[str, AudioFn] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """{"split", "n_clips", "rows": {row: {dimension: mean score, "total": mean weighted total}}}."""
    from engine.errors import UserInputError
    from engine.rewards import load_reward_heads, weighted_total

    heads = heads or load_reward_heads()
    root = Path(folder)
    metas, audios, sr = load_clips(root, limit)
    fns: dict[str, AudioFn] = {"ground_truth": lambda m, a, r: a, "shuffled": shuffled_audio(metas, audios)}
    fns |= {"noise": noise_audio, "late": _late, "mirrored": _mirrored} | (extra_rows or {})
    unknown = [r for r in rows if r not in fns]
    if unknown:
        raise UserInputError(f"unknown reward row(s) {', '.join(unknown)}; known: {', '.join(fns)}")
    missing = [m["name"] for m in metas if not (root / f"{m['name']}.mp4").is_file()]
    if missing:
        raise UserInputError(f"no video {missing[0]}.mp4 in {root}; write the split without --no-video")
    per_row: dict[str, list[dict]] = {r: [] for r in rows}
    for k, (meta, gt) in enumerate(zip(metas, audios)):
        takes = np.stack([fns[r](meta, gt, sr) for r in rows])  # (R, N, 2): every row shares the video side
        scores, _ = heads.score_batch(takes, sr, root / f"{meta['name']}.mp4", meta["cot"])
        for r, s in zip(rows, scores):
            per_row[r].append(s | {"total": weighted_total(s, weights)})
        if progress:
            progress(k + 1, len(metas))
    table = {r: {d: float(np.mean([s[d] for s in v])) for d in v[0]} for r, v in per_row.items()}
    return {"split": metas[0]["split"] if metas else "", "n_clips": len(metas), "rows": table}


def reward_markdown(result: dict) -> str:
    """A `reward_table` result as a markdown table."""
    cols = list(next(iter(result["rows"].values())))
    lines = [f"Reward heads on {result['split']} ({result['n_clips']} clips)", ""]
    lines += ["| row | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    lines += [f"| {r} | " + " | ".join(f"{v[c]:.3f}" for c in cols) + " |" for r, v in result["rows"].items()]
    return "\n".join(lines)
