"""The technician's view of a poll: one aligned table per device under a header naming
the device, its address, its link and how long it took."""

from __future__ import annotations

from edge_agent.config.schema import Link, SerialLink
from edge_agent.model import Reading
from edge_agent.tools.poll.once import DeviceResult

# Technician-facing text of this module, in one place.
HEADINGS = ("channel", "value", "unit", "quality", "reason")
RAW_HEADING = "raw"
ANSWERED = "answered in {ms:.0f} ms"
NO_ANSWER = "NO ANSWER ({ms:.0f} ms)"
RECORD = "record: {text}"
HINT = "hint: {text}"
SUMMARY = ("{answered} of {total} device{s} answered; nothing was stored or published "
           "(poll never writes to the outbox or the broker)")
NO_VALUE = "-"


def link_text(link: Link) -> str:
    """``link rs485-1 (modbus-rtu /dev/ttyUSB0 9600 8N1)`` or ``(modbus-tcp host:port)``."""
    if isinstance(link, SerialLink):
        frame = f"{link.bytesize}{link.parity.value[0].upper()}{link.stopbits}"
        return (f"link {link.name} ({link.protocol.value} {link.port} {link.baudrate} "
                f"{frame})")
    return f"link {link.name} ({link.protocol.value} {link.host}:{link.port})"


def value_text(value: object) -> str:
    """A value as a person reads it: no float noise (six significant digits)."""
    if value is None:
        return NO_VALUE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def table(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as left-aligned columns two spaces apart, trailing spaces removed."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            .rstrip() for row in rows]


def render_device(result: DeviceResult, raw: bool) -> list[str]:
    """The header line, the notes and hints, and the channel table of one device."""
    device = result.device
    state = ANSWERED if result.answered else NO_ANSWER
    lines = [f"{device.id}  unit {device.unit_id} on {link_text(result.link)}  "
             f"{state.format(ms=result.elapsed_ms)}"]
    if result.error:
        lines.append(f"  {result.error}")
    lines += [f"  {HINT.format(text=hint)}" for hint in result.hints]
    lines += [f"  {note}" for note in result.notes]
    if raw and result.record is not None:
        lines.append(f"  {RECORD.format(text=result.record)}")
    if result.readings:
        rows = [(*HEADINGS, RAW_HEADING) if raw else HEADINGS]
        rows += [_row(reading, result.raw.get(reading.channel, NO_VALUE), raw)
                 for reading in result.readings]
        lines += [f"  {line}" for line in table(rows)]
    return lines


def _row(reading: Reading, raw_text: str, raw: bool) -> tuple[str, ...]:
    row = (reading.channel, value_text(reading.value), reading.unit or NO_VALUE,
           reading.quality.value, reading.reason or "")
    return (*row, raw_text) if raw else row


def summary(results: list[DeviceResult]) -> str:
    total = len(results)
    return SUMMARY.format(answered=sum(result.answered for result in results), total=total,
                          s="s" if total != 1 else "")
