"""The record part of a ``text:`` block: how a record's text becomes channel values.

Which settings apply depends on how the record is cut, and a wrong combination is named
rather than ignored:

==============  ==========================  ==========================
setting         delimiter (fields)          pattern (named groups)
==============  ==========================  ==========================
field           required (1-based)          not allowed
group           not allowed                 channel: its name; else required
field_count     optional                    not allowed
==============  ==========================  ==========================
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from edge_agent_drivers.serialtext.protocol.escapes import EscapeError, to_bytes
from edge_agent_drivers.serialtext.protocol.settings import (
    MAX_FIELD,
    Locator,
    RecordFormat,
    StatusField,
    StatusRule,
    TextChannel,
    TimeField,
)

from edge_agent.config.declare import allowed_keys, declared, read_declared
from edge_agent.config.fields import REQUIRED, Section, as_section, join
from edge_agent.config.limits import MAX_CHANNELS_PER_LIST, count_problem
from edge_agent.config.value_fields import (
    read_channel_name,
    read_sentinels,
    read_unit,
    read_valid_range,
)
from edge_agent.config.yamlsource import MapNode, ScalarNode, SeqNode, kind
from edge_agent.model import Quality

# declared on TextChannel, TimeField and StatusField (protocol/settings.py)
CHANNEL_KEYS = allowed_keys(TextChannel)
TIME_KEYS = allowed_keys(TimeField)
STATUS_KEYS = allowed_keys(StatusField)
_OFFSET = re.compile(r"([+-])([0-9]{2}):?([0-9]{2})")
_REASON = re.compile(r"[a-z][a-z0-9_]{0,39}")
_FIELD_EXPECTED = f"a field number 1..{MAX_FIELD} (the first field is 1)"
_RULE_EXPECTED = ("GOOD, or SUSPECT or BAD followed by a reason, e.g. 'SUSPECT calibrating' "
                  "or {quality: SUSPECT, reason: calibrating}")


def read_record_format(block: Section) -> RecordFormat | None:
    """Channels, time and status of the records; None after reporting a problem."""
    before = len(block.ck.issues)
    pattern = _regex(block, "pattern")
    by_pattern = block.has("pattern")
    delimiter = _read_delimiter(block, by_pattern)
    field_count = None
    if by_pattern and block.has("field_count"):
        block.report("field_count", "field_count is for records cut by a delimiter; a "
                     "pattern says the record's shape itself", at_key=True)
    elif not by_pattern:
        field_count = read_declared(block, RecordFormat, "field_count")
    accept = _regex(block, "accept")
    reader = _LocatorReader(by_pattern, pattern, field_count)
    channels = _read_channels(block, reader)
    time = _read_time(block, reader)
    status = _read_status(block, reader, _written_names(block))
    if len(block.ck.issues) != before or not channels:
        return None
    return RecordFormat(channels=channels, delimiter=delimiter, pattern=pattern,
                        field_count=field_count, accept=accept, time=time, status=status)


def _regex(block: Section, key: str) -> re.Pattern[str] | None:
    text = block.text(key, None, what=declared(RecordFormat)[key].hint)
    if text is None:
        return None
    try:
        return re.compile(text)
    except re.error as err:
        block.report(key, f"not a valid regular expression: {err.msg} at position {err.pos} "
                     f"of {text!r}")
        return None


def _read_delimiter(block: Section, by_pattern: bool) -> str | None:
    """The field separator; ``spaces`` (any run of spaces and tabs) gives None."""
    if by_pattern:
        if block.has("delimiter"):
            block.report("delimiter", "give either delimiter or pattern, not both", at_key=True)
        return None
    # required unless pattern: is given (a rule across two settings, so written here)
    text = block.text("delimiter", what=declared(RecordFormat)["delimiter"].hint)
    if text is None or text.lower() == "spaces":
        return None
    try:
        return to_bytes(text).decode("latin-1")
    except EscapeError as err:
        block.report("delimiter", str(err))
        return None


class _LocatorReader:
    """Reads ``field`` / ``group`` the way the record is cut, and checks them against
    the pattern's groups or the record's ``field_count``."""

    def __init__(self, by_pattern: bool, pattern: re.Pattern[str] | None,
                 field_count: int | None) -> None:
        self.by_pattern, self.pattern, self.field_count = by_pattern, pattern, field_count

    def read(self, sec: Section, default_group: str | None = None,
             several: bool = False) -> Locator | None:
        wrong = "field" if self.by_pattern else "group"
        if sec.has(wrong):
            hint = ("with a pattern, values are named groups: use group" if self.by_pattern
                    else "group is for records read with a pattern; use field (1 = first)")
            sec.report(wrong, hint, at_key=True)
            return None
        return self._group(sec, default_group) if self.by_pattern else self._fields(sec, several)

    def _group(self, sec: Section, default: str | None) -> Locator | None:
        group = sec.text("group", REQUIRED if default is None else default,
                         what="the name of a group of the pattern, (?P<name>...)")
        if group is None or self.pattern is None:
            return None
        if group not in self.pattern.groupindex:
            known = ", ".join(self.pattern.groupindex) or "none"
            where = "group" if sec.has("group") else "name"
            sec.report(where, f"the pattern has no group named '{group}' (its named groups: "
                       f"{known}); write (?P<{group}>...) in the pattern or set group")
            return None
        return Locator(group=group)

    def _fields(self, sec: Section, several: bool) -> Locator | None:
        entry = sec.node.get("field")
        if several and entry is not None and isinstance(entry.value, SeqNode):
            listed = [self._list_item(sec, item) for item in entry.value.items]
            if not listed:
                sec.report("field", f"expected {_FIELD_EXPECTED} or a list of them, found []")
            found = tuple(field for field in listed if field is not None)
            if not listed or len(found) != len(listed):
                return None
        else:
            number = sec.integer("field", lo=1, hi=MAX_FIELD, expected=_FIELD_EXPECTED)
            if number is None:
                return None
            found = (number,)
        beyond = [field for field in found if self.field_count and field > self.field_count]
        if beyond:
            sec.report("field", f"field {beyond[0]} is beyond field_count "
                       f"({self.field_count})")
            return None
        return Locator(fields=found)

    @staticmethod
    def _list_item(sec: Section, item: object) -> int | None:
        value = item.value if isinstance(item, ScalarNode) else None
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_FIELD:
            return value
        shown = kind(item) if isinstance(item, ScalarNode | SeqNode | MapNode) else "?"
        line = item.line if isinstance(item, ScalarNode | SeqNode | MapNode) else sec.line
        sec.ck.report(line, sec.path_of("field"), f"expected {_FIELD_EXPECTED}, found {shown}")
        return None


def _read_channels(block: Section, reader: _LocatorReader) -> tuple[TextChannel, ...]:
    entry = block.node.get("channels")
    if entry is None:
        block.missing("channels", "a list of channels, each starting with '- name:'")
        return ()
    if not isinstance(entry.value, SeqNode) or not entry.value.items:
        block.report("channels", "expected a list of channels ('- name: ...' items), found "
                     f"{kind(entry.value)}")
        return ()
    if problem := count_problem(len(entry.value.items), MAX_CHANNELS_PER_LIST, "channels"):
        block.report("channels", problem, at_key=True)
        return ()
    channels: list[TextChannel] = []
    names: dict[str, int | None] = {}
    for index, node in enumerate(entry.value.items):
        sec = as_section(block.ck, node, f"{block.path_of('channels')}[{index}]", node.line,
                         CHANNEL_KEYS)
        channel = _read_channel(sec, reader) if sec is not None else None
        if sec is None or channel is None:
            continue
        if channel.name in names:
            sec.report("name", f"channel '{channel.name}' is already defined at line "
                       f"{names[channel.name]}")
            continue
        names[channel.name] = sec.value_line("name")
        channels.append(channel)
    return tuple(channels)


def _written_names(block: Section) -> list[str]:
    """Channel names as written, valid or not, for references from ``status``."""
    entry = block.node.get("channels")
    items = entry.value.items if entry is not None and isinstance(entry.value, SeqNode) else ()
    names = []
    for item in items:
        name = item.get("name") if isinstance(item, MapNode) else None
        if name is not None and isinstance(name.value, ScalarNode):
            names.append(name.value.text)
    return list(dict.fromkeys(names))


def _read_channel(sec: Section, reader: _LocatorReader) -> TextChannel | None:
    name = read_channel_name(sec, "no2")
    at = reader.read(sec, default_group=name) if name is not None else None
    scale = read_declared(sec, TextChannel, "scale")
    if scale == 0:
        sec.report("scale", "scale 0 would turn every value into 0; use 1 for no scaling")
    offset = read_declared(sec, TextChannel, "offset")
    unit = read_unit(sec, "")
    before = len(sec.ck.issues)
    valid_range = read_valid_range(sec, None)
    sentinels = read_sentinels(sec, None, ())
    if None in (name, at, scale, offset, unit) or scale == 0 or len(sec.ck.issues) > before:
        return None
    return TextChannel(name or "", at or Locator(), scale or 1.0, offset or 0.0, unit or "",
                       valid_range, sentinels)


def _read_time(block: Section, reader: _LocatorReader) -> TimeField | None:
    sec = block.section("time", TIME_KEYS)
    if sec is None:
        return None
    at = reader.read(sec, several=True)
    fmt = read_declared(sec, TimeField, "format")
    if fmt is not None and (problem := _format_problem(fmt)):
        sec.report("format", problem)
        fmt = None
    offset = _read_utc_offset(sec)
    if at is None or fmt is None or offset is None:
        return None
    return TimeField(at, fmt, offset)


def _format_problem(fmt: str) -> str | None:
    """Why ``fmt`` cannot read an instrument's date and time, or None."""
    if not any(code in fmt for code in ("%Y", "%y")) or not any(
            code in fmt for code in ("%d", "%j")):
        return (f"'{fmt}' has no full date: it needs the year (%Y or %y) and the day (%d or "
                "%j), e.g. '%Y-%m-%d %H:%M:%S'")
    sample = datetime(2024, 12, 31, 23, 59, 58)
    try:
        datetime.strptime(sample.strftime(fmt), fmt)
    except ValueError as err:
        return f"'{fmt}' cannot read back the time it describes ({err})"
    return None


def _read_utc_offset(sec: Section) -> timedelta | None:
    text = sec.text("utc_offset", "+00:00", what="an offset such as +08:00, -05:00 or Z")
    if text is None:
        return None
    if text.upper() in ("Z", "UTC"):
        return timedelta(0)
    match = _OFFSET.fullmatch(text.strip())
    if match is None or int(match.group(2)) > 14 or int(match.group(3)) > 59:
        sec.report("utc_offset", f"expected an offset such as +08:00, -05:00 or Z, found "
                   f"'{text}' (the instrument clock's difference to UTC)")
        return None
    minutes = int(match.group(2)) * 60 + int(match.group(3))
    return timedelta(minutes=minutes if match.group(1) == "+" else -minutes)


def _read_status(block: Section, reader: _LocatorReader,
                 channels: list[str]) -> tuple[StatusField, ...]:
    """``status:`` is one mapping, or a list of them (one per status field)."""
    entry = block.node.get("status")
    if entry is None or (isinstance(entry.value, ScalarNode) and entry.value.value is None):
        return ()
    path = block.path_of("status")
    if isinstance(entry.value, SeqNode):
        items = [(f"{path}[{i}]", node, node.line) for i, node in enumerate(entry.value.items)]
    else:
        items = [(path, entry.value, entry.line)]
    found = []
    for item_path, node, line in items:
        sec = as_section(block.ck, node, item_path, line, STATUS_KEYS)
        status = _read_status_field(sec, reader, channels) if sec is not None else None
        if status is not None:
            found.append(status)
    return tuple(found)


def _read_status_field(sec: Section, reader: _LocatorReader,
                       channels: list[str]) -> StatusField | None:
    at = reader.read(sec)
    values = _read_status_values(sec)
    otherwise = _rule(sec, "otherwise", sec.node.get("otherwise"), "SUSPECT unknown_status")
    applies_to = _read_channel_names(sec, channels)
    if at is None or values is None or otherwise is None or applies_to is None:
        return None
    return StatusField(at, values, otherwise, applies_to)


def _read_status_values(sec: Section) -> tuple[tuple[str, StatusRule], ...] | None:
    entry = sec.node.get("values")
    if entry is None:
        sec.missing("values", "status values and their quality, e.g. 'A: GOOD'")
        return None
    if not isinstance(entry.value, MapNode) or not entry.value.entries:
        sec.report("values", "expected status values and their quality ('A: GOOD', "
                   f"'C: SUSPECT calibrating' lines), found {kind(entry.value)}")
        return None
    rules = [(item.key, _rule(sec, join("values", item.key), item, None))
             for item in entry.value.entries]
    if any(rule is None for _, rule in rules):
        return None
    return tuple((key, rule) for key, rule in rules if rule is not None)


def _rule(sec: Section, key: str, entry: object, default: str | None) -> StatusRule | None:
    """'GOOD', 'SUSPECT calibrating', 'BAD fault', or the same as a mapping
    ``{quality: SUSPECT, reason: calibrating}`` (as Modbus profiles write it)."""
    node = getattr(entry, "value", None)
    text: str | None = default if node is None else None
    if isinstance(node, ScalarNode) and isinstance(node.value, str):
        text = node.value
    elif isinstance(node, MapNode):
        text = _rule_text(node)
    words = text.split() if text else []
    quality = Quality.__members__.get(words[0].upper()) if words else None
    reason = words[1] if len(words) == 2 else None
    good_ok = quality is Quality.GOOD and len(words) == 1
    other_ok = quality not in (None, Quality.GOOD) and reason and _REASON.fullmatch(reason)
    if quality is not None and (good_ok or other_ok):
        return StatusRule(quality, reason)
    shown = f"'{text}'" if text else kind(node) if isinstance(node, ScalarNode | SeqNode
                                                                   | MapNode) else "nothing"
    line = node.line if isinstance(node, ScalarNode | SeqNode | MapNode) else sec.line
    extra = ""
    if quality not in (None, Quality.GOOD) and len(words) == 1:
        extra = f" (give the reason after {words[0]}, in lower case)"
    elif reason is not None and quality not in (None, Quality.GOOD):
        extra = " (the reason is one lower-case word: letters, digits and _)"
    sec.ck.report(line, sec.path_of(key), f"expected {_RULE_EXPECTED}, found {shown}{extra}")
    return None


def _rule_text(node: MapNode) -> str | None:
    """``{quality: Q, reason: R}`` as the words 'Q R'; None if it has other keys."""
    values = {entry.key: entry.value for entry in node.entries}
    if not values or set(values) - {"quality", "reason"}:
        return None
    words = [values[key].text for key in ("quality", "reason")
             if isinstance(values.get(key), ScalarNode)]
    return " ".join(words) if len(words) == len(values) else None


def _read_channel_names(sec: Section, channels: list[str]) -> tuple[str, ...] | None:
    entry = sec.node.get("channels")
    if entry is None:
        return ()
    items = entry.value.items if isinstance(entry.value, SeqNode) else None
    names = [item.text for item in items or ()
             if isinstance(item, ScalarNode) and item.value is not None
             and not isinstance(item.value, bool)]
    if not items or len(names) != len(items):
        sec.report("channels", f"expected a list of channel names such as [no, no2], found "
                   f"{kind(entry.value)}")
        return None
    unknown = [name for name in names if name not in channels]
    if unknown:
        sec.report("channels", f"'{unknown[0]}' is not a channel of this device (channels: "
                   f"{', '.join(channels)})")
        return None
    return tuple(names)
