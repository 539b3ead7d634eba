"""config/reference.yaml checked against the declarations (edge_agent/config/declare.py).

The reference stays hand-written, because its comments are what a technician reads
(what a setting is for, its units, where it matters); it is checked, not generated.
From the declarations this test derives every setting of every section and fails when
a declared key is not mentioned in its part of the file, or when a value the file shows
for a setting with a default (not marked REQUIRED) is not that default. The ``text:``
block, commented out because the reference's device is a Modbus one, is read with one
level of ``#`` removed; its ``# #`` lines are alternatives, not defaults.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterator
from dataclasses import MISSING
from pathlib import Path

import pytest
from edge_agent_drivers.modbus.settings import Channel, ModbusSettings
from edge_agent_drivers.serialtext.config_text import TERMINATOR_WORDS
from edge_agent_drivers.serialtext.protocol.escapes import to_bytes
from edge_agent_drivers.serialtext.protocol.settings import TextChannel, TextSettings

from edge_agent.config.alarm_settings import (
    AlarmAction,
    AlarmSettings,
    InstrumentSetting,
    LimitSetting,
)
from edge_agent.config.declare import Setting, declared, default_of, section_type
from edge_agent.config.schema import (
    Device,
    DevicePolling,
    HealthConfig,
    MqttConfig,
    PollingPolicy,
    SerialLink,
    StationConfig,
    StoreConfig,
    TcpLink,
)
from edge_agent.config.yamlsource import MapNode, Node, ScalarNode, SeqNode, parse_yaml_bytes

REFERENCE = Path(__file__).resolve().parent.parent / "config" / "reference.yaml"

# Where each declared section is shown: a path in the file, its top-level part (the
# region its keys must be mentioned in), the dataclass. Nested sections (read:, tls:,
# framing:, ...) are found from the declarations.
ROOTS: tuple[tuple[tuple[str | int, ...], type], ...] = (
    (("station",), StationConfig),
    (("links", "plc-gw"), TcpLink),
    (("links", "rs485-1"), SerialLink),
    (("devices", 0), Device),
    (("devices", 0), DevicePolling),
    (("devices", 0), ModbusSettings),
    (("devices", 0, "channels", 0), Channel),
    (("devices", 0, "text"), TextSettings),
    (("devices", 0, "text", "channels", 0), TextChannel),
    (("polling",), PollingPolicy),
    (("store",), StoreConfig),
    (("mqtt",), MqttConfig),
    (("health",), HealthConfig),
    (("alarms",), AlarmSettings),
    (("alarms", "actions", 0), AlarmAction),
    (("devices", 0, "alarms", "benzene", "high"), LimitSetting),
    (("devices", 0), InstrumentSetting),  # commented out: checked for its keys only
)


def uncommented_text_block(text: str) -> str:
    """The file with its ``# text:`` block written as YAML (one ``#`` level removed)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"\s*# text:", line))
    indent = lines[start].index("#")
    out = list(lines)
    for i in range(start, len(lines)):
        line = lines[i]
        if not line.strip():
            break
        if len(line) - len(line.lstrip()) != indent or not line.lstrip().startswith("#"):
            break
        rest = line[indent + 1:]
        out[i] = " " * indent + (rest[1:] if rest.startswith(" ") else rest)
    return "\n".join(out) + "\n"


def _node(root: MapNode, path: tuple[str | int, ...]) -> Node | None:
    node: Node | None = root
    for step in path:
        if isinstance(step, int):
            node = node.items[step] if isinstance(node, SeqNode) and len(node.items) > step \
                else None
        else:
            entry = node.get(step) if isinstance(node, MapNode) else None
            node = entry.value if entry is not None else None
        if node is None:
            return None
    return node


def _fields(cls: type) -> Iterator[tuple[str, Setting]]:
    """Declared fields, an inline dataclass's fields at its place."""
    for name, meta in declared(cls).items():
        if meta.kind == "inline" and meta.of is not None:
            for inner, inner_meta in _fields(meta.of):
                yield inner, dataclasses.replace(inner_meta, of=meta.of)
        else:
            yield name, meta


def _owner(cls: type, meta: Setting) -> type:
    return meta.of if meta.of is not None and meta.kind != "inline" else cls


def _same(meta: Setting, node: ScalarNode, default: object) -> bool:
    """Whether the value written is the declared default, as the loader would read it."""
    value = node.value
    if value is None:  # null: "not set", so the default
        return True
    if meta.kind == "choice":
        choices = {str(word).lower(): item for word, item in (meta.choices or {}).items()}
        return choices.get(node.text.lower(), node.text) == default
    if meta.kind == "bytes":
        words = TERMINATOR_WORDS if meta.key == "terminator" else {}
        written = words.get(node.text.lower(), None)
        return (written if written is not None else to_bytes(node.text)) == default
    if meta.kind in ("integer", "number", "limit"):
        return not isinstance(value, bool) and value == default
    return value == default or str(value) == str(default)


def problems(text: str) -> list[str]:
    """Every declared key not mentioned in its part of ``text``, and every shown value
    of a setting with a default that differs from it ('line N: path: ...')."""
    found: list[str] = []
    document = parse_yaml_bytes(uncommented_text_block(text).encode(), "reference.yaml")
    assert document.root is not None and not document.issues, document.issues
    regions = _regions(text)
    for path, cls in ROOTS:
        found += _check(document.root, text, regions[str(path[0])], path, cls)
    return found


def _regions(text: str) -> dict[str, str]:
    """Each top-level part of the file: its key -> its lines."""
    parts = re.split(r"(?m)^(?=[a-z_]+:)", text)
    return {part.split(":", 1)[0]: part for part in parts if re.match(r"[a-z_]+:", part)}


def _check(root: MapNode, text: str, region: str, path: tuple[str | int, ...],
           cls: type) -> list[str]:
    found: list[str] = []
    node = _node(root, path)
    where = ".".join(str(step) for step in path)
    for name, meta in _fields(cls):
        owner = _owner(cls, meta)
        for key in meta.keys:
            if not re.search(rf"(?m)^[ #]*(- )?{re.escape(key)}:", region):
                found.append(f"{where}.{key}: not in the reference")
        entry = node.get(meta.key) if isinstance(node, MapNode) else None
        if meta.kind == "section":
            inner = section_type(owner, name)
            if inner is not None:
                found += _check(root, text, region, (*path, meta.key), inner)
            continue
        default = default_of(owner, name)
        if entry is None or default is MISSING or meta.kind in ("custom", "secret") \
                or not isinstance(entry.value, ScalarNode):
            continue
        line = text.splitlines()[entry.line - 1]
        if "REQUIRED" in line:
            continue
        if not _same(meta, entry.value, default):
            shown = default.value if isinstance(default, enum.Enum) else default
            found.append(f"line {entry.line}: {where}.{meta.key}: shows "
                         f"{entry.value.text!r}, declared default {shown!r}")
    return found


def test_the_reference_mentions_every_declared_setting_with_its_declared_default() -> None:
    assert problems(REFERENCE.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(("written", "changed", "expected"), [
    ("  keepalive_s: 30 ", "  keepalive_s: 45 ",
     "mqtt.keepalive_s: shows '45', declared default 30"),
    ("    #     max_bytes: 4096", "    #     max_bytes: 512",
     "devices.0.text.framing.max_bytes: shows '512', declared default 4096"),
    ("    word_order: ABCD ", "    word_order: CDAB ",
     "devices.0.word_order: shows 'CDAB', declared default 'ABCD'"),
    ("  retry_wait_s: 0.2 ", "  retry_wait: 0.2 ", "polling.retry_wait_s: not in the reference"),
    ("    #   example: null", "    #   sample: null",
     "devices.0.text.example: not in the reference"),
])
def test_a_wrong_default_or_a_missing_setting_is_found(written: str, changed: str,
                                                       expected: str) -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    assert written in text
    found = problems(text.replace(written, changed, 1))
    assert any(expected in problem for problem in found), found
