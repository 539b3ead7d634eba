"""The one module that imports pymodbus: a blocking client per link, and a simulator server.

pymodbus changes its API between minor releases (pinned in pyproject.toml); everything
version-specific is here. The client is created with ``retries=0``: the only retry layer
is ours (edge_agent.retry, configured from the station file). Errors come out typed:

* ``LinkDown``      cannot connect, or the connection broke (reason ``no_connection``)
* ``DeviceTimeout`` no (complete, valid) answer in time (reason ``timeout``)
* ``BadResponse``   an answer that does not fit the request (reason ``bad_response``)
* ``ModbusExceptionReply`` the device answered with a Modbus exception (``exception_XX``)

The first three are transient (worth a retry); an exception reply is transient only for
codes 05/06 (acknowledge / busy) and the gateway codes 0A/0B.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial

from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType as SimDataType
from pymodbus.simulator import SimData, SimDevice

from edge_agent.config.schema import Link, RegisterKind, SerialLink, TcpLink
from edge_agent.modbus.serialports import explain_missing

log = logging.getLogger(__name__)
# pymodbus logs every timeout at ERROR on its own; our poller logs transitions instead.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

_TRANSIENT_EXCEPTION_CODES = {0x05, 0x06, 0x0A, 0x0B}
_QUIET_LINE_S = 0.1  # silence that ends a late answer on a serial line


class ModbusError(Exception):
    """A failed Modbus read; ``reason`` is the quality reason readings get."""

    reason = "modbus_error"
    transient = True


class LinkDown(ModbusError):
    reason = "no_connection"


class DeviceTimeout(ModbusError):
    reason = "timeout"


class BadResponse(ModbusError):
    reason = "bad_response"


class ModbusExceptionReply(ModbusError):
    """The device answered with exception ``code`` (02: illegal data address, ...)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = f"exception_{code:02x}"
        self.transient = code in _TRANSIENT_EXCEPTION_CODES


class ModbusLinkClient:
    """A blocking Modbus client for one link; used only by that link's poller thread."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self._client = self._make_client(link)
        self._last_request_end = 0.0

    @staticmethod
    def _make_client(link: Link) -> ModbusTcpClient | ModbusSerialClient:
        timeout_s = link.timeout_ms / 1000
        if isinstance(link, TcpLink):
            return ModbusTcpClient(link.host, port=link.port, timeout=timeout_s, retries=0,
                                   reconnect_delay=0, name=link.name)
        return ModbusSerialClient(
            link.port, framer=FramerType.RTU, baudrate=link.baudrate, bytesize=link.bytesize,
            parity=link.parity.value, stopbits=link.stopbits, timeout=timeout_s, retries=0,
            reconnect_delay=0, name=link.name,
        )

    def _ensure_connected(self) -> None:
        if self._client.connected:
            return
        try:
            ok = self._client.connect()
        except (OSError, ModbusException) as err:
            raise LinkDown(f"{self.link.name}: cannot connect: {err}") from err
        if not ok:
            hint = explain_missing(self.link.port) if isinstance(self.link, SerialLink) \
                else None
            raise LinkDown(f"{self.link.name}: cannot connect to {_describe(self.link)}"
                           + (f": {hint}" if hint else ""))
        if isinstance(self.link, TcpLink) and self.link.connect_pause_ms:
            time.sleep(self.link.connect_pause_ms / 1000)

    def _pace(self) -> None:
        gap_s = self.link.request_gap_ms / 1000
        wait_s = self._last_request_end + gap_s - time.monotonic()
        if wait_s > 0:
            time.sleep(wait_s)

    def read_registers(self, unit_id: int, kind: RegisterKind, address: int,
                       count: int) -> list[int]:
        """Read ``count`` registers at 0-based ``address``. Raises a ModbusError subclass."""
        self._ensure_connected()
        self._pace()
        method = (self._client.read_holding_registers if kind is RegisterKind.HOLDING
                  else self._client.read_input_registers)
        try:
            response = method(address, count=count, device_id=unit_id)
        except ConnectionException as err:
            log.debug("%s: %s", self.link.name, err)
            self.close()
            raise LinkDown(f"{self.link.name}: connection to {_describe(self.link)} "
                           "closed by the other end") from err
        except ModbusIOException as err:
            log.debug("%s unit %d: %s", self.link.name, unit_id, err)
            self._after_timeout()
            raise DeviceTimeout(f"unit {unit_id}: no valid answer within "
                                f"{self.link.timeout_ms} ms") from err
        except (OSError, ModbusException) as err:
            self.close()
            raise BadResponse(f"unit {unit_id}: unusable answer ({err})") from err
        finally:
            self._last_request_end = time.monotonic()
        if response.isError():
            code = int(getattr(response, "exception_code", 0) or 0)
            raise ModbusExceptionReply(code, f"unit {unit_id}: exception {code:02x} reading "
                                             f"{kind.value} {address}+{count}")
        registers = list(getattr(response, "registers", []) or [])
        expected_fc = 3 if kind is RegisterKind.HOLDING else 4
        if response.function_code != expected_fc or len(registers) != count:
            # pymodbus does not match RTU answers to requests: this is someone else's answer
            # (typically a late one to the previous request). Never decode it.
            self._after_timeout()
            raise BadResponse(f"unit {unit_id}: answer does not fit the request (function "
                              f"{response.function_code}, {len(registers)} registers; asked "
                              f"function {expected_fc}, {count} registers)")
        return registers

    def _after_timeout(self) -> None:
        """A late answer would be read as the next request's answer. TCP: drop the
        connection. Serial: wait until the line is quiet, then discard what arrived."""
        if isinstance(self.link, TcpLink):
            self.close()
            return
        port = getattr(self._client, "socket", None)
        if port is None:
            return
        deadline = time.monotonic() + self.link.timeout_ms / 1000
        quiet_since = time.monotonic()
        try:
            port.reset_input_buffer()
            while time.monotonic() - quiet_since < _QUIET_LINE_S and \
                    time.monotonic() < deadline:
                time.sleep(_QUIET_LINE_S / 5)
                if port.in_waiting:
                    port.reset_input_buffer()
                    quiet_since = time.monotonic()
        except (OSError, ValueError):  # port gone: the next request reconnects
            self.close()

    def close(self) -> None:
        try:
            self._client.close()
        except (OSError, ModbusException):  # closing a broken link must not raise
            log.debug("closing %s failed", self.link.name, exc_info=True)


def _describe(link: Link) -> str:
    if isinstance(link, TcpLink):
        return f"{link.host}:{link.port}"
    return f"{link.port} ({link.baudrate} {link.bytesize}{link.parity.value}{link.stopbits})"


# -- simulator side (demo and tests) ----------------------------------------------------


@dataclass
class SimUnit:
    """Register image of one simulated device; values may change while it is served."""

    unit_id: int
    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)
    size: int = 1024
    muted: bool = False


class SimServer:
    """A pymodbus server (TCP or RTU on a serial/pty path) in its own thread and loop.

    Addresses 0..size-1 of each unit are valid; reads beyond get exception 02. A muted
    unit receives requests but never answers (a dead device on a live bus).
    """

    def __init__(self, units: Iterable[SimUnit], *, tcp_port: int | None = None,
                 serial_port: str | None = None, baudrate: int = 9600) -> None:
        self.units = {unit.unit_id: unit for unit in units}
        self._lock = threading.Lock()
        self._tcp_port = tcp_port
        self._serial_port = serial_port
        self._baudrate = baudrate
        self._loop = asyncio.new_event_loop()
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="modbus-sim")

    def start(self) -> SimServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    async def _start(self) -> None:
        devices = [self._sim_device(unit) for unit in self.units.values()]
        if self._serial_port is not None:
            self._server = ModbusSerialServer(
                devices, framer=FramerType.RTU, port=self._serial_port,
                baudrate=self._baudrate, trace_packet=partial(self._trace, rtu=True))
        else:
            self._server = ModbusTcpServer(
                devices, address=("127.0.0.1", self._tcp_port or 0),
                trace_packet=partial(self._trace, rtu=False))
        await self._server.serve_forever(background=True)
        if self._serial_port is None and not self._tcp_port:
            self._tcp_port = self._server.transport.sockets[0].getsockname()[1]

    @property
    def tcp_port(self) -> int:
        assert self._tcp_port is not None, "not a started TCP server"
        return self._tcp_port

    def _sim_device(self, unit: SimUnit) -> SimDevice:
        def bits() -> list[SimData]:
            return [SimData(0, count=16, values=False, datatype=SimDataType.BITS)]

        def regs() -> list[SimData]:
            return [SimData(0, count=unit.size, values=0, datatype=SimDataType.REGISTERS)]

        return SimDevice(unit.unit_id, simdata=(bits(), bits(), regs(), regs()),
                         action=partial(self._refresh, unit.unit_id))

    async def _refresh(self, unit_id: int, function_code: int, start_address: int,
                       address: int, count: int, registers: list[int],
                       _set_values: object) -> ExcCodes | None:
        """Copy the current image into pymodbus' block just before it answers."""
        unit = self.units[unit_id]
        image = unit.input if function_code == 4 else unit.holding
        with self._lock:
            for offset in range(count):
                registers[address - start_address + offset] = image.get(address + offset, 0)
        return None

    def _trace(self, sending: bool, packet: bytes, *, rtu: bool) -> bytes:
        if not sending or not packet:
            return packet
        unit_id = packet[0] if rtu else packet[6]
        unit = self.units.get(unit_id)
        return b"" if unit is not None and unit.muted else packet

    def set_words(self, unit_id: int, kind: RegisterKind, address: int,
                  words: Iterable[int]) -> None:
        """Write raw 16-bit words into a unit's image (thread-safe)."""
        image = self.units[unit_id].holding if kind is RegisterKind.HOLDING \
            else self.units[unit_id].input
        with self._lock:
            for offset, word in enumerate(words):
                image[address + offset] = word

    def mute(self, unit_id: int, muted: bool = True) -> None:
        self.units[unit_id].muted = muted

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

