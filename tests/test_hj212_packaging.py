"""What the HJ 212 layer needs from packaging: the code table is package data (a wheel
without it cannot build a single record), and ``cryptography`` is imported in one module
only (the project's one-library-one-module rule, tests/test_packaging.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_code_table_is_package_data():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["edge_agent.hj212"]
    folder = ROOT / "edge_agent" / "hj212"
    shipped = {path for pattern in patterns for path in folder.glob(pattern)}
    assert shipped == set(folder.glob("*.yaml")) == {folder / "codes.yaml"}


def test_cryptography_is_a_dependency_imported_only_by_sm4():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert any(dep.startswith("cryptography") for dep in project["project"]["dependencies"])
    pattern = re.compile(r"^\s*(import cryptography\b|from cryptography(\.| ))", re.MULTILINE)
    sources = list((ROOT / "edge_agent").rglob("*.py")) + list((ROOT / "drivers").rglob("*.py"))
    importers = sorted(str(p.relative_to(ROOT)) for p in sources if pattern.search(p.read_text()))
    assert importers == ["edge_agent/hj212/sm4.py"]


def test_the_protocol_layer_imports_no_outbox_forwarder_or_tool():
    """The HJ 212 layer is pure protocol for now: the uplink that joins it to the outbox
    comes later, and the runtime must stay free of tools (tests/test_runtime_imports.py)."""
    pattern = re.compile(r"^\s*(from|import) edge_agent\.(store|forward|tools)\b", re.MULTILINE)
    for path in (ROOT / "edge_agent" / "hj212").glob("*.py"):
        assert not pattern.search(path.read_text()), path.name
