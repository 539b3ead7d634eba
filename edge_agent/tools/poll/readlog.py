"""Link clients for one look at a device: they read, keep what was read, and never write.

``ReadOnlyModbus`` stands between a driver and the link's Modbus client: every read
goes to the device and its words or bits are kept by address (for ``--raw``); the
writes a driver may make (a GC driver clearing its new-result flag) are withheld and
listed, because clearing the flag would take the analysis away from the service.
``ReplayedModbus`` answers the same reads from what was kept, so a second driver (the
triggered one, which decides "new") decodes the very same words without a second
exchange. ``KeptText`` keeps the frames a text driver's poll received.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_agent_drivers.modbus.protocol.transport import ModbusLinkClient
from edge_agent_drivers.modbus.settings import RegisterKind
from edge_agent_drivers.serialtext.protocol.client import TextLinkClient, Wanted
from edge_agent_drivers.serialtext.protocol.framing import Deframer, FrameEvent

# (unit id, table, address) -> the words at that address (two for a 32-bit Enron one)
WordKey = tuple[int, RegisterKind, int]


@dataclass
class ModbusReads:
    """What one poll read, by address, and the writes it withheld."""

    words: dict[WordKey, list[int]] = field(default_factory=dict)
    bits: dict[WordKey, bool] = field(default_factory=dict)
    withheld: list[str] = field(default_factory=list)


class ReadOnlyModbus:
    """The driver-facing part of ``ModbusLinkClient``: reads pass, writes are withheld."""

    def __init__(self, client: ModbusLinkClient, reads: ModbusReads) -> None:
        self._client = client
        self.reads = reads

    def read_registers(self, unit_id: int, kind: RegisterKind, address: int, count: int, *,
                       enron_32bit: bool = False) -> list[int]:
        words = self._client.read_registers(unit_id, kind, address, count,
                                            enron_32bit=enron_32bit)
        per_address = 2 if enron_32bit else 1
        for index in range(count):
            self.reads.words[(unit_id, kind, address + index)] = \
                words[index * per_address:(index + 1) * per_address]
        return words

    def read_bits(self, unit_id: int, kind: RegisterKind, address: int,
                  count: int) -> list[bool]:
        bits = self._client.read_bits(unit_id, kind, address, count)
        for index, bit in enumerate(bits):
            self.reads.bits[(unit_id, kind, address + index)] = bit
        return bits

    def write_register(self, unit_id: int, address: int, value: int) -> None:
        self.reads.withheld.append(f"write {value} to holding register {address}")

    def write_coil(self, unit_id: int, address: int, value: bool) -> None:
        self.reads.withheld.append(f"write {int(value)} to coil {address}")


class ReplayedModbus(ReadOnlyModbus):
    """Answers reads from ``reads`` when everything asked for was read already, else
    from the device (an exception-02 split may ask differently); writes are withheld."""

    def read_registers(self, unit_id: int, kind: RegisterKind, address: int, count: int, *,
                       enron_32bit: bool = False) -> list[int]:
        keys = [(unit_id, kind, address + index) for index in range(count)]
        if all(key in self.reads.words for key in keys):
            return [word for key in keys for word in self.reads.words[key]]
        return super().read_registers(unit_id, kind, address, count,
                                      enron_32bit=enron_32bit)

    def read_bits(self, unit_id: int, kind: RegisterKind, address: int,
                  count: int) -> list[bool]:
        keys = [(unit_id, kind, address + index) for index in range(count)]
        if all(key in self.reads.bits for key in keys):
            return [self.reads.bits[key] for key in keys]
        return super().read_bits(unit_id, kind, address, count)


class KeptText:
    """The driver-facing part of ``TextLinkClient``, keeping the frames each poll got."""

    def __init__(self, client: TextLinkClient) -> None:
        self._client = client
        self.events: list[FrameEvent] = []

    def ask(self, request: bytes, deframer: Deframer, is_answer: Wanted,
            timeout_ms: int | None) -> list[FrameEvent]:
        events = self._client.ask(request, deframer, is_answer, timeout_ms)
        self.events.extend(events)
        return events

    def listen(self, deframer: Deframer, is_record: Wanted,
               timeout_ms: int | None) -> list[FrameEvent]:
        events = self._client.listen(deframer, is_record, timeout_ms)
        self.events.extend(events)
        return events
