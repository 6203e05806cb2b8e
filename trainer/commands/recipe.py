"""``train recipe NAME [--run]``: the commands that made a shipped checkpoint (`trainer.recipes`), one shell line
each; with --run they are carried out in order, stopping at the first that fails."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

from engine.commands.common import ROOT
from engine.errors import UserInputError


def build(parser) -> None:
    parser.add_argument("name", metavar="NAME", help="the recipe (docs/TRAINING.md lists them)")
    parser.add_argument("--run", action="store_true", help="carry the commands out in order (stop at a failure)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from trainer.recipes import recipe_commands  # written beside this module; imported when asked for
    except ImportError:
        raise UserInputError("no recipes here: trainer/recipes.py is missing") from None
    lines = recipe_commands(args.name)  # UserInputError for an unknown name
    if not args.run:
        print("\n".join(lines))
        return 0
    for line in lines:
        print(f"$ {line}", file=sys.stderr, flush=True)
        code = subprocess.run(_argv(line), cwd=ROOT).returncode
        if code != 0:
            print(f"error: recipe {args.name!r} stopped: exit code {code} from: {line}", file=sys.stderr)
            return code
    return 0


def _argv(line: str) -> list[str]:
    """A recipe line as a process's arguments; ``python`` is this interpreter (the same environment)."""
    argv = shlex.split(line)
    return [sys.executable, *argv[1:]] if argv and argv[0] in ("python", "python3") else argv
