"""The probe's read output: a table a technician reads in an 80-120 column terminal, or
JSON for a script. Pure functions of what was read; nothing here touches a link.

One table per interpretation family (16-bit and text, float32, int32, uint32, float64),
each with the wire address and the manual's number in front, so every column fits and a
value found in one table can be traced to its register in the others.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge_agent_drivers.modbus.protocol.decode import shortest_float32
from edge_agent_drivers.modbus.settings import RegisterKind, WordOrder

from edge_agent.tools.probe.interpret import (
    ORDERS,
    WIDE_TYPES,
    Match,
    RegisterView,
    manual_number,
    range_text,
)
from edge_agent.tools.probe.scan import Answer, ScanReport, UnitOutcome

MAX_MATCH_LINES = 20  # the JSON lists them all
EXCEPTION_NAMES = {
    0x01: "illegal function", 0x02: "illegal data address", 0x03: "illegal data value",
    0x04: "server device failure", 0x05: "acknowledge", 0x06: "server device busy",
    0x08: "memory parity error", 0x0A: "gateway path unavailable",
    0x0B: "gateway target device failed to respond",
}
_TABLE_NAMES = {RegisterKind.HOLDING: "holding registers", RegisterKind.INPUT: "input registers",
                RegisterKind.COIL: "coils", RegisterKind.DISCRETE: "discrete inputs"}
_WIDTHS = {"float32": 15, "int32": 13, "uint32": 13, "float64": 19}
_LEAD = f"{'wire':>7} {'manual':>7}"


@dataclass(frozen=True)
class ReadSource:
    """What was read, from where: the title of the output and the JSON's envelope."""

    link: str
    unit_id: int
    kind: RegisterKind
    start: int
    count: int


@dataclass(frozen=True)
class FindSpec:
    """The display value looked for, as typed (its digits set the default tolerance)."""

    text: str
    value: float
    tolerance: float


def exception_name(code: int) -> str:
    """'02 illegal data address'."""
    return f"{code:02X} {EXCEPTION_NAMES.get(code, 'unknown exception')}"


def title(source: ReadSource) -> str:
    last = source.start + source.count - 1
    return (f"unit {source.unit_id} at {source.link}: {_TABLE_NAMES[source.kind]} "
            f"{manual_number(source.kind, source.start)}-{manual_number(source.kind, last)} "
            f"(wire {source.start}-{last}, function {source.kind.function_code})")


def registers_table(source: ReadSource, views: Sequence[RegisterView], find: FindSpec | None,
                    matches: Sequence[Match], color: bool = False, tables: bool = True,
                    hints: Hints | None = None) -> str:
    """Every interpretation, cells near the display value marked '*'. With ``find`` and
    not ``tables`` (``--find`` without ``--tables``), only the matching readings: the
    tables are for a look at everything. ``hints`` adds lines under a match (the shipped
    profile it looks like)."""
    if find is not None and not tables:
        lines = [title(source), "", *_match_lines(source.kind, find, matches, hints)]
        return "\n".join(line.rstrip() for line in lines)
    marked = _marked_cells(matches)

    def cell(text: str, width: int, address: int, name: str, order: WordOrder | None) -> str:
        hit = (address, name, order) in marked
        padded = f"{text}{'*' if hit else ' '}".rjust(width)
        return f"\x1b[7m{padded}\x1b[0m" if hit and color else padded

    lines = [title(source), ""]
    lines += _short_section(source.kind, views, cell)
    for wide in WIDE_TYPES:
        lines += _wide_section(source.kind, views, wide.name, wide.word_count, cell)
    words = [view.word for view in views]
    lines += [f'text, high byte first: "{range_text(words, high_first=True)}"',
              f'text, low byte first:  "{range_text(words, high_first=False)}"']
    if find is not None:
        lines += ["", *_match_lines(source.kind, find, matches, hints)]
    return "\n".join(line.rstrip() for line in lines)


_Cell = Callable[[str, int, int, str, "WordOrder | None"], str]
Hints = Callable[[Match], list[str]]  # lines to show under a match


def _lead(kind: RegisterKind, address: int) -> str:
    return f"{address:>7} {manual_number(kind, address):>7}"


def _short_section(kind: RegisterKind, views: Sequence[RegisterView], cell: _Cell) -> list[str]:
    lines = ["16-bit values; text: the register's two bytes, high byte first and swapped",
             f"{_LEAD} {'hex':>7} {'int16':>8} {'uint16':>8}  text  swapped"]
    for view in views:
        lines.append(f"{_lead(kind, view.address)} {f'0x{view.word:04X}':>7} "
                     f"{cell(str(view.int16), 8, view.address, 'int16', None)} "
                     f"{cell(str(view.uint16), 8, view.address, 'uint16', None)}  "
                     f"{view.text_high_first:>4}  {view.text_low_first:>7}")
    return [*lines, ""]


def _wide_section(kind: RegisterKind, views: Sequence[RegisterView], name: str, words: int,
                  cell: _Cell) -> list[str]:
    rows = [view for view in views if (name, WordOrder.ABCD) in view.wide]
    if not rows:
        return []
    width = _WIDTHS[name]
    lines = [f"{name}: {words} registers from this one, in each word order",
             _LEAD + "".join(f" {order.value:>{width}}" for order in ORDERS)]
    for view in rows:
        cells = [cell(format_value(name, view.wide[name, order]), width, view.address, name,
                      order) for order in ORDERS]
        lines.append(_lead(kind, view.address) + "".join(f" {c}" for c in cells))
    return [*lines, ""]


def format_value(type_name: str, value: int | float) -> str:
    """Table text: float32 to the 7 digits it holds, float64 to 10 (column width)."""
    if isinstance(value, int):
        return str(value)
    return f"{value:.7g}" if type_name == "float32" else f"{value:.10g}"


def _marked_cells(matches: Sequence[Match]) -> set[tuple[int, str, WordOrder | None]]:
    return {(match.address, name, match.order) for match in matches
            for name in match.type_name.split("|")}


def _match_lines(kind: RegisterKind, find: FindSpec, matches: Sequence[Match],
                 hints: Hints | None = None) -> list[str]:
    head = f"display value {find.text} (±{find.tolerance:g}):"
    if not matches:
        return [f"{head} no reading of these registers is that close. Try the other table "
                "(--table input / holding), another --address or a larger --count."]
    lines = [f"{head} 1 reading matches" if len(matches) == 1 else
             f"{head} {len(matches)} readings match (when the instrument shows another "
             "value, probe again: the right one follows it)"]
    for match in matches[:MAX_MATCH_LINES]:
        how = match.type_name + (f" {match.order.value}" if match.order else "")
        if match.divisor != 1:
            how += f" / {match.divisor}"
        wire = f"wire {match.address}"
        value = format_value(match.config_type, match.value)
        lines += [f"  {manual_number(kind, match.address):>6}  {wire:<10}  {how:<26} = {value}",
                  f"{'':>20}station file: {{{config_fields(kind, match)}}}"]
        lines += [f"{'':>20}{hint}" for hint in (hints(match) if hints else [])]
    if len(matches) > MAX_MATCH_LINES:
        lines.append(f"  ... and {len(matches) - MAX_MATCH_LINES} more (--format json "
                     "lists them all)")
    return lines


def config_fields(kind: RegisterKind, match: Match) -> str:
    """The channel settings that read this match: 'address: 0, type: float32, ...'."""
    fields = [f"address: {match.address}"]
    if kind is not RegisterKind.HOLDING:
        fields.append(f"register: {kind.value}")
    fields.append(f"type: {match.config_type}")
    if match.order is not None:
        fields.append(f"word_order: {match.order.value}")
    if match.divisor != 1:
        fields.append(f"scale: {1 / match.divisor:g}")
    return ", ".join(fields)


# -- bits --------------------------------------------------------------------------------


def bits_table(source: ReadSource, bits: Sequence[bool]) -> str:
    """Coils or discrete inputs, eight to a line, 1 = on."""
    lines = [title(source), "", _LEAD + "".join(f" {f'+{i}':>3}" for i in range(8))]
    for offset in range(0, len(bits), 8):
        chunk = bits[offset:offset + 8]
        lines.append(_lead(source.kind, source.start + offset)
                     + "".join(f" {int(bit):>3}" for bit in chunk))
    return "\n".join(lines)


# -- JSON ----------------------------------------------------------------------------------


def registers_json(source: ReadSource, views: Sequence[RegisterView], find: FindSpec | None,
                   matches: Sequence[Match]) -> str:
    """Machine-readable: every interpretation per register; non-finite floats as strings
    ('nan', 'inf', '-inf') so the output stays valid JSON."""
    words = [view.word for view in views]
    document = {
        **_envelope(source),
        "registers": [_register_json(source.kind, view) for view in views],
        "text": range_text(words, high_first=True),
        "text_swapped": range_text(words, high_first=False),
    }
    if find is not None:
        document["find"] = {
            "value": find.value, "tolerance": find.tolerance,
            "matches": [_match_json(source.kind, match) for match in matches],
        }
    return json.dumps(document, indent=2, allow_nan=False)


def bits_json(source: ReadSource, bits: Sequence[bool]) -> str:
    document = {**_envelope(source), "bits": [
        {"address": source.start + offset,
         "manual": manual_number(source.kind, source.start + offset), "value": bool(bit)}
        for offset, bit in enumerate(bits)]}
    return json.dumps(document, indent=2)


def _envelope(source: ReadSource) -> dict[str, object]:
    return {"link": source.link, "unit_id": source.unit_id, "table": source.kind.value,
            "function_code": source.kind.function_code, "address": source.start,
            "count": source.count}


def _register_json(kind: RegisterKind, view: RegisterView) -> dict[str, object]:
    entry: dict[str, object] = {
        "address": view.address, "manual": manual_number(kind, view.address),
        "hex": f"0x{view.word:04X}", "int16": view.int16, "uint16": view.uint16,
        "text": view.text_high_first, "text_swapped": view.text_low_first,
    }
    for wide in WIDE_TYPES:
        if (wide.name, WordOrder.ABCD) in view.wide:
            entry[wide.name] = {order.value: _json_number(wide.name, view.wide[wide.name, order])
                                for order in ORDERS}
    return entry


def _match_json(kind: RegisterKind, match: Match) -> dict[str, object]:
    return {"address": match.address, "manual": manual_number(kind, match.address),
            "type": match.config_type, "types": match.type_name.split("|"),
            "word_order": match.order.value if match.order else None,
            "scale": float(f"{1 / match.divisor:g}"),
            "raw": _json_number(match.type_name, match.raw), "value": match.value}


def _json_number(type_name: str, value: int | float) -> int | float | str:
    if isinstance(value, int):
        return value
    if not math.isfinite(value):
        return str(value)
    return shortest_float32(value) if type_name == "float32" else value


# -- scan ----------------------------------------------------------------------------------


def scan_banner(link: str, units: Sequence[int], kind: RegisterKind, address: int,
                timeout_ms: int) -> str:
    return (f"scanning {len(units)} unit id{'s' if len(units) != 1 else ''} "
            f"({_ranges(units)}) at {link}, {timeout_ms} ms each, reading "
            f"{_TABLE_NAMES[kind][:-1]} {manual_number(kind, address)} (wire {address})")


def scan_line(outcome: UnitOutcome) -> str:
    """One line per unit that answered, printed as soon as it does."""
    if outcome.answer is Answer.DATA:
        return f"unit {outcome.unit_id:>3}: answered with value {outcome.value}"
    if outcome.answer is Answer.EXCEPTION:
        assert outcome.code is not None
        return (f"unit {outcome.unit_id:>3}: answered with exception "
                f"{exception_name(outcome.code)} (a device is there)")
    return (f"unit {outcome.unit_id:>3}: something answered, unusably ({outcome.detail}); "
            "wrong baud rate or parity, or two units with this id?")


def scan_summary(report: ScanReport) -> str:
    present = [outcome.unit_id for outcome in report.present]
    if present:
        text = (f"{len(present)} unit{'s' if len(present) != 1 else ''} answered: "
                f"{', '.join(map(str, present))} ({report.tried} unit ids tried)")
    else:
        text = (f"no unit answered ({report.tried} unit ids tried): check the wiring (A/B "
                "swapped?), the baud rate and parity, and the bus termination")
    if report.gateway_replies:
        text += (f"; the gateway answered for {report.gateway_replies} unit ids that have "
                 "no device behind it (exception 0A/0B)")
    return text


def scan_json(link: str, report: ScanReport) -> str:
    return json.dumps({
        "link": link, "tried": report.tried,
        "present": [_outcome_json(outcome) for outcome in report.present],
        "garbled": [_outcome_json(outcome) for outcome in report.garbled],
        "gateway_replies": report.gateway_replies,
    }, indent=2)


def _outcome_json(outcome: UnitOutcome) -> dict[str, object]:
    return {"unit_id": outcome.unit_id, "answer": outcome.answer.value,
            "value": outcome.value,
            "exception": exception_name(outcome.code) if outcome.code is not None else None,
            "detail": outcome.detail or None}


def _ranges(units: Sequence[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    spans: list[list[int]] = []
    for unit in sorted(units):
        if spans and spans[-1][1] == unit - 1:
            spans[-1][1] = unit
        else:
            spans.append([unit, unit])
    return ", ".join(str(low) if low == high else f"{low}-{high}" for low, high in spans)
