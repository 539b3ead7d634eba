"""The typed settings of a ``serial-text`` device, as the loader produces them.

Everything is resolved at load time: control-character names are bytes, regular
expressions are compiled, the request already carries the device's address and, with
``frame_request``, its framing and checksum. Nothing past the loader sees YAML.
Field positions are 1-based, as manuals count them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from edge_agent_drivers.serialtext.protocol.checksums import (
    ByteOrder,
    ChecksumEncoding,
    ChecksumKind,
)

from edge_agent.config.declare import setting
from edge_agent.model import Quality
from edge_agent.values import ValidRange

# The highest field number a record may have (field, field_count).
MAX_FIELD = 1000


class TextMode(StrEnum):
    """``request``: the agent asks and reads one answer per poll. ``stream``: the
    instrument sends records on its own; each poll publishes the latest one."""

    REQUEST = "request"
    STREAM = "stream"


class FramingKind(StrEnum):
    """``line``: records end with a terminator. ``stx-etx``: records sit between a start
    and an end marker, the checksum (if any) right after the end marker."""

    LINE = "line"
    STX_ETX = "stx-etx"

    @property
    def markers(self) -> tuple[bytes, bytes]:
        """The start and end markers a frame of this type has unless ``framing:`` says
        otherwise: <STX> and <ETX> for stx-etx, none for a line."""
        return (b"\x02", b"\x03") if self is FramingKind.STX_ETX else (b"", b"")


class Covers(StrEnum):
    """Which bytes a checksum is computed over. ``start`` is the start marker, ``end``
    the byte(s) right before the checksum: the end marker (stx-etx) or the separator
    (line framing)."""

    BODY = "body"
    START_BODY = "start+body"
    BODY_END = "body+end"
    START_BODY_END = "start+body+end"

    @property
    def with_start(self) -> bool:
        return self.value.startswith("start")

    @property
    def with_end(self) -> bool:
        return self.value.endswith("end")


@dataclass(frozen=True)
class Framing:
    """Where records begin and end (``framing:`` of a text block, each field declared as
    written there). ``terminator`` b"" means any line end (CR, LF or CR LF);
    ``max_bytes`` bounds a record so garbage without a terminator cannot grow the buffer
    forever. ``start``/``end`` default to the type's markers (``FramingKind.markers``:
    <STX>/<ETX> for stx-etx)."""

    kind: FramingKind = setting("choice", FramingKind.LINE, key="type",
                                choices={kind.value: kind for kind in FramingKind})
    start: bytes = setting("bytes", b"", hint="the start marker, e.g. <STX> or '$'")
    end: bytes = setting("bytes", b"", hint="the end marker, e.g. <ETX>")
    terminator: bytes = setting("bytes", b"",
                                hint="CR, LF, CRLF, any, or text such as '<ETX>'")
    max_bytes: int = setting("integer", 4096, range=(16, 65536))


@dataclass(frozen=True)
class Checksum:
    """A frame's checksum (``checksum:`` of a text block, declared as written there):
    algorithm, how it is written, what it covers. ``separator`` (line framing only)
    stands between the body and the checksum, like NMEA's ``*``."""

    kind: ChecksumKind = setting("choice", key="type",
                                 choices={kind.value: kind for kind in ChecksumKind})
    encoding: ChecksumEncoding = setting("choice", ChecksumEncoding.HEX, choices={
        encoding.value: encoding for encoding in ChecksumEncoding})
    byte_order: ByteOrder = setting("choice", ByteOrder.BIG,
                                    choices={order.value: order for order in ByteOrder})
    covers: Covers = setting("choice", Covers.BODY, choices={c.value: c for c in Covers},
                             hint="body, start+body, body+end or start+body+end (end: the "
                                  "end marker; in line framing, the separator)")
    separator: bytes = setting("bytes", b"",
                               hint="the text between record and checksum, e.g. '*'")


# A value's place in a record: ``field`` (1-based, or a list) or ``group`` (of pattern:),
# one Locator read from either key (config_record.py).
_AT = "a 1-based field number (or a list of them), or a named group of pattern"


@dataclass(frozen=True)
class Locator:
    """Where a value sits in a record: 1-based ``fields`` (several are joined with a
    space, e.g. a date and a time field) with a delimiter, or a named ``group`` of the
    record's pattern."""

    fields: tuple[int, ...] = ()
    group: str | None = None


@dataclass(frozen=True)
class TextChannel:
    """One number in a record; the published value is ``number * scale + offset``,
    judged by the pipeline every driver kind shares (``edge_agent.values``):
    ``sentinels`` are numbers as written in the record (before scaling) that mean "no
    reading", ``valid_range`` is in engineering units (after scaling)."""

    name: str = setting("custom", hint="the channel's name")
    at: Locator = setting("custom", key=("field", "group"), hint=_AT)
    scale: float = setting("number", 1.0)
    offset: float = setting("number", 0.0)
    unit: str = setting("custom", "", hint="the unit, e.g. ppm")
    valid_range: ValidRange | None = setting("custom", None,
                                             hint="{min, max, quality} in engineering units")
    sentinels: tuple[float, ...] = setting("custom", (),
                                           hint="numbers as written that mean 'no reading'")


@dataclass(frozen=True)
class TimeField:
    """The instrument's timestamp: ``format`` is a strptime format; the instrument's
    clock runs ``utc_offset`` ahead of UTC (+08:00 in China)."""

    at: Locator = setting("custom", key=("field", "group"), hint=_AT)
    format: str = setting("text", hint="a time format such as '%Y-%m-%d %H:%M:%S'")
    utc_offset: timedelta = setting("custom", timedelta(0),
                                    hint="an offset such as +08:00, -05:00 or Z")


@dataclass(frozen=True)
class StatusRule:
    """The quality (and reason, never None unless GOOD) a status value gives."""

    quality: Quality
    reason: str | None = None


@dataclass(frozen=True)
class StatusField:
    """A status letter or word mapped to quality, applied to ``channels`` (empty: all).
    A value not in ``values`` gets ``otherwise``. Values are matched exactly, after
    removing spaces around them."""

    at: Locator = setting("custom", key=("field", "group"), hint=_AT)
    values: tuple[tuple[str, StatusRule], ...] = setting(
        "custom", hint="status value: quality (and reason)")
    otherwise: StatusRule = setting("custom", StatusRule(Quality.SUSPECT, "unknown_status"),
                                    hint="the quality of a value not listed")
    channels: tuple[str, ...] = setting("custom", (), hint="the channels it applies to "
                                                           "(all when left out)")

    def rule_for(self, text: str) -> StatusRule:
        return dict(self.values).get(text, self.otherwise)


_REGEX = "a regular expression (in single quotes)"


@dataclass(frozen=True, kw_only=True)
class RecordFormat:
    """How one record's text becomes values (the record settings of a text block, each
    declared as written there and read by config_record.py).

    Fields are cut by ``pattern`` (named groups) when it is set, otherwise by
    ``delimiter`` (None: runs of spaces and tabs). Records not matching ``accept`` are
    other message types and are skipped. ``field_count`` rejects truncated records.
    """

    accept: re.Pattern[str] | None = setting("text", None, hint=_REGEX)
    delimiter: str | None = setting(
        "text", ",", hint="a delimiter such as ',' or ';' or the word spaces (or a pattern: "
                          "with named groups instead)")
    pattern: re.Pattern[str] | None = setting("text", None, hint=_REGEX)
    field_count: int | None = setting("integer", None, range=(1, MAX_FIELD))
    time: TimeField | None = setting("section", None)
    status: tuple[StatusField, ...] = setting(
        "custom", (), hint="a status field, or a list of them")
    channels: tuple[TextChannel, ...] = setting("custom", hint="a list of channels")


@dataclass(frozen=True, kw_only=True)
class TextSettings:
    """Everything the serial-text driver needs for one device: the ``text:`` block, each
    setting declared as written there (the record's settings on RecordFormat, written
    at the same level), read by config_text.py.

    ``request`` is the exact bytes sent each poll (empty in stream mode), already framed
    when ``frame_request`` is set; ``example`` is the manual's telegram that ``check``
    decoded. ``address`` is the device's ``unit_id`` when one was given.
    """

    mode: TextMode = setting("choice", TextMode.REQUEST,
                             choices={mode.value: mode for mode in TextMode})
    request: bytes = setting("bytes", b"", hint='the command to send, e.g. "RD<CR>" or '
                                                 '"<STX>DA<ETX>"')
    frame_request: bool = setting("flag", False)
    framing: Framing = setting("section", default_factory=Framing)
    checksum: Checksum | None = setting("section", None)
    record: RecordFormat = setting("inline", of=RecordFormat)
    example: bytes = setting("bytes", b"", hint="a telegram from the manual, e.g. "
                                                "'<STX>MD01,12.3,A<ETX>39'")
    address: int | None = None  # the device's unit_id: not written in the block
