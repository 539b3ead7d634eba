"""Generic register-map driver: read the channels a device lists, decode, scale.

Planning merges channels whose registers are contiguous (same table, no gap) into one
request of at most 125 registers, the Modbus limit. A Modbus exception on one request
makes only that request's channels BAD; a timeout or lost link fails the whole poll so
the poller can retry and back off.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from edge_agent.config.schema import Channel, Device, RegisterKind
from edge_agent.modbus.decode import decode_words, scale_value
from edge_agent.modbus.transport import ModbusExceptionReply, ModbusLinkClient
from edge_agent.model import Quality, Reading, Sample

MAX_REGISTERS_PER_READ = 125


@dataclass(frozen=True)
class ReadRequest:
    """One Modbus read covering ``channels`` (sorted by address)."""

    register: RegisterKind
    address: int
    count: int
    channels: tuple[Channel, ...]


def plan(channels: Sequence[Channel], max_registers: int = MAX_REGISTERS_PER_READ
         ) -> list[ReadRequest]:
    """Group channels into as few reads as possible without reading unlisted registers."""
    requests: list[ReadRequest] = []
    ordered = sorted(channels, key=lambda ch: (ch.register.value, ch.address))
    group: list[Channel] = []
    for channel in ordered:
        if group and _extends(group, channel, max_registers):
            group.append(channel)
            continue
        if group:
            requests.append(_request(group))
        group = [channel]
    if group:
        requests.append(_request(group))
    return requests


def _end(channel: Channel) -> int:
    return channel.address + channel.data_type.word_count


def _extends(group: list[Channel], channel: Channel, max_registers: int) -> bool:
    start, end = group[0].address, max(_end(ch) for ch in group)
    return (channel.register is group[0].register and channel.address <= end
            and max(end, _end(channel)) - start <= max_registers)


def _request(group: list[Channel]) -> ReadRequest:
    start = group[0].address
    end = max(_end(ch) for ch in group)
    return ReadRequest(group[0].register, start, end - start, tuple(group))


def decode_channel(channel: Channel, words: Sequence[int]) -> tuple[float | int | None,
                                                                     Quality, str | None]:
    """Value, quality and reason for one channel's words; NaN/infinity are BAD."""
    raw = decode_words(words, channel.data_type, channel.word_order)
    if isinstance(raw, float) and not math.isfinite(raw):
        return None, Quality.BAD, "not_a_number" if math.isnan(raw) else "infinite"
    return scale_value(raw, channel.scale, channel.offset), Quality.GOOD, None


class ModbusMapDriver:
    """Driver for a device described by a list of register channels."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.requests = plan(device.channels)
        self._position = {ch.name: index for index, ch in enumerate(device.channels)}

    def poll(self, link: ModbusLinkClient, now: datetime) -> Sample:
        readings: list[Reading] = []
        for request in self.requests:
            try:
                words = link.read_registers(self.device.unit_id, request.register,
                                            request.address, request.count)
            except ModbusExceptionReply as err:
                if err.transient:
                    raise
                readings.extend(self._bad(ch, now, err.reason) for ch in request.channels)
                continue
            readings.extend(self._decode(request, words, now))
        readings.sort(key=lambda reading: self._position[reading.channel])
        return Sample(self.device.id, now, tuple(readings))

    def _decode(self, request: ReadRequest, words: list[int], now: datetime) -> list[Reading]:
        readings = []
        for channel in request.channels:
            offset = channel.address - request.address
            chunk = words[offset:offset + channel.data_type.word_count]
            value, quality, reason = decode_channel(channel, chunk)
            readings.append(Reading(self.device.id, channel.name, value, channel.unit,
                                    quality, now, reason))
        return readings

    def _bad(self, channel: Channel, now: datetime, reason: str) -> Reading:
        return Reading(self.device.id, channel.name, None, channel.unit, Quality.BAD, now,
                       reason)

    def failed_sample(self, now: datetime, reason: str) -> Sample:
        readings = tuple(self._bad(ch, now, reason) for ch in self.device.channels)
        return Sample(self.device.id, now, readings)
