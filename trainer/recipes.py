"""The named recipes of the shipped checkpoints: which ``launch.py`` commands, in which order, made each
trained file under ``assets/`` (docs/TRAINING.md tells the same recipes in prose, with times and machines).

Owns the data only: one `Recipe` per shipped checkpoint in `RECIPES`, in the order they depend on each other,
and `recipe_commands`, the shell lines that ``python launch.py train recipe NAME`` prints. Running the steps
is the command layer's job. A recipe writes under ``runs/`` and never over a shipped file: its ``out`` is
copied to its ``makes`` to ship it. Recipes whose steps are not the recorded run's commands say so
(``recorded=False``) and why in ``notes``. Imports nothing but ``engine.errors``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from engine.errors import UserInputError

COMMAND_WORDS = ("train", "world", "bench")  # the launch.py commands a recipe step may start with


@dataclass(frozen=True)
class Recipe:
    """How one shipped checkpoint was made: ``launch.py`` commands, run in order from the repository root."""

    name: str  # what ``train recipe NAME`` takes, e.g. "base"
    what: str  # one line: what the recipe makes
    makes: str  # the shipped path it reproduces, e.g. "assets/models/base"
    out: str  # where its last step writes the result (copy it to ``makes`` to ship it)
    steps: tuple[tuple[str, ...], ...]  # argv of each launch.py command, without the leading "python launch.py"
    recorded: bool = True  # the steps are the recorded run's commands (only output folders may differ)
    notes: str = ""  # what a rebuild needs to know: inputs taken from assets/, where the steps differ

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError(f"recipe {self.name!r} has no steps")
        for step in self.steps:
            if not step or step[0] not in COMMAND_WORDS or not all(isinstance(a, str) and a for a in step):
                raise ValueError(f"recipe {self.name!r}: a step must be non-empty strings from {COMMAND_WORDS}: {step}")


def _pretrain(init: str | None, cache: str, out: str, steps: int, lr: str, warmup: int, *extra: str) -> tuple:
    """One ``train pretrain`` stage of the generator on a 2560-clip feature cache, batch 16, two threads."""
    start = ("--init", init) if init else ()
    sizes = ("--clips", "2560", "--steps", str(steps), "--batch", "16", "--lr", lr, "--warmup", str(warmup))
    return ("train", "pretrain", *start, *extra, "--cache", cache, *sizes, "--threads", "2", "--out", out)


def _features(first_scene: int, cache: str) -> tuple:
    """The feature cache of 2560 FoleyWorld train clips from ``first_scene``, with the shipped cue network's cues
    (the codec is the features' default, the shipped one)."""
    start = ("--first-scene", str(first_scene)) if first_scene else ()
    cues = ("--cues", "assets/models/default/cues.safetensors")
    return ("train", "features", *start, "--clips", "2560", *cues, "--cache", cache)


_CODEC = Recipe(
    name="codec",
    what="the stereo codec: its trained decoder and latent statistics (codec.safetensors of both bundles)",
    makes="assets/models/default/codec.safetensors",
    out="runs/codec/codec.safetensors",
    steps=(("train", "codec", "--steps", "1300", "--batch", "16", "--codec", "runs/codec/codec.safetensors"),),
    recorded=False,
    notes="The shipped decoder ran 1000 steps of a 3000-step cosine schedule and was then resumed with --steps "
    "1300 to finish the decay (2026-11-22); `train codec` cannot stop at a step, so the recipe runs the "
    "1300-step schedule in one go: the same crops, batch and length of training, not the same weights.",
)

_CUES = Recipe(
    name="cues",
    what="the cue network: the first planner run, whose frame-wise cues the generator reads (cues.safetensors)",
    makes="assets/models/base/cues.safetensors",
    out="runs/planner/planner.safetensors",
    steps=(("train", "planner", "--steps", "3000", "--threads", "2", "--out", "runs/planner/planner.safetensors"),),
    notes="Whole-frame layout (the defaults: channels 24,48,64, width 128); 2026-12-01, about 66 minutes.",
)

_PLANNER = Recipe(
    name="planner",
    what="the planner that writes the four CoT blocks: a column-layout network and its per-class thresholds",
    makes="assets/models/base/planner.safetensors",
    out="runs/planner_col_cal/planner.safetensors",
    steps=(
        ("train", "planner", "--layout", "columns", "--channels", "24,48,80", "--width", "96", "--flip")
        + ("--steps", "3000", "--threads", "1", "--out", "runs/planner_col/planner.safetensors"),
        ("train", "calibrate-planner", "--threads", "1", "--planner-file", "runs/planner_col/planner.safetensors")
        + ("--out", "runs/planner_col_cal/planner.safetensors"),
    ),
    notes="2026-12-05: 2158 s of training and 5 minutes of calibration on 300 val clips.",
)

_METRICS = Recipe(
    name="metrics",
    what="the FoleyBench metric models: classifier, contrastive model and quality predictor (assets/bench)",
    makes="assets/bench",
    out="runs/metrics",
    steps=(("train", "metrics", "--out", "runs/metrics"),),
    notes="Recorded as `train metrics`, which writes assets/bench itself; 2026-11-22, 1176 s.",
)

_BASE = Recipe(
    name="base",
    what="the pretrained bundle: generator and video encoder by flow matching on FoleyWorld, in five stages",
    makes="assets/models/base",
    out="runs/gen_default_tl",
    steps=(
        _features(0, "data/features/cues"),
        _pretrain(None, "data/features/cues", "runs/gen_cues", 3000, "5e-4", 200),
        _features(2560, "data/features/cues_b"),
        _pretrain("runs/gen_cues", "data/features/cues_b", "runs/gen_cont", 2000, "2e-4", 100),
        _features(5120, "data/features/cues_c"),
        _pretrain("runs/gen_cont", "data/features/cues_c", "runs/gen_cont2", 2000, "2e-4", 100),
        _features(7680, "data/features/cues_d"),
        _pretrain("runs/gen_cont2", "data/features/cues_d", "runs/gen_cont3", 2000, "2e-4", 100),
        _pretrain("runs/gen_cont3", "data/features/cues", "runs/gen_default_tl", 1500, "2e-4", 100, "--timeline"),
    ),
    notes="Reads the shipped codec and cue network (recipes codec and cues). The record names each stage's "
    "start --init assets/models/default, the folder that held the stage before it at the time; the first "
    "stage's cache is recorded as data/features/cues4k, the same train clips 0-2559. To ship: the run folder "
    "with its planner.safetensors (the cue network) renamed cues.safetensors and the planner recipe's file "
    "as planner.safetensors.",
)

_GRPO = (
    ("train", "grpo", "--model", "base", "--iterations", "829", "--prompt-clips", "64", "--eval-clips", "24")
    + ("--group", "4", "--sample-steps", "12", "--duration", "3", "--window", "2", "--eval-every", "40")
    + ("--lr", "1e-5", "--threads", "1", "--weights", "semantic=1,temporal=0.6,aesthetic=0.3,spatial=0.1")
    + ("--seed", "2", "--out", "runs/strat/mlow_s2")
)

_DEFAULT = Recipe(
    name="default",
    what="the shipped bundle: base tuned by multi-dimensional Fast-GRPO (training seed 2), in float16",
    makes="assets/models/default",
    out="runs/strat/ship_mlow_s2",
    steps=(
        _GRPO,
        ("train", "blend", "--model", "base", "--tuned", "runs/strat/mlow_s2", "--strength", "1", "--half")
        + ("--out", "runs/strat/ship_mlow_s2"),
    ),
    recorded=False,
    notes="The recorded run had --iterations 20000 --max-minutes 25, which ended it after 829 iterations on "
    "CPU-2 (2026-12-06); --iterations 829 gives that count on any machine. It read its 64 train and 24 val "
    "clips of 3 s from runs/strat/multi/prompts and eval_prompts, which an earlier run of the same command "
    "wrote; without --prompts the run writes the same clips into its own folder. Seed 2 was chosen among "
    "training seeds 0-2 by the held-out weighted reward.",
)

RECIPES: dict[str, Recipe] = {r.name: r for r in (_METRICS, _CODEC, _CUES, _PLANNER, _BASE, _DEFAULT)}


def recipe_commands(name: str) -> list[str]:
    """The steps of recipe ``name`` as shell lines (``python launch.py ...``, each argument shell-quoted).

    `UserInputError` (one line, the names to choose from) for a name that is not in `RECIPES`."""
    recipe = RECIPES.get(name)
    if recipe is None:
        raise UserInputError(f"no recipe {name!r}; choose among {', '.join(RECIPES)}")
    return [shlex.join(("python", "launch.py", *step)) for step in recipe.steps]
