"""The layers of the project, read from the source (ast), not from what happens to be imported at run time.

DESIGN "Layout": ``engine`` never imports ``app`` or ``trainer``; ``trainer`` never imports ``app``; no
import cycles between the project's modules (imports inside functions count: a cycle dodged by a late
import is still a cycle); and no module uses another module's private (``_x``) names.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "trainer", "app")
LAYERS = {"engine": set(), "trainer": {"engine"}, "app": {"engine", "trainer"}}  # package -> what it may import


def project_modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the three packages and of launch.py."""
    mods = {"launch": ROOT / "launch.py"}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _owner(name: str, mods: dict[str, Path]) -> str | None:
    """The project module a dotted import name lives in (its longest prefix that is a module), or None."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, mods: dict[str, Path]) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) of every import statement in ``module``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(t, None, node.lineno) for a in node.names if (t := _owner(a.name, mods))]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                head = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(head + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in mods:  # `from engine import pipeline`: the submodule itself
                    found.append((sub, None, node.lineno))
                elif target := _owner(base, mods):
                    found.append((target, alias.name, node.lineno))
    return found


def private_uses(module: str, path: Path, mods: dict[str, Path]) -> list[str]:
    """``module._name`` attribute uses where ``module`` is another project module imported here."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname: a.name for a in node.names if a.asname and a.name in mods}
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                full = f"{node.module}.{a.name}" if node.module and not node.level else None
                if full in mods:
                    aliases[a.asname or a.name] = full
    return [
        f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
        and aliases[node.value.id] != module
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    ]


def _graph() -> tuple[dict[str, Path], dict[str, set[str]]]:
    mods = project_modules()
    edges = {m: {t for t, _, _ in imports_of(m, p, mods) if t != m} for m, p in mods.items()}
    return mods, edges


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (the import cycles)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_cycles_and_private_names(tmp_path):
    """The graph code finds a planted cycle, and a private import (so the tests below can fail)."""
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []
    (tmp_path / "m.py").write_text("from engine.pipeline import _x\nimport engine.media as em\nem._y()\n")
    mods = project_modules() | {"m": tmp_path / "m.py"}
    assert ("engine.pipeline", "_x", 1) in imports_of("m", tmp_path / "m.py", mods)
    assert private_uses("m", tmp_path / "m.py", mods) == ["m:3 uses engine.media._y"]


def test_no_import_cycles():
    _, edges = _graph()
    assert strongly_connected(edges) == []


def test_layers_import_only_downwards():
    _, edges = _graph()
    bad = [
        f"{m} imports {t}"
        for m, targets in edges.items()
        for t in targets
        if m.split(".")[0] in LAYERS
        and t.split(".")[0] != m.split(".")[0]
        and t.split(".")[0] not in LAYERS[m.split(".")[0]]
    ]
    assert bad == []


def test_no_private_names_from_other_modules():
    mods = project_modules()
    bad = [
        f"{m}:{line} imports {t}.{name}"
        for m, p in mods.items()
        for t, name, line in imports_of(m, p, mods)
        if name and name.startswith("_") and not name.startswith("__") and t != m
    ]
    bad += [use for m, p in mods.items() for use in private_uses(m, p, mods)]
    assert bad == []


def test_module_names_have_one_meaning():
    """Two modules of the same file name mean two things to a reader. Allowed: package plumbing
    (``__init__``), a command's module in a ``commands`` package named after its command, and the
    modules named after one of the four perceptual dimensions (a reward head, a family of metrics)."""
    dimensions = {"semantic", "temporal", "aesthetic", "spatial"}
    names: dict[str, list[str]] = {}
    for m, p in project_modules().items():
        if p.stem != "__init__" and ".commands." not in m and p.stem not in dimensions:
            names.setdefault(p.stem, []).append(m)
    assert {k: v for k, v in names.items() if len(v) > 1} == {}
