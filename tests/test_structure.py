# SPDX-License-Identifier: MIT
"""The package's layering, read from its source: no import cycle of more than two modules
(two modules may import each other, as a parent and its child do, but no longer closed path
of imports exists), none at all in the demo, the demo on the public API only, and no module
reaching into another module's private attributes: the driving context is shared through
``_driver.Driver``'s public API, and the few private names that cross a module boundary are
listed below with their reason.

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

#: Private attributes allowed to cross a module boundary, each with its reason.
PRIVATE_ACCESS_ALLOWED: dict[str, str] = {
    "_driver": "the way into a session's Driver (every object tied to a session keeps it)",
    "_c": "Handle's live pointer (ValueError once closed): how a wrapper hands another "
          "wrapper's pointer to a C call, under the lock they share",
    "_lock": "Handle's lock, held around another wrapper's pointer use (a key's, say)",
    "_holds": "Handle: a child asking whether its parent still holds the pointer it was "
              "made for (compared, never dereferenced)",
    "_invalidate": "Handle: a borrowed wrapper invalidated when its callback returns",
    "_attach": "a session or channel installing its callback table (returns the C struct)",
    "_route_data": "a channel switching its callback table's data trampoline off while a C "
                   "sink takes the data",
    "_flush": "a session sending what its channels queued, after each driving call",
    "_session_gone": "a parent invalidating its children before libssh frees them",
    "_before_free": "a channel detaching its fd pipes before ssh_channel_free",
    "_close_locked": "a channel closing its fd pipes (under the lock they share)",
    "_detach": "a session freeing its event before ssh_free",
    "_add_pipe": "an fd pipe registering with its channel",
    "_forget_pipe": "an fd pipe leaving its channel",
    "_add_native_fd": "an fd pipe polled by the session's event with a C callback",
}


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


def _has_long_cycle(graph: dict[str, set[str]], component: list[str]) -> bool:
    """True if the strongly connected ``component`` holds a closed path through more than two
    modules.  It holds none exactly when every import inside it is mutual and the mutual
    pairs form a tree (a component of size > 2 made of pairs otherwise has a longer cycle)."""
    members = set(component)
    pairs = set()
    for node in component:
        for succ in graph[node] & members:
            if node not in graph[succ]:
                return True  # a one-way import inside a component closes a longer path
            pairs.add(frozenset((node, succ)))
    return len(pairs) != len(component) - 1


def test_the_cycle_checker_tells_pairs_from_longer_cycles() -> None:
    """Pairs chained into a tree pass; a triangle of pairs or a one-way ring does not."""
    chain = {"a": {"b"}, "b": {"a", "c"}, "c": {"b"}}
    triangle = {"a": {"b", "c"}, "b": {"a", "c"}, "c": {"a", "b"}}
    ring = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert [_has_long_cycle(g, c) for g in (chain, triangle, ring)
            for c in _cycles(g)] == [False, True, True]


def test_no_import_cycle_of_more_than_two_modules() -> None:
    graph = _graph()
    long = [cycle for cycle in _cycles(graph) if _has_long_cycle(graph, cycle)]
    assert not long, f"import cycles of more than two modules within: {long}"


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


def _private_names_defined(tree: ast.Module) -> set[str]:
    """Private attribute names a module's own code defines: methods, class attributes and
    ``self._x``/``cls._x`` assignments."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                targets = (item.targets if isinstance(item, ast.Assign) else
                           [item.target] if isinstance(item, ast.AnnAssign) else [])
                names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
              and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            names.add(node.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_no_module_reaches_into_another_modules_private_attributes() -> None:
    """A private name read on anything but ``self``/``cls`` must be one only this module
    defines (its own objects), or be on the list above."""
    trees = dict(_trees())
    defined = {module: _private_names_defined(tree) for module, tree in trees.items()}
    definers: dict[str, set[str]] = {}
    for module, names in defined.items():
        for name in names:
            definers.setdefault(name, set()).add(module)
    crossings = []
    for module, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or node.attr.startswith("__"):
                continue
            if not node.attr.startswith("_") or node.attr not in definers:
                continue  # public, or not one of ours (a stdlib or cffi private)
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls", "lib",
                                                                       "ffi", "super"):
                continue
            if definers[node.attr] == {module} or node.attr in PRIVATE_ACCESS_ALLOWED:
                continue
            crossings.append(f"{module}:{node.lineno}: .{node.attr}")
    assert not crossings, ("private attributes of another module's classes used:\n"
                           + "\n".join(crossings))
