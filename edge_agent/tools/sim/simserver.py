"""Simulated Modbus devices for the demo and the tests: a real pymodbus server (through
``pymodbus_server``) whose answers come from plain register images.

A ``SimServer`` plays one TCP endpoint (Modbus TCP, RTU over TCP as a transparent
serial-to-Ethernet gateway, or ASCII over TCP) or one serial bus on a pty path (RTU or
ASCII) with any number of units. Each ``SimUnit`` can misbehave the ways field devices do,
so end-to-end tests can prove what the agent does about it:

* ``holes``: addresses that answer exception 02 when a read touches them, so a merged read
  spanning a hole fails while the smaller reads around it succeed;
* ``enron``: Daniel/Enron 32-bit register ranges (one address holds 32 bits; a read of
  ``count`` addresses answers ``4 * count`` bytes);
* ``muted``: receives requests, never answers (dead device on a live bus);
* ``delay_s``: answers late. The delay blocks the whole server, as one talker at a time
  does on a half-duplex bus.

Everything a master wrote is kept in the image (``get_words``/``get_bits``) and in the
request log (``requests``/``writes``), so a test can prove a write happened, or did not.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from edge_agent_drivers.modbus.protocol.pymodbus_server import (
    Reply,
    ServedRequest,
    ServerHandle,
    serve,
)
from edge_agent_drivers.modbus.settings import RegisterKind

from edge_agent.config.schema import LinkProtocol

ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE = 0x01, 0x02, 0x03
MAX_ENRON_VALUES = 63  # 4 bytes per value in a byte-counted answer of at most 255 bytes
_KINDS = {1: RegisterKind.COIL, 2: RegisterKind.DISCRETE, 3: RegisterKind.HOLDING,
          4: RegisterKind.INPUT, 5: RegisterKind.COIL, 6: RegisterKind.HOLDING,
          15: RegisterKind.COIL, 16: RegisterKind.HOLDING}
WRITE_FUNCTIONS = (5, 6, 15, 16)


@dataclass
class SimUnit:
    """Data image and behaviour of one simulated device; may change while it is served.

    Addresses 0..size-1 of every table are valid, plus the ``enron`` ranges, where each
    address of the holding and input tables holds a 32-bit value (0..2**32-1). ``holes``
    maps a table to addresses that answer exception 02.
    """

    unit_id: int
    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)
    size: int = 1024
    muted: bool = False
    coils: dict[int, bool] = field(default_factory=dict)
    discrete: dict[int, bool] = field(default_factory=dict)
    holes: dict[RegisterKind, Iterable[int]] = field(default_factory=dict)
    enron: tuple[range, ...] = ()
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        self.holes = {kind: frozenset(addresses) for kind, addresses in self.holes.items()}

    def table(self, kind: RegisterKind) -> dict[int, int] | dict[int, bool]:
        return {RegisterKind.COIL: self.coils, RegisterKind.DISCRETE: self.discrete,
                RegisterKind.HOLDING: self.holding, RegisterKind.INPUT: self.input}[kind]

    def enron_range(self, address: int) -> range | None:
        return next((span for span in self.enron if address in span), None)


def answer(unit: SimUnit, request: ServedRequest) -> Reply:
    """What ``unit`` answers to ``request`` (pure, apart from storing what is written)."""
    if unit.muted:
        return Reply(silent=True)
    kind = _KINDS.get(request.function_code)
    if kind is None:
        return Reply(exception=ILLEGAL_FUNCTION)
    span = range(request.address, request.address + request.count)
    if not kind.is_bit and (enron := unit.enron_range(request.address)) is not None:
        return _answer_enron(unit, kind, request, span, enron)
    touches_enron = not kind.is_bit and any(unit.enron_range(a) is not None for a in span)
    holes = unit.holes.get(kind, frozenset())
    if span.stop > unit.size or touches_enron or any(a in holes for a in span):
        return Reply(exception=ILLEGAL_ADDRESS)
    image = unit.table(kind)
    if request.function_code in WRITE_FUNCTIONS:
        for address, value in zip(span, request.values, strict=True):
            image[address] = bool(value) if kind.is_bit else value  # type: ignore[assignment]
        return Reply()
    return Reply(values=tuple(int(image.get(a, 0)) for a in span))


def _answer_enron(unit: SimUnit, kind: RegisterKind, request: ServedRequest, span: range,
                  enron: range) -> Reply:
    """Two words per address, high word first; writes to 32-bit registers are refused."""
    if request.function_code in WRITE_FUNCTIONS or span[-1] not in enron:
        return Reply(exception=ILLEGAL_ADDRESS)
    if request.count > MAX_ENRON_VALUES:
        return Reply(exception=ILLEGAL_VALUE)
    image = unit.table(kind)
    words: list[int] = []
    for address in span:
        value = int(image.get(address, 0)) & 0xFFFFFFFF
        words += [value >> 16, value & 0xFFFF]
    return Reply(values=tuple(words))


class SimServer:
    """A pymodbus server in its own thread and event loop, serving ``units``.

    ``tcp_port`` 0 (or None) binds a free port (read it from ``tcp_port`` after
    ``start``); ``serial_port`` serves a serial or pty path instead. ``protocol`` defaults
    to Modbus TCP on TCP and RTU on a serial path; RTU or ASCII on TCP play a gateway.
    """

    def __init__(self, units: Iterable[SimUnit], *, tcp_port: int | None = None,
                 serial_port: str | None = None, baudrate: int = 9600,
                 protocol: LinkProtocol | None = None, host: str = "127.0.0.1") -> None:
        self.units = {unit.unit_id: unit for unit in units}
        self.protocol = protocol or (LinkProtocol.MODBUS_RTU if serial_port is not None
                                     else LinkProtocol.MODBUS_TCP)
        self._lock = threading.Lock()
        self._tcp_port = tcp_port
        self._serial_port = serial_port
        self._baudrate = baudrate
        self._host = host
        self._log: deque[ServedRequest] = deque(maxlen=100_000)
        self._loop = asyncio.new_event_loop()
        self._handle: ServerHandle | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="modbus-sim")

    def start(self) -> SimServer:
        self._thread.start()
        started = serve(self._handle_request, list(self.units), self.protocol,
                        tcp_port=self._tcp_port, serial_port=self._serial_port,
                        baudrate=self._baudrate, before_reply=self._before_reply,
                        host=self._host)
        self._handle = asyncio.run_coroutine_threadsafe(started, self._loop).result(timeout=10)
        if self._handle.tcp_port is not None:
            self._tcp_port = self._handle.tcp_port
        return self

    def __enter__(self) -> SimServer:
        """``with SimServer(...) as server:`` serves for the block (starting it unless
        ``start`` was called) and stops it however the block ends."""
        if self._handle is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def tcp_port(self) -> int:
        assert self._tcp_port is not None, "not a started TCP server"
        return self._tcp_port

    def _handle_request(self, request: ServedRequest) -> Reply:
        with self._lock:
            self._log.append(request)
            unit = self.units.get(request.unit_id)
            return Reply(silent=True) if unit is None else answer(unit, request)

    def _before_reply(self, unit_id: int) -> None:
        with self._lock:
            unit = self.units.get(unit_id)
            delay_s = unit.delay_s if unit is not None else 0.0
        if delay_s > 0:
            time.sleep(delay_s)

    # -- images ----------------------------------------------------------------------

    def set_words(self, unit_id: int, kind: RegisterKind, address: int,
                  words: Iterable[int]) -> None:
        """Write raw 16-bit words into a unit's holding or input table (thread-safe)."""
        image = self.units[unit_id].table(kind)
        with self._lock:
            for offset, word in enumerate(words):
                image[address + offset] = word

    def set_image(self, unit_id: int, image: Mapping[tuple[RegisterKind, int], int]) -> None:
        """Write words (or 32-bit values, in ``enron`` ranges) at (table, address) of one
        unit, all in one step: no request is answered between two of them."""
        unit = self.units[unit_id]
        with self._lock:
            for (kind, address), value in image.items():
                unit.table(kind)[address] = value  # type: ignore[assignment]

    def set_values32(self, unit_id: int, kind: RegisterKind, address: int,
                     values: Iterable[int]) -> None:
        """Write 32-bit values into an ``enron`` range, one value per address."""
        self.set_words(unit_id, kind, address, (value & 0xFFFFFFFF for value in values))

    def get_words(self, unit_id: int, kind: RegisterKind, address: int,
                  count: int = 1) -> list[int]:
        """The words (or, in an ``enron`` range, 32-bit values) a unit holds now."""
        image = self.units[unit_id].table(kind)
        with self._lock:
            return [int(image.get(address + offset, 0)) for offset in range(count)]

    def set_bits(self, unit_id: int, kind: RegisterKind, address: int,
                 bits: Iterable[bool]) -> None:
        """Write coils or discrete inputs into a unit's image (thread-safe)."""
        image = self.units[unit_id].table(kind)
        with self._lock:
            for offset, bit in enumerate(bits):
                image[address + offset] = bool(bit)

    def get_bits(self, unit_id: int, kind: RegisterKind, address: int,
                 count: int = 1) -> list[bool]:
        image = self.units[unit_id].table(kind)
        with self._lock:
            return [bool(image.get(address + offset, False)) for offset in range(count)]

    # -- behaviour -------------------------------------------------------------------

    def mute(self, unit_id: int, muted: bool = True) -> None:
        with self._lock:
            self.units[unit_id].muted = muted

    def set_delay(self, unit_id: int, delay_s: float) -> None:
        """Answer ``unit_id``'s requests ``delay_s`` seconds late (0: at once)."""
        with self._lock:
            self.units[unit_id].delay_s = delay_s

    def add_hole(self, unit_id: int, kind: RegisterKind, address: int, count: int = 1) -> None:
        """Make ``address..address+count-1`` of ``kind`` answer exception 02."""
        with self._lock:
            unit = self.units[unit_id]
            unit.holes = {**unit.holes, kind: frozenset(unit.holes.get(kind, ()))
                          | frozenset(range(address, address + count))}

    @property
    def requests(self) -> list[ServedRequest]:
        """Every request received so far, oldest first (muted units' included)."""
        with self._lock:
            return list(self._log)

    def writes(self, unit_id: int) -> list[ServedRequest]:
        """The write requests (functions 5, 6, 15, 16) ``unit_id`` received."""
        return [r for r in self.requests
                if r.unit_id == unit_id and r.function_code in WRITE_FUNCTIONS]

    def stop(self) -> None:
        if self._handle is not None:
            asyncio.run_coroutine_threadsafe(self._handle.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
