"""No import cycles among the agent's modules (edge_agent.* and edge_agent_drivers.*).

Why: a cycle means a module can be seen half-initialised depending on which side is
imported first, and it hides the layering (a base module that knows its subclasses, the
health endpoint that knew the whole ``Agent``). Read statically, without importing
anything: every ``import`` and ``from ... import`` in a module counts, at module level,
inside functions and under ``if TYPE_CHECKING:`` alike, since each of them is a
dependency a reader has to follow. ``importlib.import_module("...")`` with a string (the
toolbox reaching a tool by name) is a plug-in point, not an edge.

An edge goes to the module named; ``from package import name`` goes to
``package.name`` when that is a module, to ``package`` otherwise.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from support import sources

REPO = Path(__file__).resolve().parent.parent
#: Source folder -> the package it installs as (pyproject.toml, [tool.setuptools]).
ROOTS = {"edge_agent": REPO / "edge_agent", "edge_agent_drivers": REPO / "drivers"}

#: Cycles that are known and being removed, each as the exact set of its modules. None
#: left: a new cycle is a bug to fix, not an entry to add.
ALLOWED: frozenset[frozenset[str]] = frozenset()


def module_files() -> dict[str, Path]:
    """Every module of both packages by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for package, folder in ROOTS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name ``from`` imports from (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base[:len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """``name`` or its longest prefix that is one of ``modules``."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return None


def imports_of(module: str, modules: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import in ``module``'s source."""
    path = modules[module]
    for node in sources.nodes(path, *sources.IMPORTS):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, path.name == "__init__.py", node)
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules
                       else source for alias in node.names]
        else:
            continue
        for target in targets:
            known = _known(target, modules)
            if known is not None and known != module:
                yield known, node.lineno


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: first line importing it}."""
    modules = module_files()
    graph: dict[str, dict[str, int]] = {}
    for module in modules:
        edges: dict[str, int] = {}
        for target, line in imports_of(module, modules):
            edges.setdefault(target, line)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:  # recursion depth is bounded by the module count
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def describe(component: frozenset[str], graph: dict[str, dict[str, int]]) -> str:
    """Every import edge inside ``component``, with file and line, to say where to cut."""
    files = module_files()
    lines = [f"  {source} -> {target}  ({files[source].relative_to(REPO)}:{line})"
             for source in sorted(component)
             for target, line in sorted(graph[source].items()) if target in component]
    return "import cycle among " + ", ".join(sorted(component)) + ":\n" + "\n".join(lines)


def test_no_import_cycles_among_agent_and_driver_modules() -> None:
    graph = import_graph()
    found = cycles(graph)
    unexpected = [describe(c, graph) for c in found if c not in ALLOWED]
    assert not unexpected, "\n\n".join(unexpected)
    stale = [sorted(c) for c in ALLOWED if c not in found]
    assert not stale, f"allowed cycles that no longer exist, delete them from ALLOWED: {stale}"


def test_health_endpoint_reads_a_view_not_the_agent() -> None:
    graph = import_graph()
    health = [m for m in graph if m == "edge_agent.health" or m.startswith("edge_agent.health.")]
    assert health, "no edge_agent.health modules found"
    for module in health:
        assert "edge_agent.agent" not in graph[module], module


def test_graph_finds_a_cycle_and_names_its_lines() -> None:
    """The finder itself: a two-module cycle and a longer one are found, a chain is not."""
    graph = {"a": {"b": 3}, "b": {"a": 7}, "c": {"a": 1}, "d": {"e": 2}, "e": {"f": 5},
             "f": {"d": 9}}
    assert sorted(sorted(c) for c in cycles(graph)) == [["a", "b"], ["d", "e", "f"]]


def test_relative_and_function_level_imports_are_edges() -> None:
    """Resolution of the forms used in this repository, on the real module list."""
    modules = module_files()
    tree = ast.parse("from . import metrics\nfrom .snapshot import Snapshot\n")
    relative = [node for node in tree.body if isinstance(node, ast.ImportFrom)]
    assert [_absolute("edge_agent.health.server", False, node) for node in relative] == \
        ["edge_agent.health", "edge_agent.health.snapshot"]
    assert _absolute("edge_agent.health", True, relative[0]) == "edge_agent.health"
    assert _known("edge_agent.health.snapshot.Snapshot", modules) == "edge_agent.health.snapshot"
    # load_driver imports the registry inside the function: that is an edge too
    assert "edge_agent_drivers.registry" in dict(imports_of("edge_agent.driver", modules))
