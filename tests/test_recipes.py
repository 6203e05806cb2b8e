"""The training recipes of the shipped checkpoints (trainer.recipes): well-formed steps that the command line
parses, inputs that exist or an earlier step makes, and shell lines that round-trip. No training runs."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from engine.errors import UserInputError
from trainer.recipes import COMMAND_WORDS, RECIPES, Recipe, recipe_commands

ROOT = Path(__file__).resolve().parents[1]
INPUT_FLAGS = ("--init", "--tuned", "--planner-file", "--cues", "--model")  # paths a step reads
OUTPUT_FLAGS = ("--out", "--codec")  # paths a step writes (`train codec` writes its --codec file)


def _flag(step: tuple[str, ...], flag: str) -> str | None:
    """The value after ``flag`` in ``step``, or None."""
    return step[step.index(flag) + 1] if flag in step else None


def test_every_recipe_has_steps_that_start_with_a_command_word():
    assert {"metrics", "codec", "cues", "planner", "base", "default"} <= set(RECIPES)
    for name, recipe in RECIPES.items():
        assert recipe.name == name and recipe.what and recipe.makes and recipe.out
        assert len(recipe.steps) >= 1, name
        for step in recipe.steps:
            assert step[0] in COMMAND_WORDS, (name, step)
            assert all(isinstance(a, str) and a and a == a.strip() for a in step), (name, step)


def test_each_recipe_makes_a_shipped_path_and_ends_where_it_says():
    for name, recipe in RECIPES.items():
        assert (ROOT / recipe.makes).exists(), (name, recipe.makes)
        assert recipe.makes.startswith("assets/") and recipe.out.startswith("runs/"), name
        last = recipe.steps[-1]
        assert recipe.out in {_flag(last, f) for f in OUTPUT_FLAGS}, (name, last)


def test_steps_read_only_shipped_files_or_what_an_earlier_step_wrote():
    for name, recipe in RECIPES.items():
        written: set[str] = set()
        for step in recipe.steps:
            for flag in INPUT_FLAGS:
                path = _flag(step, flag)
                if path is None:
                    continue
                shipped = (ROOT / path).exists() or (ROOT / "assets" / "models" / path).is_dir()
                assert shipped or path in written, (name, flag, path)
            written |= {p for p in (_flag(step, f) for f in OUTPUT_FLAGS) if p}


def test_unknown_recipe_is_a_user_input_error_naming_the_choices():
    with pytest.raises(UserInputError, match="no recipe 'nope'; choose among") as caught:
        recipe_commands("nope")
    assert not isinstance(caught.value, KeyError)
    assert all(name in str(caught.value) for name in RECIPES)


def test_commands_round_trip_through_shlex():
    for name, recipe in RECIPES.items():
        lines = recipe_commands(name)
        assert len(lines) == len(recipe.steps)
        for line, step in zip(lines, recipe.steps, strict=True):
            assert line.startswith("python launch.py ")
            assert shlex.split(line) == ["python", "launch.py", *step]


def test_an_argument_with_a_space_is_quoted(monkeypatch):
    odd = Recipe(
        name="odd", what="w", makes="assets", out="runs/a b", steps=(("train", "ingest", "--out", "runs/a b"),)
    )
    monkeypatch.setitem(RECIPES, "odd", odd)
    (line,) = recipe_commands("odd")
    assert line == "python launch.py train ingest --out 'runs/a b'"
    assert shlex.split(line)[-1] == "runs/a b"


def test_a_malformed_recipe_is_refused():
    with pytest.raises(ValueError, match="no steps"):
        Recipe(name="empty", what="w", makes="assets", out="runs/x", steps=())
    with pytest.raises(ValueError, match="non-empty strings"):
        Recipe(name="bad", what="w", makes="assets", out="runs/x", steps=(("render", "clip.mp4"),))


def test_the_command_line_parses_every_step():
    """Every flag of every step is one the launch.py parser accepts (parsing only; nothing runs)."""
    launch = pytest.importorskip("launch")
    build = getattr(launch, "build_parser", None)
    if build is None:
        pytest.skip("launch.py has no build_parser")
    parser = build()
    for name, recipe in RECIPES.items():
        for step in recipe.steps:
            try:
                parser.parse_args(list(step))
            except SystemExit as exc:  # argparse's way of refusing a flag
                pytest.fail(f"recipe {name!r}: launch.py refuses {shlex.join(step)} (exit {exc.code})")
