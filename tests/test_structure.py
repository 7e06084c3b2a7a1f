# SPDX-License-Identifier: MIT
"""The demo's layering, read from its source: no import cycle at all in the demo, and the
demo on the public API only.  (The wrapper layer's own rule, no cycle of more than two
modules, joins this file with issue 12's driver.)

Every import statement counts: module level, inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.checkout

PACKAGE = "pylibssh_server"
SOURCE = Path(ROOT) / PACKAGE

def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _trees() -> Iterator[tuple[str, ast.Module]]:
    for name, path in MODULES.items():
        yield name, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _package_of(module: str) -> str:
    path = MODULES[module]
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _imports(module: str, tree: ast.Module) -> Iterator[tuple[str, str | None]]:
    """(imported module, imported name or None) for every import statement of ``module``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = _package_of(module).split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                yield base, alias.name


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for module, tree in _trees():
        for target, name in _imports(module, tree):
            submodule = f"{target}.{name}" if name else None
            if submodule in MODULES:
                graph[module].add(submodule)  # `from package import module`
            elif target in MODULES:
                graph[module].add(target)
        graph[module].discard(module)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_sees_imports() -> None:
    graph = _graph()
    # Known edges of every kind: module level, `from package import module`, relative-free.
    assert f"{PACKAGE}.bind" in graph[PACKAGE]
    assert f"{PACKAGE}.demo.server" in graph[f"{PACKAGE}.demo"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_demo_has_no_import_cycle() -> None:
    graph = _graph()
    demo = {name: {t for t in targets if t.startswith(f"{PACKAGE}.demo")}
            for name, targets in graph.items() if name.startswith(f"{PACKAGE}.demo")}
    assert not _cycles(demo), f"import cycles in the demo: {_cycles(demo)}"


def test_demo_uses_the_public_api_only() -> None:
    private = []
    for module, tree in _trees():
        if not module.startswith(f"{PACKAGE}.demo"):
            continue
        for target, name in _imports(module, tree):
            if not target.startswith(PACKAGE) or target.startswith(f"{PACKAGE}.demo"):
                continue
            if any(part.startswith("_") for part in target.split(".")) or (
                    name is not None and name.startswith("_")):
                private.append(f"{module}: from {target} import {name}")
    assert not private, "the demo imports private parts of the package:\n" + "\n".join(private)
