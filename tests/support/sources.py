"""The agent's own source files, each read and parsed once per test process.

Several tests read the whole tree statically (import direction, import cycles, which
module imports a library). Parsing and walking its ~200 files takes about 1.3 s, and those
tests did it six times over; the trees are only read, never changed, so one parse and one
walk per kind of node are shared.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def text(path: Path) -> str:
    """The source of ``path`` (an absolute path inside the repository)."""
    return path.read_text(encoding="utf-8")


@functools.cache
def parsed(path: Path) -> ast.Module:
    """The syntax tree of ``path``; shared, so a caller must not change it."""
    return ast.parse(text(path), filename=str(path))


@functools.cache
def nodes(path: Path, *kinds: type[ast.AST]) -> tuple[ast.AST, ...]:
    """The nodes of ``path``'s tree that are one of ``kinds``, in ``ast.walk`` order
    (walking a tree costs more than parsing it)."""
    return tuple(node for node in ast.walk(parsed(path)) if isinstance(node, kinds))


IMPORTS = (ast.Import, ast.ImportFrom)


def our_modules() -> list[Path]:
    """Every module of both packages: edge_agent/ (tools included) and drivers/."""
    return sorted([*(ROOT / "edge_agent").rglob("*.py"), *(ROOT / "drivers").rglob("*.py")])
