"""The capture format, versions 1 and 2: JSON Lines, one header line, then one record per
line.

Described for people in docs/capture-format.md; this module is its definition in code.
One line per frame keeps captures diffable (a changed answer is a one-line diff) and
appendable (a recorder writes and flushes line by line, so a recording cut short by a
power loss keeps every line it finished).

The raw bytes (``hex``) are the truth. The decoded fields next to them (unit id, function
code, address, count, exception code, transaction id) are for people and tools that grep;
a reader recomputes them from the bytes and refuses a record whose fields disagree, so a
hand-edited capture cannot say one thing and replay another.

Version 2 adds one thing: links of protocol ``text`` (instruments' own ASCII protocols),
whose frames have no decoded fields, only the bytes and, for people, a ``text`` rendering
that readers ignore. A writer writes the lowest version that can express its header
(2 only with a text link), so Modbus captures stay readable by version 1 readers.

Pure: text in, typed records out, and back. ``files.py`` does the file I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from edge_agent_drivers.serialtext.protocol.escapes import show

from edge_agent import __version__
from edge_agent.tools.capture.modbus_frames import FrameInfo, decode_ascii, decode_rtu, decode_tcp

FORMAT_NAME = "edge-agent-capture"
FORMAT_VERSION = 2  # the newest this reader knows; see required_version for writing
TEXT = "text"  # an instrument's own ASCII protocol: frames are bytes, nothing decoded
PROTOCOLS = ("modbus-tcp", "modbus-rtu", "modbus-ascii", TEXT)
DIRECTIONS = ("tx", "rx")  # tx: master -> device (requests), rx: device -> master
EVENTS = ("open", "close", "gap")
_DECODERS = {"modbus-tcp": decode_tcp, "modbus-rtu": decode_rtu, "modbus-ascii": decode_ascii,
             TEXT: lambda _data, _is_request: FrameInfo()}
# Record keys in the order they are written: short fields first, the bytes last.
_INFO_KEYS = {"unit": "unit_id", "fc": "function_code", "addr": "address", "count": "count",
              "exc": "exception_code", "tid": "tid", "malformed": "malformed"}


class FormatProblem(ValueError):
    """One line breaks the format; ``files.py`` adds the file and line number."""


@dataclass(frozen=True)
class LinkInfo:
    """How the recorded link was reached. ``endpoint`` is the device (``host:port`` or a
    serial path); ``listen`` the recording proxy's own address; serial settings as in the
    station file."""

    name: str
    protocol: str
    endpoint: str
    listen: str | None = None
    baudrate: int | None = None
    bytesize: int | None = None
    parity: str | None = None
    stopbits: int | None = None


@dataclass(frozen=True)
class Header:
    """The first line: what was recorded, when (``started``, UTC; records count seconds
    from it), how (``recorded_with``: proxy, pcap import, ...), over which links, and the
    unit ids known when the header was written (declared for a recording, seen for an
    import)."""

    started: datetime
    recorded_with: str
    links: tuple[LinkInfo, ...]
    unit_ids: tuple[int, ...] = ()
    source: str | None = None
    tool: str = f"edge-agent {__version__}"
    version: int = 1  # as read; written as at least required_version(links)

    def link(self, name: str) -> LinkInfo:
        return next(link for link in self.links if link.name == name)


@dataclass(frozen=True)
class Frame:
    """One frame as it crossed the link. ``xid`` pairs a request with its answer (same
    number); a request no answer carries the xid of was unanswered, an answer without an
    xid answered no recorded request. ``conn`` numbers the TCP connections of a link.
    For an answer, ``info.address``/``count`` are those of the request it answers."""

    t: float
    dir: str
    link: str
    data: bytes
    info: FrameInfo = field(default_factory=FrameInfo)
    conn: int | None = None
    xid: int | None = None

    @property
    def is_request(self) -> bool:
        return self.dir == "tx"


@dataclass(frozen=True)
class Event:
    """Something that happened to a link that is not a frame: a connection opened or
    closed (``peer`` says by whom), bytes missing from a capture (``gap``)."""

    t: float
    event: str
    link: str
    conn: int | None = None
    peer: str | None = None
    note: str | None = None


Record = Frame | Event


def decode_frame(protocol: str, data: bytes, is_request: bool) -> FrameInfo:
    """What the bytes of a frame on a link of ``protocol`` hold."""
    return _DECODERS[protocol](data, is_request)


def required_version(links: tuple[LinkInfo, ...]) -> int:
    """The lowest format version that can hold these links: 2 with a text link, else 1."""
    return 2 if any(link.protocol == TEXT for link in links) else 1


# -- writing -----------------------------------------------------------------------------


def header_line(header: Header) -> str:
    links = {link.name: _without_none({k: v for k, v in vars(link).items() if k != "name"})
             for link in header.links}
    version = max(header.version, required_version(header.links))
    return _dump(_without_none({
        "format": FORMAT_NAME, "version": version, "tool": header.tool,
        "started": header.started.isoformat(timespec="microseconds"),
        "recorded_with": header.recorded_with, "source": header.source, "links": links,
        "unit_ids": list(header.unit_ids)}))


def record_line(record: Record, shown: bool = False) -> str:
    """One record's line; ``shown`` adds the ``text`` rendering (frames of text links)."""
    if isinstance(record, Event):
        return _dump(_without_none({"t": round(record.t, 6), "event": record.event,
                                    "link": record.link, "conn": record.conn,
                                    "peer": record.peer, "note": record.note}))
    fields: dict[str, Any] = {"t": round(record.t, 6), "dir": record.dir,
                              "link": record.link, "conn": record.conn, "xid": record.xid}
    fields.update({key: getattr(record.info, name) for key, name in _INFO_KEYS.items()})
    if shown:
        fields["text"] = show_text(record.data)
    fields["hex"] = record.data.hex()
    return _dump(_without_none(fields))


def show_text(data: bytes) -> str:
    """Bytes of a text protocol as a manual writes them: ``<STX>MD01,+12.3<ETX>4F<CR><LF>``."""
    return show(data, limit=len(data))


def _dump(fields: dict[str, Any]) -> str:
    return json.dumps(fields, ensure_ascii=False)


def _without_none(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


# -- reading -----------------------------------------------------------------------------


def parse_header(text: str) -> Header:
    """The header line; FormatProblem says what is wrong with it."""
    fields = _object(text, "the header")
    if fields.get("format") != FORMAT_NAME:
        raise FormatProblem(f"not a capture file: the first line must be a header with "
                            f'"format": "{FORMAT_NAME}"')
    version = fields.get("version")
    if type(version) is not int:
        raise FormatProblem(f"the header's version must be a whole number, not {version!r}")
    if version > FORMAT_VERSION:
        raise FormatProblem(f"capture format version {version} is newer than this "
                            f"edge-agent reads (up to {FORMAT_VERSION}): upgrade edge-agent")
    if version < 1:
        raise FormatProblem(f"unknown capture format version {version}")
    links = tuple(_link(name, value) for name, value in _get(fields, "links", dict).items())
    if version < required_version(links):
        text = next(link.name for link in links if link.protocol == TEXT)
        raise FormatProblem(f"links.{text}.protocol: text links need capture format "
                            f"version 2 (the header says {version})")
    return Header(started=_started(fields), recorded_with=_get(fields, "recorded_with", str),
                  links=links,
                  unit_ids=tuple(_int_list(fields.get("unit_ids", []), "unit_ids")),
                  source=_get(fields, "source", str, required=False),
                  tool=_get(fields, "tool", str), version=version)


def parse_record(text: str, header: Header) -> Record:
    """One record line, checked against the header and against its own bytes."""
    fields = _object(text, "a record")
    t = _get(fields, "t", (int, float))
    if t < 0:
        raise FormatProblem(f"t must be seconds since the header's start, not {t}")
    link = _get(fields, "link", str)
    if link not in {known.name for known in header.links}:
        raise FormatProblem(f"link {link!r} is not in the header "
                            f"(known: {', '.join(known.name for known in header.links)})")
    conn = _get(fields, "conn", int, required=False)
    if "event" in fields:
        event = _choice(fields, "event", EVENTS)
        return Event(float(t), event, link, conn, _get(fields, "peer", str, required=False),
                     _get(fields, "note", str, required=False))
    direction = _choice(fields, "dir", DIRECTIONS)
    try:
        data = bytes.fromhex(_get(fields, "hex", str))
    except ValueError as err:
        raise FormatProblem(f"hex: not hexadecimal bytes ({err})") from None
    info = _checked_info(fields, decode_frame(header.link(link).protocol, data,
                                              direction == "tx"), direction)
    return Frame(float(t), direction, link, data, info, conn,
                 _get(fields, "xid", int, required=False))


def _checked_info(fields: dict[str, Any], decoded: FrameInfo, direction: str) -> FrameInfo:
    """The decoded fields as written, after checking them against the bytes."""
    if ("malformed" in fields) != (decoded.malformed is not None):
        said = "malformed" if "malformed" in fields else "well formed"
        raise FormatProblem(f"the record says the frame is {said}, its bytes say otherwise"
                            f" ({decoded.malformed or 'a good frame'})")
    info = decoded
    for key, name in _INFO_KEYS.items():
        if key == "malformed" or key not in fields:
            continue
        value = _get(fields, key, int)
        from_request = key in ("addr", "count") and direction == "rx"
        if not from_request and value != getattr(decoded, name):
            raise FormatProblem(f"{key} {value} does not match the frame's bytes "
                                f"({getattr(decoded, name)}): hex is what is replayed")
        info = replace(info, **{name: value})
    if "malformed" in fields:
        info = replace(info, malformed=_get(fields, "malformed", str))
    return info


def _object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise FormatProblem(f"{what} is not valid JSON ({err.msg} at column {err.colno})"
                            ) from None
    if not isinstance(value, dict):
        raise FormatProblem(f"{what} must be a JSON object {{...}}, not {type(value).__name__}")
    return value


def _get(fields: dict[str, Any], key: str, kinds: type | tuple[type, ...], *,
         required: bool = True) -> Any:
    if key not in fields:
        if required:
            raise FormatProblem(f"{key}: required field is missing")
        return None
    value = fields[key]
    wanted = kinds if isinstance(kinds, tuple) else (kinds,)
    if isinstance(value, bool) or not isinstance(value, wanted):
        names = " or ".join({int: "a whole number", float: "a number", str: "text",
                             dict: "an object"}[kind] for kind in wanted)
        raise FormatProblem(f"{key}: must be {names}, not {value!r}")
    return value


def _choice(fields: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = _get(fields, key, str)
    if value not in allowed:
        raise FormatProblem(f"{key}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _int_list(value: Any, key: str) -> list[int]:
    if not isinstance(value, list) or any(type(item) is not int for item in value):
        raise FormatProblem(f"{key}: must be a list of whole numbers, not {value!r}")
    return value


def _started(fields: dict[str, Any]) -> datetime:
    text = _get(fields, "started", str)
    try:
        started = datetime.fromisoformat(text)
    except ValueError:
        raise FormatProblem(f"started: {text!r} is not an ISO-8601 time") from None
    if started.tzinfo is None:
        raise FormatProblem(f"started: {text!r} has no time zone (write it in UTC, +00:00)")
    return started


def _link(name: str, value: Any) -> LinkInfo:
    if not isinstance(value, dict):
        raise FormatProblem(f"links.{name}: must be an object, not {value!r}")
    protocol = value.get("protocol")
    if protocol not in PROTOCOLS:
        raise FormatProblem(f"links.{name}.protocol: {protocol!r} is not one of "
                            f"{', '.join(PROTOCOLS)}")
    known = {key for key in vars(LinkInfo(name, protocol, "")) if key != "name"}
    unknown = sorted(set(value) - known)
    if unknown:
        raise FormatProblem(f"links.{name}: unknown setting {unknown[0]!r}")
    if "endpoint" not in value:
        raise FormatProblem(f"links.{name}.endpoint: required field is missing")
    for key, setting in value.items():
        kind = int if key in ("baudrate", "bytesize", "stopbits") else str
        _get({f"links.{name}.{key}": setting}, f"links.{name}.{key}", kind)
    return LinkInfo(name=name, **value)
