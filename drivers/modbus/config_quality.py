"""``quality_bits`` and ``quality_values`` of a status channel: conditions -> quality.

::

    quality_bits:
      0: {quality: BAD, reason: fault}
      3: {quality: SUSPECT, reason: calibrating, channels: [benzene, toluene]}
    quality_values:
      2: {quality: SUSPECT, reason: warmup}

Which channels a rule names is checked once the whole device is known (see
validate_devices.check_channel_references).
"""

from __future__ import annotations

import re

from edge_agent_drivers.modbus.settings import DataType, QualityRule, article

from edge_agent.config.declare import allowed_keys, read_declared
from edge_agent.config.fields import Section, as_section
from edge_agent.config.yamlsource import MapNode, ScalarNode, SeqNode, kind

# declared on QualityRule (settings.py)
RULE_KEYS = allowed_keys(QualityRule)
_WIDTH = {DataType.BOOL: 1, DataType.INT16: 16, DataType.UINT16: 16, DataType.BCD16: 16,
          DataType.INT32: 32, DataType.UINT32: 32, DataType.BCD32: 32}
_REASON = re.compile(r"^[a-z][a-z0-9_]*$")

Rules = tuple[tuple[int, QualityRule], ...]


def read_quality_rules(sec: Section, key: str, data_type: DataType, default: Rules) -> Rules:
    """The rules under ``key``; only integer (and bool) channels can be status words."""
    entry = sec.node.get(key)
    if entry is None:
        return default
    if data_type not in _WIDTH:
        sec.report(key, f"a status word must be an integer or bool channel, this one is "
                        f"{data_type.value}", at_key=True)
        return default
    if not isinstance(entry.value, MapNode) or not entry.value.entries:
        sec.report(key, f"expected entries such as '3: {{quality: SUSPECT, reason: "
                        f"calibrating}}', found {kind(entry.value)}")
        return default
    bits = key == "quality_bits"
    rules = []
    for item in entry.value.entries:
        number = _condition(sec, key, item.key, item.line, bits, data_type)
        rule_sec = as_section(sec.ck, item.value, f"{sec.path_of(key)}.{item.key}", item.line,
                              RULE_KEYS)
        rule = _read_rule(rule_sec) if rule_sec is not None else None
        if number is not None and rule is not None:
            rules.append((number, rule))
    return tuple(rules)


def _condition(sec: Section, key: str, text: str, line: int, bits: bool,
               data_type: DataType) -> int | None:
    try:
        number = int(text, 0)
    except ValueError:
        number = None
    width = _WIDTH[data_type]
    if bits:
        if number is None or not 0 <= number < width:
            sec.ck.report(line, f"{sec.path_of(key)}.{text}",
                          f"expected a bit number 0..{width - 1} of this {data_type.value}, "
                          f"found '{text}'")
            return None
    elif number is None:
        sec.ck.report(line, f"{sec.path_of(key)}.{text}",
                      f"expected a whole value of the status word (e.g. 2 or 0x10), found "
                      f"'{text}'")
    else:
        limits = data_type.integer_range
        if limits is not None and not limits[0] <= number <= limits[1]:
            sec.ck.report(line, f"{sec.path_of(key)}.{text}",
                          f"{article(data_type.value)} never holds {number} ({limits[0]}.."
                          f"{limits[1]}): this rule could never apply")
            return None
    return number


def _read_rule(sec: Section) -> QualityRule | None:
    quality = read_declared(sec, QualityRule, "quality")
    reason = read_declared(sec, QualityRule, "reason")
    if reason is not None and not _REASON.match(reason):
        sec.report("reason", f"expected a lower-case word with letters, digits and '_' "
                             f"(e.g. calibrating), found '{reason}'")
        return None
    channels = _read_names(sec, "channels")
    if quality is None or reason is None or channels is None:
        return None
    return QualityRule(quality, reason, channels)


def _read_names(sec: Section, key: str) -> tuple[str, ...] | None:
    entry = sec.node.get(key)
    if entry is None:
        return ()
    items = entry.value.items if isinstance(entry.value, SeqNode) else (entry.value,)
    names = []
    for item in items:
        if not isinstance(item, ScalarNode) or not isinstance(item.value, str | int):
            sec.report(key, f"expected a list of channel names, found {kind(item)}")
            return None
        names.append(str(item.value))
    return tuple(names)
