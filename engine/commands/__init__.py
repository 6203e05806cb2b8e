"""The inference commands of ``launch.py`` (render, plan, score, bench, codec), one module each, and the
command table that ``launch.py`` dispatches through.

A command is a module (or ``module:function``) whose ``build(parser)`` adds its options and sets
``func`` (what runs it: ``func(args) -> exit code``); a group (``bench``, ``train``) also has a table of
subcommands. `add_commands` imports only the command that the argument list names, so ``--help`` and a
typo stay fast; with no argument list it builds every command (for tests and inspection). ``common``
holds what commands share, ``fields`` makes options from config dataclasses. May import ``engine`` only.
"""

from __future__ import annotations

from importlib import import_module

from engine.commands.common import OneLineParser

# name -> (module[:build function], one-line help[, table of subcommands])
BENCH_MODES = {
    "table": ("engine.commands.bench:build_table", "the FoleyBench table of a written split (the default)"),
    "rewards": ("engine.commands.bench:build_rewards", "mean reward-head scores per row instead of the metrics"),
    "follow-times": ("engine.commands.bench:build_follow_times", "do takes follow a moved Temporal block?"),
    "planner": ("engine.commands.bench:build_planner", "the planner's accuracy on the split's silent videos"),
}
COMMANDS = {
    "render": ("engine.commands.render", "render stereo foley for videos"),
    "plan": ("engine.commands.plan", "write the four CoT blocks of a video (JSON on stdout)"),
    "score": ("engine.commands.score", "reward scores of a take against its video (JSON on stdout)"),
    "bench": ("engine.commands.bench", "FoleyBench on a written split (and other benchmarks)", BENCH_MODES),
    "codec": ("engine.commands.codec", "encode and decode a sound through a model's codec"),
}


def add_commands(parser, table: dict, argv: list[str] | None = None, dest: str = "command") -> None:
    """Subcommands of ``parser`` from ``table``; only the one ``argv`` names is built (all when it is None)."""
    sub = parser.add_subparsers(dest=dest, metavar="COMMAND", parser_class=OneLineParser)
    if dest != "command":  # a group needs its subcommand; the top level without one starts the studio
        sub.required = True
    chosen = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    for name, (target, text, *inner) in table.items():
        p = sub.add_parser(name, help=text, description=text)
        if argv is not None and name != chosen:
            continue
        if target:  # a group may have nothing of its own
            module, _, function = target.partition(":")
            getattr(import_module(module), function or "build")(p)
        if inner:
            rest = None if argv is None else argv[argv.index(name) + 1 :]
            if rest is not None and p.rewrite is not None:
                rest = p.rewrite(rest)
            add_commands(p, inner[0], rest, dest=name.replace("-", "_") + "_command")
