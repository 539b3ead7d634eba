"""The ``text:`` block of a ``driver: serial-text`` device, and what it implies for the
device around it.

Called through reader.py (the kind's registry entry). Besides reading the block
(framing, checksum, request; the record part is in config_record.py), this checks the
device-level rules of text instruments:

* the link must have ``protocol: text`` (the registry entry's ``link_protocols``,
  checked by edge_agent/config/validate_devices.py);
* ``unit_id`` is optional: it is the instrument's own address, used only as
  ``{address}`` in the request; ``channels``, ``word_order`` and the other register
  settings belong to Modbus;
* ``text:`` may come from the device's profile (profiles.py), as one whole block; its
  problems are then reported with the profile's file and lines;
* a stream instrument needs its link to itself, and devices sharing a text link each
  need their address (a check of the whole list: edge_agent/config/text_links.py).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping

from edge_agent_drivers.serialtext.address import ADDRESS
from edge_agent_drivers.serialtext.config_record import read_record_format
from edge_agent_drivers.serialtext.protocol.checksums import (
    ByteOrder,
    ChecksumEncoding,
)
from edge_agent_drivers.serialtext.protocol.escapes import EscapeError, show, to_bytes
from edge_agent_drivers.serialtext.protocol.framing import Deframer, FrameFault, encode_frame
from edge_agent_drivers.serialtext.protocol.parse import RecordError, accepts, parse_record
from edge_agent_drivers.serialtext.protocol.settings import (
    Checksum,
    Covers,
    Framing,
    FramingKind,
    TextMode,
    TextSettings,
)

from edge_agent.config.declare import (
    allowed_keys,
    declared,
    default_of,
    read_declared,
    read_setting,
)
from edge_agent.config.fields import Section, as_section
from edge_agent.config.yamlsource import ScalarNode
from edge_agent.i18n import N_, _

# text: (its record settings at the same level), framing: and checksum: are declared on
# TextSettings, RecordFormat, Framing and Checksum (protocol/settings.py)
TEXT_KEYS = allowed_keys(TextSettings)
FRAMING_KEYS = allowed_keys(Framing)
CHECKSUM_KEYS = allowed_keys(Checksum)
TERMINATOR_WORDS = {"any": b"", "cr": b"\r", "lf": b"\n", "crlf": b"\r\n"}
# Formats {address:...} may use: d, x or X after an optional width of up to 8 digits
# (02d, 03d, 02X). Anything else is refused before it is tried: a spec such as
# '>99999999999' would otherwise ask Python for a string of 100 GB (MemoryError).
ADDRESS_FORMAT = re.compile(r"0?[1-8]?[dxX]")
ADDRESS_FORMATS_EXPECTED = N_("{address}, or {address:d}, {address:x} or {address:X} with "
                            "an optional width of up to 8 digits before the letter (02d, "
                            "03d, 02X)")


def read_text_unit_id(sec: Section) -> int | None:
    """A text instrument's address: optional (0 when absent); None after an issue."""
    return read_setting(sec, ADDRESS, 0)


def read_text_device(sec: Section, holder: Section, unit_id: int | None,
                     owners: Mapping[str, str], kind: str) -> TextSettings | None:
    """A serial-text device's settings: its ``text`` block; other kinds' settings refused.
    ``holder`` is where ``text:`` is written: the device itself, or its profile (whose
    issues then name the profile file). ``unit_id`` is what ``read_text_unit_id`` gave;
    ``owners`` maps each other kind's key to that kind, ``kind`` is this kind's name
    (both from the registry). None after an issue."""
    for layer in {id(sec): sec, id(holder): holder}.values():
        for key, owner in owners.items():
            if layer.has(key):
                if key == "channels":
                    message = _("for driver {driver}, channels go under text: (they name "
                                "fields, not registers)").format(driver=kind)
                else:
                    message = _("for driver {driver}, {key} is a {owner} setting; it does not "
                                "apply to a text protocol").format(driver=kind, key=key,
                                                                   owner=_title(owner))
                layer.report(key, message, at_key=True)
    entry = holder.node.get("text")
    if entry is None:
        holder.missing("text", _("the instrument's protocol: a text: block (see "
                                 "docs/serial-text.md), here or in the device's profile"))
        return None
    block = as_section(holder.ck, entry.value, holder.path_of("text"), entry.line, TEXT_KEYS)
    if block is None:
        return None
    return read_text_settings(block, unit_id if sec.has("unit_id") else None)


def _title(kind: str) -> str:
    """A kind's name as prose writes it: modbus -> Modbus."""
    return kind.capitalize()


def read_text_settings(block: Section, address: int | None) -> TextSettings | None:
    """Every setting of a text block (inline or a profile's top level)."""
    before = len(block.ck.issues)
    mode = read_declared(block, TextSettings, "mode")
    framing = _read_framing(block)
    checksum = _read_checksum(block, framing)
    record = read_record_format(block)
    framed = read_declared(block, TextSettings, "frame_request")
    request = _read_request(block, mode, address, framing, checksum, framed)
    example = _declared_bytes(block, "example", cls=TextSettings)
    if len(block.ck.issues) != before or mode is None or framing is None \
            or record is None or request is None or framed is None or example is None:
        return None
    settings = TextSettings(mode=mode, request=request, frame_request=framed,
                            framing=framing, checksum=checksum, record=record,
                            example=example, address=address)
    _check_example(block, settings)
    return settings


def _check_example(block: Section, settings: TextSettings) -> None:
    """``example:``, a telegram copied from the manual, must give a record: a wrong
    checksum, framing or field setting then shows at ``edge-agent check``, not on site."""
    data = settings.example
    if not data:
        return
    deframer = Deframer(settings.framing, settings.checksum)
    events = deframer.feed(data)
    if not events and settings.framing.kind is FramingKind.LINE:
        events = deframer.feed(settings.framing.terminator or b"\r")  # line end left out
    problem = _("it holds no complete record") if not events else None
    for event in events:
        if isinstance(event, FrameFault):
            problem = f"{event.reason}: {event.detail}"
        elif not accepts(event.body, settings.record):
            problem = _("the record {record} does not match accept").format(
                record=show(event.body))
        else:
            try:
                parse_record(event.body, settings.record)
            except RecordError as err:
                problem = f"bad_frame: {err}"
        if problem:
            break
    if problem:
        block.report("example", _("the example does not give a record with these settings: "
                                  "{problem}").format(problem=problem))


def _bytes(sec: Section, key: str, default: bytes, what: str) -> bytes | None:
    """A byte string written as text with <CR>, <STX>, \\r, \\x02 escapes."""
    text = sec.text(key, None, what=what)
    if text is None:
        return default if not sec.has(key) else None
    try:
        return to_bytes(text)
    except EscapeError as err:
        sec.report(key, str(err))
        return None


_MAX_BYTES = Framing().max_bytes


def _declared_bytes(sec: Section, name: str, default: bytes | None = None,
                    cls: type = Framing) -> bytes | None:
    """A ``bytes`` setting of ``cls`` with its declared key, hint and (unless ``default``
    says otherwise: stx-etx markers) default."""
    meta = declared(cls)[name]
    return _bytes(sec, meta.key, default_of(cls, name) if default is None else default,
                  meta.hint)


def _read_framing(block: Section) -> Framing | None:
    """``framing:`` settings, or just its type (``framing: stx-etx``)."""
    entry = block.node.get("framing")
    if entry is not None and isinstance(entry.value, ScalarNode):
        kind = read_declared(block, Framing, "kind", key="framing")
        return None if kind is None else _default_framing(kind)
    sec = block.section("framing", FRAMING_KEYS)
    if sec is None:
        return Framing()
    kind = read_declared(sec, Framing, "kind")
    if kind is None:
        return None
    max_bytes = read_declared(sec, Framing, "max_bytes")
    if kind is FramingKind.STX_ETX:
        if sec.has("terminator"):
            sec.report("terminator", _("stx-etx frames end with end: and the checksum; bytes "
                                       "after them (such as CR LF) are skipped: remove "
                                       "terminator"), at_key=True)
        first, last = kind.markers
        start = _declared_bytes(sec, "start", first)
        end = _declared_bytes(sec, "end", last)
        if start is not None and start == end:
            sec.report("end", _("the end marker must differ from the start marker"))
        # After an issue, defaults stand in so the checksum checks still run.
        return Framing(kind, start or first, end or last, b"", max_bytes or _MAX_BYTES)
    if sec.has("end"):
        sec.report("end", _("end: is for framing type stx-etx; a line ends with terminator:"),
                   at_key=True)
    start = _declared_bytes(sec, "start")
    terminator = _read_terminator(sec)
    return Framing(kind, start or b"", b"", terminator or b"", max_bytes or _MAX_BYTES)


def _default_framing(kind: FramingKind) -> Framing:
    """``framing: stx-etx`` written as just its type: the type's own markers."""
    return Framing(kind, *kind.markers)


def _read_terminator(sec: Section) -> bytes | None:
    """CR, LF, CRLF, any (CR, LF or CR LF; the default), or any text with escapes."""
    text = sec.text("terminator", None, what=_(declared(Framing)["terminator"].hint))
    if text is None:
        return b"" if not sec.has("terminator") else None
    if text.lower() in TERMINATOR_WORDS:
        return TERMINATOR_WORDS[text.lower()]
    return _bytes(sec, "terminator", b"", "")


def _read_checksum(block: Section, framing: Framing | None) -> Checksum | None:
    """``checksum:`` settings, or just its type (``checksum: xor8``); None when absent."""
    entry = block.node.get("checksum")
    if entry is None or (isinstance(entry.value, ScalarNode) and entry.value.value is None):
        return None
    if isinstance(entry.value, ScalarNode):
        kind = read_declared(block, Checksum, "kind", key="checksum")
        checksum = None if kind is None else Checksum(kind)
    else:
        sec = block.section("checksum", CHECKSUM_KEYS)
        checksum = _read_checksum_settings(sec) if sec is not None else None
        if sec is not None and checksum is not None and framing is not None:
            _check_checksum_fits(sec, checksum, framing)
    return checksum


def _read_checksum_settings(sec: Section) -> Checksum | None:
    kind, encoding, order, covers = (read_declared(sec, Checksum, name) for name in
                                     ("kind", "encoding", "byte_order", "covers"))
    separator = _declared_bytes(sec, "separator", cls=Checksum)
    if kind is not None and kind.width_bytes == 1 and sec.has("byte_order"):
        sec.report("byte_order", _("byte_order only matters for 16-bit checksums (crc16-...); "
                                   "{kind} is one byte: remove it").format(kind=kind.value),
                   at_key=True)
    if kind is None:
        return None
    # After other issues, go on with defaults so the checks against the framing still run.
    return Checksum(kind, encoding or ChecksumEncoding.HEX, order or ByteOrder.BIG,
                    covers or Covers.BODY, separator or b"")


def _check_checksum_fits(sec: Section, checksum: Checksum, framing: Framing) -> None:
    """Combinations of checksum and framing that cannot work on the wire."""
    line = framing.kind is FramingKind.LINE
    if not line and sec.has("separator"):
        sec.report("separator", _("separator is for line framing; in stx-etx frames the "
                                  "checksum follows the end marker"), at_key=True)
    if line and checksum.encoding is ChecksumEncoding.RAW:
        sec.report("encoding", _("a raw (binary) checksum can contain the line end and cut "
                                 "the record; use encoding: hex, or framing type: stx-etx"))
    if checksum.covers.with_start and not framing.start:
        sec.report("covers", _("covers {covers} includes the start marker, but framing has "
                               "no start:").format(covers=checksum.covers.value))
    if checksum.covers.with_end and line and not checksum.separator:
        sec.report("covers", _("covers {covers} includes the end, which in line framing is "
                               "the separator, and no separator: is set").format(
                                   covers=checksum.covers.value))


def _read_request(block: Section, mode: TextMode | None, address: int | None,
                  framing: Framing | None, checksum: Checksum | None,
                  framed: bool | None) -> bytes | None:
    """The exact bytes sent each poll: the request with its address and, with
    ``frame_request``, framed and checksummed like an answer."""
    if mode is TextMode.STREAM:
        for key in ("request", "frame_request"):
            if block.has(key):
                block.report(key, _("a stream instrument sends on its own; remove {key} (or set "
                                    "mode: request)").format(key=key), at_key=True)
        return b""
    # required in request mode (a rule across two settings, so written here)
    text = block.text("request", what=_(declared(TextSettings)["request"].hint))
    if text is None:
        return None
    formatted = _with_address(block, text, address)
    if formatted is None:
        return None
    try:
        data = to_bytes(formatted)
    except EscapeError as err:
        block.report("request", str(err))
        return None
    if not framed:
        return data
    return None if framing is None else encode_frame(data, framing, checksum)


def _with_address(block: Section, text: str, address: int | None) -> str | None:
    """``{address}`` (or ``{address:02d}``, see ADDRESS_FORMAT) replaced by the device's
    unit_id."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion
                  in string.Formatter().parse(text) if name is not None]
        names = {name for name, _, _ in fields}
        unknown = sorted(names - {"address"})
        if unknown:
            block.report("request", _("unknown placeholder {{{name}}}; only {{address}} (the "
                                      "device's unit_id) exists; write {{{{ and }}}} for "
                                      "braces").format(name=unknown[0]))
            return None
        refused = next((f for f in fields if not _address_format_allowed(*f[1:])), None)
        if refused is not None:
            block.report("request", _("expected {expected}, found {found}").format(
                expected=_(ADDRESS_FORMATS_EXPECTED), found=_placeholder(*refused)))
            return None
        if names and address is None:
            block.report("request", _("the request uses {address}: set unit_id on the device "
                                      "to the instrument's address"))
            return None
        return text.format(address=address or 0)
    except (ValueError, IndexError) as err:
        block.report("request", _("{error}; a brace is written {{{{ or }}}}, the address as "
                                  "{{address}} or {{address:02d}}").format(error=err))
        return None


def _address_format_allowed(spec: str, conversion: str | None) -> bool:
    return conversion is None and (not spec or ADDRESS_FORMAT.fullmatch(spec) is not None)


def _placeholder(name: str, spec: str, conversion: str | None, limit: int = 24) -> str:
    """The placeholder as written, cut short: a spec can be as long as the line."""
    written = ("!" + conversion if conversion else "") + (":" + spec if spec else "")
    return f"{{{name}{written if len(written) <= limit else written[:limit] + '...'}}}"


