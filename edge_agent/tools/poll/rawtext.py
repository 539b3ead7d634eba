"""Where each value came from, for ``poll --raw``: a Modbus channel's register words
(hex and decimal) or bits, a text channel's field as the instrument sent it."""

from __future__ import annotations

from edge_agent_drivers.modbus.settings import ModbusSettings
from edge_agent_drivers.serialtext.driver import SerialTextDriver
from edge_agent_drivers.serialtext.protocol.framing import Frame, FrameEvent
from edge_agent_drivers.serialtext.protocol.parse import (
    RecordError,
    _Fields,
    accepts,
    record_text,
)
from edge_agent_drivers.serialtext.protocol.settings import TextMode

from edge_agent.tools.poll.readlog import ModbusReads


def modbus_raw(settings: ModbusSettings, unit_id: int, reads: ModbusReads) -> dict[str, str]:
    """Per channel, its table and address and what was read there: ``holding 12: 0x0000
    0x4148 (0 16712)``; channels whose read failed are left out."""
    raw: dict[str, str] = {}
    for channel in settings.channels:
        keys = [(unit_id, channel.register, channel.address + index)
                for index in range(channel.span)]
        where = f"{channel.register.value} {channel.address}"
        if channel.register.is_bit:
            if keys[0] in reads.bits:
                raw[channel.name] = f"{where}: {int(reads.bits[keys[0]])}"
            continue
        if not all(key in reads.words for key in keys):
            continue
        words = [word for key in keys for word in reads.words[key]]
        raw[channel.name] = (f"{where}: {' '.join(f'0x{word:04X}' for word in words)} "
                             f"({' '.join(str(word) for word in words)})")
    return raw


def text_raw(driver: SerialTextDriver,
             events: list[FrameEvent]) -> tuple[str | None, dict[str, str]]:
    """The record the values came from (request mode: the first record received;
    stream mode: the latest), and per channel the field it holds, quoted as sent. No
    record: the last frame received, so a garbled answer can be seen."""
    settings = driver.settings
    records = [event for event in events
               if isinstance(event, Frame) and accepts(event.body, settings.record)]
    frames = [event for event in events if isinstance(event, Frame)]
    if not records:
        return (record_text(frames[-1].body) if frames else None), {}
    chosen = records[0] if settings.mode is TextMode.REQUEST else records[-1]
    text = record_text(chosen.body)
    try:
        fields = _Fields(text, settings.record)
        raw = {channel.name: repr(fields.token(channel.at, channel.name) or "")
               for channel in settings.record.channels}
    except RecordError:
        raw = {}
    return text, raw
