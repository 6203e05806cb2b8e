#!/usr/bin/env python
"""The single entry point of the foley studio.

    python launch.py                 start the studio (127.0.0.1:7860)
    python launch.py render VIDEO... --out DIR   stereo foley for videos (WAV, CoT, optional MP4 with the video copied)
    python launch.py plan VIDEO      the four CoT blocks of a video as JSON
    python launch.py score VIDEO AUDIO   reward scores of a take (semantic, temporal, aesthetic, spatial) as JSON
    python launch.py codec AUDIO --out WAV   a sound through a model's codec
    python launch.py world ...       write a FoleyWorld split (mp4 + wav + json per clip), or time the generator
    python launch.py bench [MODE] ...    FoleyBench on a split: table as JSON on stdout and markdown on stderr
    python launch.py train METHOD ...    training (launch.py train --help lists the methods)

This file only dispatches: each command lives with what it drives (`engine.commands`: render, plan, score,
bench, codec; `trainer.commands`: world, train, and the bench modes that need the trainer). Bad input ends
with a one-line error on stderr and exit code 2; set FOLEY_DEBUG=1 to see tracebacks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
# OpenMP's wait policy is left to the user: on an idle machine the default (threads spin a moment before
# sleeping) renders two to three times faster than OMP_WAIT_POLICY=PASSIVE (docs/RESULTS.md, "Rendering
# speed"); PASSIVE is the better choice only when other jobs share the cores.

from engine.commands import COMMANDS, add_commands  # noqa: E402 - after the path above
from engine.commands.common import OneLineParser  # noqa: E402
from engine.errors import UserInputError  # noqa: E402
from trainer.commands import with_training  # noqa: E402


def project_pairs(project: str, path: Path) -> Path:
    """``train dpo --project NAME``: the studio project's starred and rejected takes as a pairs file at ``path``
    (the trainer never imports the studio, so the entry point hands it this)."""
    from app.settings import StudioSettings
    from app.train_runs import write_project_pairs

    return write_project_pairs(StudioSettings.from_env(), project, path)


def build_parser(argv: list[str] | None = None) -> OneLineParser:
    """The command line; with ``argv`` only the command it names is built (None: every command)."""
    parser = OneLineParser(prog="launch.py", description="Foley authoring studio.")
    add_commands(parser, with_training(COMMANDS), argv)
    parser.set_defaults(project_pairs=project_pairs)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = build_parser(argv).parse_args(argv)
    if args.command is None:
        from app.studio import launch_studio

        return launch_studio()
    try:
        return args.func(args)
    except UserInputError as exc:  # CliError too: bad input, one line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI boundary: one line, never a traceback
        if os.environ.get("FOLEY_DEBUG"):
            raise
        print(f"error: {exc.__class__.__name__}: {exc} (set FOLEY_DEBUG=1 for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
