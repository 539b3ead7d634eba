"""Register-image replay: answer any read inside the recorded ranges with the values the
recording held at that moment.

Every recorded read answer (and every acknowledged write) tells what some addresses of
one unit's table held at one time. ``RegisterImage`` keeps those as timelines per
address; a read at recording time ``t`` gets, for each address, the latest value at or
before ``t`` (before its first recording: the first value recorded, which the device
most likely held already). An address the recording never read is not there: exception
02, as a device answers for an address it does not have.

Where the recording got an exception, the replay gives it back: a request identical in
unit, function, address and count to one that got an exception answers that exception
for as long as it was the latest recorded outcome of that request. Daniel/Enron 32-bit
registers (an answer of 4 bytes per address) are kept as two words per address. Other
functions (diagnostics, device identification, report slave id) answer what the same
request got in the recording, or exception 01 when it was never asked.

Writes inside recorded ranges are acknowledged and do not change what reads return: the
recording is the device's truth. Pure: the caller passes the recording time.
"""

from __future__ import annotations

import bisect
import struct
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from edge_agent.tools.capture.modbus_frames import decode_pdu
from edge_agent.tools.replay.script import Exchange, Script, adu

ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE = 0x01, 0x02, 0x03
TABLES = {1: "coils", 2: "discrete", 3: "holding", 4: "input", 5: "coils", 6: "holding",
          15: "coils", 16: "holding"}
Value = tuple[int, ...]  # one word, two words (Enron), or one bit


@dataclass
class _Timeline:
    """Values in recording-time order."""

    times: list[float] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)

    def add(self, t: float, value: Any) -> None:
        at = bisect.bisect_right(self.times, t)
        self.times.insert(at, t)
        self.values.insert(at, value)

    def at(self, t: float) -> Any:
        index = bisect.bisect_right(self.times, t) - 1
        return self.values[max(index, 0)]


class RegisterImage:
    """The recorded states of every unit on one link."""

    def __init__(self, script: Script) -> None:
        self.units: set[int] = set()
        self._values: dict[tuple[int, str, int], _Timeline] = defaultdict(_Timeline)
        self._outcomes: dict[tuple[int, int, int, int], _Timeline] = defaultdict(_Timeline)
        self._verbatim: dict[tuple[int, bytes], _Timeline] = defaultdict(_Timeline)
        self.start_t = script.exchanges[0].request.t
        self.end_t = self.start_t
        for exchange in script.exchanges:
            self._learn(exchange, script.protocol)

    def _learn(self, exchange: Exchange, protocol: str) -> None:
        request = adu(exchange.request.data, protocol)
        answer = adu(exchange.answer.data, protocol) if exchange.answer else None
        if request is None or answer is None or exchange.answer is None:
            return
        t, unit, pdu = exchange.answer.t, request[0], request[1:]
        self.units.add(unit)
        self.end_t = max(self.end_t, t)
        info = decode_pdu(pdu, is_request=True)
        if info.malformed is not None:
            return
        reply = answer[1:]
        if info.address is None:
            self._verbatim[(unit, pdu)].add(t, reply)
            return
        key = (unit, pdu[0], info.address, info.count or 0)
        failed = reply[0] & 0x80 and len(reply) == 2
        self._outcomes[key].add(t, reply[1] if failed else None)
        if not failed:
            for address, value in _recorded_values(pdu, reply, info.address, info.count or 0):
                self._values[(unit, TABLES[pdu[0]], address)].add(t, value)

    def answer(self, unit: int, pdu: bytes, t: float) -> bytes | None:
        """The answer PDU to ``pdu`` for ``unit`` at recording time ``t``; None: silence
        (a unit the recording never heard from)."""
        if unit not in self.units:
            return None
        info = decode_pdu(pdu, is_request=True)
        if info.malformed is not None or not pdu:
            return _exception(pdu[:1] or b"\x00", ILLEGAL_VALUE)
        if info.address is None:
            verbatim = self._verbatim.get((unit, pdu))
            return verbatim.at(t) if verbatim else _exception(pdu, ILLEGAL_FUNCTION)
        outcome = self._outcomes.get((unit, pdu[0], info.address, info.count or 0))
        if outcome is not None and (code := outcome.at(t)) is not None:
            return _exception(pdu, code)
        values = self._read(unit, TABLES[pdu[0]], info.address, info.count or 0, t)
        if values is None:
            return _exception(pdu, ILLEGAL_ADDRESS)
        return _read_answer(pdu, values) if pdu[0] <= 4 else _write_echo(pdu)

    def _read(self, unit: int, table: str, address: int, count: int,
              t: float) -> list[Value] | None:
        values: list[Value] = []
        for offset in range(count):
            timeline = self._values.get((unit, table, address + offset))
            if timeline is None:
                return None
            values.append(timeline.at(t))
        return values


def _recorded_values(pdu: bytes, reply: bytes, address: int,
                     count: int) -> list[tuple[int, Value]]:
    """(address, value) pairs a good answer (or an acknowledged write) shows."""
    fc = pdu[0]
    if fc in (1, 2):
        return [(address + i, (reply[2 + i // 8] >> (i % 8) & 1,)) for i in range(count)
                if 2 + i // 8 < len(reply)]
    if fc in (3, 4):
        data = reply[2:]
        words = struct.unpack(f">{len(data) // 2}H", data[:len(data) // 2 * 2])
        width = len(words) // count if count and len(words) in (count, 2 * count) else 0
        return [(address + i, tuple(words[i * width:(i + 1) * width])) for i in range(count)
                if width]
    if fc == 5:
        return [(address, (1 if pdu[3] == 0xFF else 0,))]
    if fc == 6:
        return [(address, (int.from_bytes(pdu[3:5], "big"),))]
    data = pdu[6:]
    if fc == 15:
        return [(address + i, (data[i // 8] >> (i % 8) & 1,)) for i in range(count)
                if i // 8 < len(data)]
    words = struct.unpack(f">{len(data) // 2}H", data[:len(data) // 2 * 2])
    return [(address + i, (word,)) for i, word in enumerate(words[:count])]


def _read_answer(pdu: bytes, values: list[Value]) -> bytes:
    if pdu[0] in (1, 2):
        packed = bytearray((len(values) + 7) // 8)
        for i, (bit,) in enumerate(values):
            packed[i // 8] |= bit << (i % 8)
        return bytes([pdu[0], len(packed)]) + bytes(packed)
    words = [word for value in values for word in value]
    return bytes([pdu[0], 2 * len(words)]) + struct.pack(f">{len(words)}H", *words)


def _write_echo(pdu: bytes) -> bytes:
    return pdu if pdu[0] in (5, 6) else pdu[:5]


def _exception(pdu: bytes, code: int) -> bytes:
    return bytes([pdu[0] | 0x80, code])
