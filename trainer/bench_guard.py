"""The last overfitting guard before a tuned model is offered: FoleyBench on the original classes, tuned
against the model it started from.

Fine-tuning on a studio's own sounds must not cost what the start model could already do (users of
today's models report that naive LoRA fine-tuning overfits). Both models render the same FoleyWorld
``test-single`` clips (one source of the 16 original classes, ground-truth CoT, seed ``seed + clip``);
FoleyBench scores both. For each guarded metric (higher is better) the relative drop is
``(base - tuned) / max(|base|, floor)``; the check passes when no drop exceeds ``tolerance`` (10 %: the
issue's bar). ``floor`` keeps a near-zero base score from turning noise into a huge relative drop.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from engine.bundle import ModelBundle
from engine.errors import UserInputError

GUARDED = ("class_acc", "clap", "onset_f1_100")  # semantic (class, text agreement) and temporal metrics


@dataclass(frozen=True)
class BenchCheck:
    """How the start model and the tuned model are compared."""

    clips: int = 16  # FoleyWorld test-single clips rendered by both, 2 or more (0: no check; the result is unchecked)
    duration: float = 4.0  # seconds per clip
    steps: int = 12  # sampler steps of every render
    cfg: float = 3.5  # guidance scale (the render default)
    seed: int = 0  # clip k renders with seed + k, the same for both models
    tolerance: float = 0.10  # largest relative drop allowed on any guarded metric
    floor: float = 0.05  # relative drops are taken against max(|base|, floor)

    def __post_init__(self) -> None:
        if self.clips < 0 or self.clips == 1 or self.steps < 1 or not 0 <= self.tolerance < 1 or self.floor <= 0:
            raise UserInputError(f"need 0 or >= 2 bench clips (FD needs two), steps >= 1, 0 <= tolerance < 1: {self}")


def compare(base: dict, tuned: dict, tolerance: float, floor: float, metrics=GUARDED) -> dict:
    """{"passed", "drops": {metric: relative drop}, "worst": metric} from two FoleyBench rows."""
    drops = {m: (float(base[m]) - float(tuned[m])) / max(abs(float(base[m])), floor) for m in metrics}
    worst = max(drops, key=drops.get)
    return {"passed": all(d <= tolerance for d in drops.values()), "drops": drops, "worst": worst}


def _clips(folder: Path, check: BenchCheck) -> Path:
    """The check's clips (written once; an existing complete folder of the same clips is reused)."""
    from trainer.foleyworld.scene import WorldConfig
    from trainer.foleyworld.splits import write_split

    index = folder / "index.json"
    if index.is_file():
        meta = json.loads(index.read_text())
        first = folder / f"{meta['clips'][0]}.json" if meta.get("clips") else None
        if len(meta["clips"]) == check.clips and first and json.loads(first.read_text())["duration"] == check.duration:
            return folder
    write_split("test-single", folder, check.clips, WorldConfig(duration=check.duration))
    return folder


def check_against_base(
    base: ModelBundle,
    tuned: ModelBundle,
    check: BenchCheck,
    folder: str | Path,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """FoleyBench rows of both models on ``check.clips`` clips written to ``folder``, and `compare`'s verdict:
    ``{"passed", "drops", "worst", "base": row, "tuned": row, "check": settings}``; passed is None without clips."""
    return check_many(base, {"tuned": tuned}, check, folder, progress)["tuned"]


def guard(
    base: ModelBundle,
    tuned: ModelBundle,
    check: BenchCheck,
    folder: str | Path,
    step: int,
    progress: Callable[[dict], None] | None = None,
) -> dict:
    """The guard of every method that tunes a shipped model (`trainer.loop.Method.finish` of LoRA fine-tuning,
    Flow-DPO and GRPO): `check_against_base` with its renders reported as ``{"phase": "bench", "done",
    "total", "step"}`` entries; the verdict (``passed`` None with 0 clips: not run)."""
    report = (lambda d, n: progress({"phase": "bench", "done": d, "total": n, "step": step})) if progress else None
    return check_against_base(base, tuned, check, folder, report)


def check_many(
    base: ModelBundle,
    tuned: dict[str, ModelBundle],
    check: BenchCheck,
    folder: str | Path,
    progress: Callable[[int, int], None] | None = None,
    tuned_settings=None,
) -> dict[str, dict]:
    """`check_against_base` of several tuned models against one start model, whose clips render once:
    ``{name: verdict}`` (each verdict's ``"tuned"`` row is that model's). ``tuned_settings`` (a
    `RenderSettings`, or one per tune name): the tunes render with its guidance (the check's seed and steps
    kept), the start model with the check's cfg."""
    from engine.bench.run import bench_split, render_row
    from engine.pipeline import RenderSettings

    if check.clips == 0:
        return {n: {"passed": None, "check": asdict(check), "note": "not run (0 clips)"} for n in tuned}
    if "base" in tuned:
        raise ValueError("a tuned model cannot be named 'base'")
    data = _clips(Path(folder), check)
    settings = RenderSettings(seed=check.seed, steps=check.steps, cfg=check.cfg)
    if not isinstance(tuned_settings, dict):
        tuned_settings = dict.fromkeys(tuned, tuned_settings)
    theirs = {n: replace(h, seed=check.seed, steps=check.steps) if h else settings for n, h in tuned_settings.items()}
    models = {"base": base} | tuned
    rows = {n: render_row(b, data, settings if n == "base" else theirs[n]) for n, b in models.items()}
    result = bench_split(data, rows=list(models), limit=check.clips, extra_rows=rows, progress=progress)
    keep = lambda row: {k: float(v) for k, v in row.items() if k != "n_clips"}  # noqa: E731
    base_row, out = result["rows"]["base"], {}
    for name in tuned:
        row = result["rows"][name]
        verdict = compare(base_row, row, check.tolerance, check.floor)
        out[name] = verdict | {"base": keep(base_row), "tuned": keep(row), "check": asdict(check)}
    return out
