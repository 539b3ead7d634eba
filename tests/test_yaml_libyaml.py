"""libyaml reads the configuration as the pure-Python loader does (issue 11, memory).

yamlsource composes with libyaml when PyYAML has it (a node tree half the size, less
left behind after the load) and falls back to the pure-Python loader for every file
libyaml refuses or that nests too deep. These tests read each YAML file of the project
and a set of hostile ones both ways and require the same located tree and the same
issues (lines, fields, messages), so no error message or line number can change with
the parser that happened to read the file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edge_agent.config import yamlsource
from edge_agent.config.limits import MAX_DEPTH
from edge_agent.config.yamlsource import MapNode, Node, ScalarNode, parse_yaml_bytes

ROOT = Path(__file__).resolve().parent.parent
PROJECT_YAML = sorted(path for pattern in ("tests/config_cases/*/*.yaml", "config/*.yaml",
                                           "drivers/**/*.yaml", "edge_agent/**/*.yaml")
                      for path in ROOT.glob(pattern))

HOSTILE = {
    "too_deep_flow": "a: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n",
    "too_deep_block": "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 5)) + "  x\n",
    "just_deep_enough": "a: " + "[" * (MAX_DEPTH - 2) + "1" + "]" * (MAX_DEPTH - 2) + "\n",
    "alias_to_itself": "a: &x [1, *x]\n",
    "nested_aliases": "a: &a [1, 1]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: [*c, *c, *c]\n",
    "syntax_error": "a: 1\n b: 2\nc: [1, 2\n",
    "tab_indent": "a:\n\tb: 1\n",
    "duplicate_keys": "a: 1\nb: 2\na: 3\n",
    "merge_key": "base: &b {x: 1}\nd:\n  <<: *b\n  '<<': quoted\n",
    "quoted_and_plain": "port: \"502\"\nid: 0042\non: no\nt: 12:30\ne: 1e3\nn: ~\ns: 'x'\n",
    "tags": "a: !!binary aGk=\nb: !!int x\nc: !custom 1\n",
    "not_a_mapping": "- 1\n- 2\n",
    "empty": "# only a comment\n",
    "two_documents": "a: 1\n---\nb: 2\n",
    "control_character": "a: \x07\n",
}


def _tree(node: Node | None) -> object:
    """A node as plain data, with every location and flag the validator uses."""
    if node is None:
        return None
    if isinstance(node, ScalarNode):
        return ("scalar", node.line, node.column, node.value, node.text, node.plain)
    if isinstance(node, MapNode):
        return ("map", node.line, node.column,
                [(e.key, e.line, _tree(e.value)) for e in node.entries])
    return ("seq", node.line, node.column, [_tree(item) for item in node.items])


def _read_both(data: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    with_libyaml = parse_yaml_bytes(data, "station.yaml")
    with monkeypatch.context() as patch:
        patch.setattr(yamlsource, "_CCoreLoader", None)  # as if PyYAML had no libyaml
        pure = parse_yaml_bytes(data, "station.yaml")
    return ((_tree(with_libyaml.root), with_libyaml.issues), (_tree(pure.root), pure.issues))


def test_libyaml_is_the_loader_here() -> None:
    """The figures in docs/performance.md assume it: PyYAML's wheels ship libyaml."""
    assert yaml.__with_libyaml__
    root = yamlsource._compose("a: [1, {b: c}]\n")
    assert type(root.start_mark).__module__ == "yaml._yaml"  # composed by libyaml


@pytest.mark.parametrize("path", PROJECT_YAML, ids=lambda p: str(p.relative_to(ROOT)))
def test_project_yaml_reads_the_same_with_libyaml(path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with_libyaml, pure = _read_both(path.read_bytes(), monkeypatch)
    assert with_libyaml == pure


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_yaml_gives_the_same_issues_with_libyaml(name: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with_libyaml, pure = _read_both(HOSTILE[name].encode(), monkeypatch)
    assert with_libyaml == pure


def test_project_yaml_files_were_found() -> None:
    """The comparison above covers the golden config cases and the shipped examples."""
    names = {str(path.relative_to(ROOT)) for path in PROJECT_YAML}
    assert len([n for n in names if n.startswith("tests/config_cases/")]) >= 70
    assert "config/station.example.yaml" in names
