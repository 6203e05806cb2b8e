"""Command-line options made from a config dataclass (or a function's keyword parameters), so a flag's default
and help are written once, where the field is.

    add_fields(parser, GrpoConfig, "iterations", "group", steps={"flags": ("--sample-steps",)})
    cfg = GrpoConfig(**fields_of(args, GrpoConfig))

An option's destination is the field's name; its spelling is ``--field-name`` unless ``flags`` says otherwise
(a renamed flag lists its old spelling too). Its default is the field's default, its help the field's
``metadata["help"]`` or else the ``# comment`` after the field in the class source (with the comment lines
that continue it). Its type follows the annotation (int, float, str, ``X | None``, ``tuple[int, ...]`` as
"24,48,64"; a bool is a switch: ``--x`` when the default is False, ``--x/--no-x`` when it is True) unless the
keywords give ``type`` or ``action``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable
from functools import cache

from engine.commands.common import int_list

MISSING = inspect.Parameter.empty


def add_fields(parser, source: type | Callable, *names: str, prefix: str = "", **options: dict) -> None:
    """Add an option to ``parser`` for each of ``names`` (fields of the dataclass ``source``, or keyword
    parameters of the function ``source``); ``options[name]`` holds argparse keywords that differ (and
    ``flags``: the option strings). ``prefix`` goes before each destination and default spelling
    (``prefix="bench_"``: field ``clips`` is ``--bench-clips``, ``args.bench_clips``)."""
    for name in names:
        kw = dict(options.get(name, {}))
        flags = kw.pop("flags", None) or ("--" + (prefix + name).replace("_", "-"),)
        default = kw.pop("default", field_default(source, name))
        kw.setdefault("help", field_help(source, name))
        if "type" not in kw and "action" not in kw:
            kw |= _kind(_annotation(source, name), default)
        if kw.get("help") and kw.get("action") is not argparse.BooleanOptionalAction and _shown(default):
            kw["help"] += " (default: %(default)s)"
        parser.add_argument(*flags, dest=prefix + name, default=default, **kw)


def fields_of(args: argparse.Namespace, source: type | Callable, prefix: str = "") -> dict:
    """The values in ``args`` of the fields (or keyword parameters) of ``source`` that the command line set."""
    return {name: getattr(args, prefix + name) for name in _names(source) if hasattr(args, prefix + name)}


def field_help(source: type | Callable, name: str) -> str | None:
    """The help of field ``name``: its metadata["help"], or its trailing comment in the defining class."""
    if dataclasses.is_dataclass(source):
        meta = {f.name: f for f in dataclasses.fields(source)}[name].metadata
        if "help" in meta:
            return meta["help"]
        for cls in source.__mro__:
            text = _comments(cls).get(name)
            if text:
                return text.replace("%", "%%")
    return None


# ------------------------------------------------------------------------------------------------ parts


def _names(source) -> list[str]:
    if dataclasses.is_dataclass(source):
        return [f.name for f in dataclasses.fields(source)]
    return list(inspect.signature(source).parameters)


def field_default(source: type | Callable, name: str):
    """The default of field (or keyword parameter) ``name`` of ``source``; None where it has none."""
    if dataclasses.is_dataclass(source):
        f = {f.name: f for f in dataclasses.fields(source)}[name]
        if f.default is not dataclasses.MISSING:
            return f.default
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return None
    default = inspect.signature(source).parameters[name].default
    return None if default is MISSING else default


def _annotation(source, name: str):
    try:
        return typing.get_type_hints(source).get(name)
    except NameError:  # an annotation that names something only imported for type checking
        return None


def _kind(annotation, default) -> dict:
    """argparse keywords for a field of type ``annotation``."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in args if a is not type(None))
        args = typing.get_args(annotation)
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction if default else "store_true"}
    if typing.get_origin(annotation) is tuple and args and args[0] is int:
        return {"type": int_list}
    if annotation in (int, float, str):
        return {"type": annotation}
    return {}


def _shown(default) -> bool:
    """Whether help should name the default (not for switches or "not set")."""
    return default is not None and not isinstance(default, bool)


@cache
def _comments(cls: type) -> dict[str, str]:
    """Field name -> its ``# comment`` in the body of ``cls`` (continuation comment lines joined)."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    notes: dict[int, str] = {}  # line -> comment text
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            notes[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = src.splitlines()
    body = ast.parse(src).body[0].body
    out = {}
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        line = node.end_lineno
        parts = [notes[line]] if line in notes else []
        while parts and line < len(lines) and lines[line].strip().startswith("#"):
            line += 1  # a comment-only line right below continues the field's comment
            parts.append(notes[line])
        if parts:
            out[node.target.id] = " ".join(parts)
    return out
