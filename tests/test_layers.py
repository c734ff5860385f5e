"""Architecture rules (docs/design.md, Layers), read from the source with ``ast``: layers
import downwards only, no two modules import each other, no package reaches for another
package's private names, and no module grows past 450 lines.

Every import counts, including the ones inside functions (a lazy import is still a
dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers.files import REPO

PACKAGE = REPO / "fsggan"
MAX_LINES = 450

# Layers, top to bottom: what each may NOT import.
ABOVE_MODELS = ("fsggan.data", "fsggan.train", "fsggan.eval", "fsggan.cli", "fsggan.api", "fsggan.crops",
                "fsggan.quickstart")
FORBIDDEN = {
    "fsggan.device": ("fsggan.models", "fsggan.losses", "fsggan.checkpoint", "fsggan.images", *ABOVE_MODELS),
    "fsggan.datadir": ("fsggan.models", "fsggan.losses", "fsggan.checkpoint", "fsggan.images", "fsggan.config",
                       *ABOVE_MODELS),
    "fsggan.inputs": ("fsggan.models", "fsggan.losses", "fsggan.checkpoint", *ABOVE_MODELS),
    "fsggan.images": ("fsggan.models", "fsggan.losses", "fsggan.checkpoint", *ABOVE_MODELS),
    "fsggan.config": ("fsggan.models", "fsggan.losses", "fsggan.checkpoint", "fsggan.images", *ABOVE_MODELS),
    "fsggan.metrics": ("fsggan.models", "fsggan.losses", "fsggan.checkpoint", *ABOVE_MODELS),
    "fsggan.checkpoint": ABOVE_MODELS,
    "fsggan.models": ABOVE_MODELS,
    "fsggan.losses": ABOVE_MODELS,
    "fsggan.data": ("fsggan.train", "fsggan.eval", "fsggan.cli", "fsggan.api", "fsggan.quickstart"),
    "fsggan.detect": ("fsggan.train", "fsggan.eval", "fsggan.cli", "fsggan.api", "fsggan.quickstart"),
    "fsggan.eval": ("fsggan.train", "fsggan.cli", "fsggan.api", "fsggan.quickstart"),
    "fsggan.train": ("fsggan.eval", "fsggan.cli", "fsggan.api", "fsggan.quickstart"),
    "fsggan.api": ("fsggan.train", "fsggan.eval", "fsggan.cli", "fsggan.crops", "fsggan.quickstart"),
    "fsggan.crops": ("fsggan.train", "fsggan.eval", "fsggan.cli", "fsggan.quickstart"),
    "fsggan.photos": ("fsggan.train", "fsggan.eval", "fsggan.cli", "fsggan.api", "fsggan.quickstart"),
    "fsggan.quickstart": ("fsggan.cli",),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def imports(name: str) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import in module ``name``.
    ``from pkg import sub`` where ``sub`` is a module counts as importing ``pkg.sub``."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((sub, None, node.lineno) if sub in MODULES else (base, a.name, node.lineno))
    return [(m, n, line) for m, n, line in out if within(m, "fsggan")]


def area(name: str) -> str:
    """The package a module belongs to (fsggan.data.build -> fsggan.data; fsggan.api itself)."""
    return ".".join(name.split(".")[:2])


def test_layers_import_downwards_only():
    bad = []
    for name in MODULES:
        for layer, forbidden in FORBIDDEN.items():
            if within(name, layer):
                bad += [f"{name}:{line} imports {target}" for target, _, line in imports(name)
                        if any(within(target, f) for f in forbidden)]
    assert not bad, "\n".join(sorted(set(bad)))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    modules = {name: {t for t, _, _ in imports(name) if t in MODULES and t != name} for name in MODULES}
    assert not cycles(modules), f"modules that import each other: {cycles(modules)}"
    packages: dict[str, set[str]] = {}
    for name, targets in modules.items():
        packages.setdefault(area(name), set()).update(area(t) for t in targets if area(t) != area(name))
    assert not cycles(packages), f"packages that import each other: {cycles(packages)}"


def test_no_private_names_across_packages():
    bad = []
    for name in MODULES:
        for target, imported, line in imports(name):
            last = imported or target.rpartition(".")[2]
            if last.startswith("_") and not last.startswith("__") and area(target) != area(name):
                bad.append(f"{name}:{line} imports {target}{'.' + imported if imported else ''}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size(name):
    lines = MODULES[name].read_text().count("\n")
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines (at most {MAX_LINES}): split it by topic"


MAX_FUNCTION_LINES = 60  # one screen (docs/design.md, Layers)
# The two training loops read top to bottom in one function each (setup, then the loop with
# the step, logging, sample grids, validation and checkpoints under one-line comments), so
# that following an iteration takes one file: they alone may be longer.
LONG_FUNCTIONS = {("fsggan.train.vae", "train_vae"), ("fsggan.train.gan", "train_gan")}


def test_functions_fit_one_screen():
    long, exempt = [], set()
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if (name, node.name) in LONG_FUNCTIONS:
                    exempt.add((name, node.name))
                elif n > MAX_FUNCTION_LINES:
                    long.append(f"{path}:{node.lineno} {node.name} has {n} lines")
    assert exempt == LONG_FUNCTIONS, f"exempt functions that no longer exist: {LONG_FUNCTIONS - exempt}"
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them):\n" + "\n".join(long)


def test_no_test_module_imports_another():
    """Test modules share fixtures through tests/conftest.py and helpers through tests/helpers/,
    never by importing each other (or conftest, which pytest loads by itself)."""
    offenders = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}:{node.lineno} imports {n}" for n in names
                          if n.split(".")[0].startswith("test_") or n.split(".")[0] == "conftest"]
    assert not offenders, offenders
