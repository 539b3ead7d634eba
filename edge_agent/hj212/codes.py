"""The pollutant code table: which HJ 212 code a channel is sent as, with its names, the
unit the platform expects and the standards it belongs to.

The agent ships ``codes.yaml`` (chemical-park VOCs and toxic gases); a station adds codes
of its own (legacy or vendor codes, GC species missing from the table) in the same shape,
and ``merge`` refuses a code given twice, naming both places. Errors are ``ConfigIssue``s
with file, line and field path, like every other configuration error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from edge_agent.config.errors import ConfigError, ConfigIssue
from edge_agent.config.schema import PollutantCode  # a station file's codes: entry too
from edge_agent.config.yamlsource import (
    MapNode,
    Node,
    ScalarNode,
    SeqNode,
    YamlDocument,
    kind,
    parse_yaml_bytes,
    read_yaml_file,
)

SHIPPED = "codes.yaml"
VERSIONS = (2017, 2025)
# Real codes: a25002, w01018, LA, B02, 011 (legacy), 100000, SB1, v10101.
_CODE = re.compile(r"[A-Za-z0-9]{2,12}")
_FIELDS = ("zh", "en", "unit", "versions", "decimals")


@dataclass(frozen=True)
class CodeTable(Mapping[str, PollutantCode]):
    """Codes by code; a read-only mapping."""

    codes: Mapping[str, PollutantCode]

    def __getitem__(self, code: str) -> PollutantCode:
        return self.codes[code]

    def __iter__(self) -> Iterator[str]:
        return iter(self.codes)

    def __len__(self) -> int:
        return len(self.codes)


def shipped_table() -> CodeTable:
    """The table shipped in the package (``codes.yaml``)."""
    data = resources.files("edge_agent.hj212").joinpath(SHIPPED).read_bytes()
    name = f"edge_agent/hj212/{SHIPPED}"
    return CodeTable({c.code: c for c in codes_in(parse_yaml_bytes(data, name), name)})


def read_codes(path: Path, file: str | None = None) -> list[PollutantCode]:
    """The codes of a station's own file (top level ``codes:``). ConfigError lists every
    problem."""
    name = file or str(path)
    return codes_in(read_yaml_file(path, name), name)


def codes_in(document: YamlDocument, file: str, section: str = "codes") -> list[PollutantCode]:
    """The codes under ``section`` of a read document; ConfigError lists every problem."""
    issues = list(document.issues)
    found: list[PollutantCode] = []
    root = document.root
    entry = root.get(section) if root is not None else None
    if root is not None and entry is None:
        issues.append(ConfigIssue(file, None, section, "missing: expected a mapping of codes"))
    elif entry is not None and not isinstance(entry.value, MapNode):
        issues.append(ConfigIssue(file, entry.line, section,
                                  f"expected a mapping of codes, found {kind(entry.value)}"))
    elif entry is not None:
        assert isinstance(entry.value, MapNode)
        seen: dict[str, int] = {}
        for code_entry in entry.value.entries:
            path = f"{section}.{code_entry.key}"
            if code_entry.key in seen:
                issues.append(ConfigIssue(file, code_entry.line, path, "code given twice "
                                          f"(first at line {seen[code_entry.key]})"))
                continue
            seen[code_entry.key] = code_entry.line
            code = _one_code(code_entry.key, code_entry.line, code_entry.value, file, path,
                             issues)
            if code is not None:
                found.append(code)
    if issues:
        raise ConfigError(issues)
    return found


def _one_code(code: str, line: int, node: Node, file: str, path: str,
              issues: list[ConfigIssue]) -> PollutantCode | None:
    before = len(issues)
    if not _CODE.fullmatch(code):
        issues.append(ConfigIssue(file, line, path,
                                  "a code is 2 to 12 letters and digits (like a25002)"))
    if not isinstance(node, MapNode):
        issues.append(ConfigIssue(file, line, path, "expected {zh: …, en: …, unit: …, "
                                  f"versions: [2017, 2025]}}, found {kind(node)}"))
        return None
    for entry in node.entries:
        if entry.key not in _FIELDS:
            issues.append(ConfigIssue(file, entry.line, f"{path}.{entry.key}",
                                      f"unknown field (known: {', '.join(_FIELDS)}); a name "
                                      "with a comma must be in quotes"))
    texts = {}
    for name in ("zh", "en", "unit"):
        entry = node.get(name)
        value = entry.value if entry else None
        if not (isinstance(value, ScalarNode) and isinstance(value.value, str) and value.value):
            issues.append(ConfigIssue(file, entry.line if entry else line, f"{path}.{name}",
                                      "missing or not text: expected e.g. "
                                      + {"zh": "苯", "en": "benzene", "unit": "mg/m3"}[name]))
        else:
            texts[name] = value.value
    versions = _versions(node, line, file, path, issues)
    decimals = None
    entry = node.get("decimals")
    if entry is not None:
        value = entry.value
        if not (isinstance(value, ScalarNode) and isinstance(value.value, int)
                and not isinstance(value.value, bool) and 0 <= value.value <= 9):
            issues.append(ConfigIssue(file, entry.line, f"{path}.decimals",
                                      "expected a whole number 0 to 9"))
        else:
            decimals = value.value
    if len(issues) > before:
        return None
    return PollutantCode(code, texts["zh"], texts["en"], texts["unit"], versions, decimals,
                         f"{file}:{line}")


def _versions(node: MapNode, line: int, file: str, path: str,
              issues: list[ConfigIssue]) -> tuple[int, ...]:
    entry = node.get("versions")
    expected = "expected a list of standards from 2017, 2025"
    if entry is None or not isinstance(entry.value, SeqNode) or not entry.value.items:
        issues.append(ConfigIssue(file, entry.line if entry else line, f"{path}.versions",
                                  f"missing or not a list: {expected}"))
        return ()
    found = []
    for item in entry.value.items:
        if not (isinstance(item, ScalarNode) and item.value in VERSIONS
                and not isinstance(item.value, bool)):
            shown = item.text if isinstance(item, ScalarNode) else kind(item)
            issues.append(ConfigIssue(file, item.line, f"{path}.versions",
                                      f"{shown!s}: {expected}"))
        else:
            found.append(int(item.value))  # type: ignore[arg-type]
    return tuple(found)


def merge(table: CodeTable, additions: Sequence[PollutantCode]) -> CodeTable:
    """``table`` with a station's ``additions``. A code already in the table (or added
    twice) raises ConfigError naming both places."""
    merged = dict(table.codes)
    issues = []
    for code in additions:
        if code.code in merged:
            first = merged[code.code]
            file, _, line = code.where.rpartition(":")
            issues.append(ConfigIssue(
                file, int(line) if line.isdigit() else None, f"codes.{code.code}",
                f"{code.code} is already defined at {first.where} ({first.name_en}); "
                "use that one or a code of your own"))
            continue
        merged[code.code] = code
    if issues:
        raise ConfigError(issues)
    return CodeTable(merged)
