"""The one module that imports pymodbus: everything that depends on its API is here.

pymodbus changes its API between minor releases (pinned ``>=3.16,<3.17`` in
pyproject.toml), so ``transport.py`` (the client the pollers use) and ``simserver.py``
(the simulator) see only what this module offers, in our own types:

* ``WireClient``: one blocking pymodbus client, created with ``retries=0`` (the only retry
  layer is ours). ``request`` returns an ``Answer`` or raises ``WireClosed``, ``NoAnswer``,
  ``Unusable`` or ``Flooded``; the caller turns those into LinkDown / DeviceTimeout /
  BadResponse / LinkFlooded. At most ``READ_LIMIT_BYTES`` are read per request:
  pymodbus's sync receive loop keeps appending to its buffer until the timeout whenever
  the bytes do not make a frame (a lying MBAP length, noise, frames of another
  transaction), so a flooding device would otherwise cost a core for the whole timeout
  and memory far beyond the framer's own ``MAX_SIZE``.
* ``serve``: a pymodbus server (TCP, or a serial/pty path; socket, RTU or ASCII framing)
  whose every read and write is answered by a plain Python function.

What this relies on in 3.16 (checked against its source, re-check on an upgrade):
- the sync clients keep their timeout in ``comm_params.timeout_connect`` twice (client and
  transaction manager hold copies); ``set_timeout`` writes both;
- ``trace_packet(False, buffer)`` is called with the receive buffer, so we can tell "no
  byte at all" (timeout) from "bytes that never made a valid frame" (garbled);
- a read-registers answer is decoded as ``byte_count / 2`` registers without comparing
  with the request, so a Daniel/Enron answer (4 bytes per address) arrives as 2 words per
  address; the caller checks the counts;
- the sync clients move every byte through their ``send(request, addr)`` and
  ``recv(size)`` methods (the transaction manager binds ``send`` when the client is made
  and calls ``recv``), and open and close through ``connect``/``close``: a subclass that
  overrides them sees the raw traffic, which is how a link is recorded (``WireTap``) and
  how the bytes read per request are capped (an exception raised in ``recv`` leaves
  ``sync_execute`` unchanged: it catches only timeouts);
- a server's ``custom_pdu`` classes replace the built-in request class of the same
  function code (``DecodePDU.register``), and their ``datastore_update`` builds the answer;
  raising ``NoSuchIdException`` with ``ignore_missing_devices=True`` sends no answer.
"""

from __future__ import annotations

import contextlib
import select
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import (
    ConnectionException,
    ModbusException,
    ModbusIOException,
    NoSuchIdException,
)
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.pdu.bit_message import (
    ReadCoilsRequest,
    ReadCoilsResponse,
    ReadDiscreteInputsRequest,
    ReadDiscreteInputsResponse,
    WriteMultipleCoilsRequest,
    WriteMultipleCoilsResponse,
    WriteSingleCoilRequest,
    WriteSingleCoilResponse,
)
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
    WriteMultipleRegistersRequest,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterRequest,
    WriteSingleRegisterResponse,
)
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType as SimDataType
from pymodbus.simulator import SimData, SimDevice

from edge_agent.config.schema import LinkProtocol
from edge_agent.link import WireTap

FRAMERS = {
    LinkProtocol.MODBUS_TCP: FramerType.SOCKET,
    LinkProtocol.MODBUS_RTU: FramerType.RTU,
    LinkProtocol.MODBUS_ASCII: FramerType.ASCII,
}


# -- client side -------------------------------------------------------------------------


class WireClosed(Exception):
    """The TCP connection or the serial port broke (or could not be written)."""


class NoAnswer(Exception):
    """No complete, valid frame arrived in time. ``received`` holds the bytes that did
    arrive (empty: silence; otherwise noise, a bad CRC/LRC, a truncated or foreign frame)."""

    def __init__(self, message: str, received: bytes) -> None:
        super().__init__(message)
        self.received = received


class Unusable(Exception):
    """pymodbus could not decode what arrived (a frame its decoder rejected)."""


class Flooded(Exception):
    """More than ``READ_LIMIT_BYTES`` arrived for one request (or while draining a late
    answer): a flooding device. The caller closes the connection."""

    def __init__(self, received: int) -> None:
        super().__init__(f"more than {READ_LIMIT_BYTES} bytes for one request "
                         f"({received} read)")
        self.received = received


MAX_ADU_BYTES = 513  # the longest Modbus frame: ASCII, 1 + 2 * 254 + 2 + 2
READ_LIMIT_BYTES = MAX_ADU_BYTES + 4096  # per request: a late answer, echo, noise fit


@dataclass(frozen=True)
class Answer:
    """A decoded answer, before it is compared with the request.

    ``function_code`` is as received (0x80 set for an exception answer). ``registers``
    holds the words of a register read or the echoed value of a register write; ``bits``
    the bits of a bit read (whole bytes: a multiple of 8) or the echoed coil.
    """

    unit_id: int
    function_code: int
    exception_code: int = 0
    address: int | None = None
    registers: tuple[int, ...] = ()
    bits: tuple[bool, ...] = ()


class WireClient:
    """One pymodbus sync client (TCP, or a serial port), as plain calls and our types."""

    def __init__(self, protocol: LinkProtocol, *, timeout_s: float, name: str,
                 host: str | None = None, tcp_port: int = 502, serial_port: str | None = None,
                 baudrate: int = 9600, bytesize: int = 8, parity: str = "N",
                 stopbits: int = 1, tap: WireTap | None = None) -> None:
        """``tap``, when given, sees every byte sent and received (a recording)."""
        self._received = b""
        framer = FRAMERS[protocol]
        common: dict[str, Any] = dict(framer=framer, timeout=timeout_s, retries=0,
                                      reconnect_delay=0, name=name,
                                      trace_packet=self._trace_packet)
        self._client: ModbusTcpClient | ModbusSerialClient
        if serial_port is None:
            tcp = _CappedTcpClient if tap is None else _TappedTcpClient
            self._client = tcp(host or "", port=tcp_port, **common)
        else:
            serial = _CappedSerialClient if tap is None else _TappedSerialClient
            self._client = serial(serial_port, baudrate=baudrate, bytesize=bytesize,
                                  parity=parity, stopbits=stopbits, **common)
        if tap is not None:
            self._client.tap = tap  # type: ignore[union-attr]

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self._received = b""
        elif data:
            self._received = data  # pymodbus passes its whole receive buffer
        return data

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    def connect(self) -> bool:
        """Open the connection or port; False (never an exception) when it cannot."""
        try:
            return bool(self._client.connect())
        except (OSError, ModbusException):
            return False

    def close(self) -> None:
        with contextlib.suppress(OSError, ModbusException):  # a broken link must close
            self._client.close()

    def set_timeout(self, timeout_s: float) -> None:
        """Answer timeout for the following requests (see the module docstring)."""
        self._client.comm_params.timeout_connect = timeout_s
        self._client.transaction.comm_params.timeout_connect = timeout_s
        port = self._client.socket
        if isinstance(self._client, ModbusSerialClient) and port is not None:
            port.timeout = timeout_s
            port.write_timeout = timeout_s

    def request(self, unit_id: int, function_code: int, address: int, *, count: int = 1,
                value: int | bool = 0) -> Answer:
        """Send one request (function 1, 2, 3, 4, 5 or 6) and return its decoded answer."""
        client = self._client
        calls: dict[int, Callable[[], ModbusPDU]] = {
            1: lambda: client.read_coils(address, count=count, device_id=unit_id),
            2: lambda: client.read_discrete_inputs(address, count=count, device_id=unit_id),
            3: lambda: client.read_holding_registers(address, count=count, device_id=unit_id),
            4: lambda: client.read_input_registers(address, count=count, device_id=unit_id),
            5: lambda: client.write_coil(address, bool(value), device_id=unit_id),
            6: lambda: client.write_register(address, int(value), device_id=unit_id),
        }
        self._received = b""
        try:
            pdu = calls[function_code]()
        except _OverLimit as err:
            raise Flooded(err.received) from None
        except ConnectionException as err:
            raise WireClosed(str(err)) from err
        except ModbusIOException as err:
            raise NoAnswer(str(err), self._received) from err
        except (ModbusException, ValueError, IndexError, struct.error) as err:
            raise Unusable(f"{type(err).__name__}: {err}") from err
        except OSError as err:
            raise WireClosed(str(err)) from err
        return Answer(
            unit_id=int(pdu.dev_id), function_code=int(pdu.function_code),
            exception_code=int(getattr(pdu, "exception_code", 0) or 0),
            address=getattr(pdu, "address", None),
            registers=tuple(int(word) for word in (pdu.registers or ())),
            bits=tuple(bool(bit) for bit in (pdu.bits or ())),
        )

    def drain(self, quiet_s: float, limit_s: float) -> None:
        """Discard input until nothing arrived for ``quiet_s`` (at most ``limit_s``), so a
        late answer cannot be taken for the next request's. Raises WireClosed, or
        Flooded when more than ``READ_LIMIT_BYTES`` kept arriving."""
        port = self._client.socket
        if port is None:
            return
        deadline = time.monotonic() + limit_s
        try:
            if isinstance(self._client, ModbusSerialClient):
                _drain_serial(port, quiet_s, deadline)
            else:
                _drain_socket(port, quiet_s, deadline)
        except (OSError, ValueError) as err:
            raise WireClosed(str(err)) from err


class _OverLimit(Exception):
    """Raised inside pymodbus's receive loop by ``_Capped.recv`` (never leaves
    ``WireClient.request``)."""

    def __init__(self, received: int) -> None:
        super().__init__(f"{received} bytes for one request")
        self.received = received


class _Capped:
    """Counts the bytes a pymodbus sync client reads per request (reset by each
    ``send``) and stops its receive loop past ``READ_LIMIT_BYTES``."""

    _read_since_send = 0

    def send(self, request: bytes, addr: tuple | None = None) -> int:
        self._read_since_send = 0
        return super().send(request, addr)  # type: ignore[misc]

    def recv(self, size: int | None) -> bytes:
        data = super().recv(size)  # type: ignore[misc]
        self._read_since_send += len(data or b"")
        if self._read_since_send > READ_LIMIT_BYTES:
            raise _OverLimit(self._read_since_send)
        return data


class _CappedTcpClient(_Capped, ModbusTcpClient):
    pass


class _CappedSerialClient(_Capped, ModbusSerialClient):
    pass


class _Tapped:
    """Shows ``tap`` what a pymodbus sync client sends, receives, opens and closes (see
    the module docstring for the methods relied on). Mixed in before the client class."""

    tap: WireTap

    def connect(self) -> bool:
        was_open = self.socket is not None  # type: ignore[attr-defined]
        opened = bool(super().connect())  # type: ignore[misc]
        if opened and not was_open:
            self.tap.opened()
        return opened

    def close(self) -> None:
        was_open = self.socket is not None  # type: ignore[attr-defined]
        super().close()  # type: ignore[misc]
        if was_open:
            self.tap.closed()

    def send(self, request: bytes, addr: tuple | None = None) -> int:
        sent = super().send(request, addr)  # type: ignore[misc]
        self.tap.sent(request[:sent] if isinstance(sent, int) else request)
        return sent

    def recv(self, size: int | None) -> bytes:
        data = super().recv(size)  # type: ignore[misc]
        if data:
            self.tap.received(data)
        return data


class _TappedTcpClient(_Tapped, _CappedTcpClient):
    pass


class _TappedSerialClient(_Tapped, _CappedSerialClient):
    pass


def _drain_serial(port: Any, quiet_s: float, deadline: float) -> None:
    discarded = port.in_waiting
    port.reset_input_buffer()
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < quiet_s and time.monotonic() < deadline:
        time.sleep(quiet_s / 5)
        if waiting := port.in_waiting:
            discarded += waiting
            if discarded > READ_LIMIT_BYTES:
                raise Flooded(discarded)
            port.reset_input_buffer()
            quiet_since = time.monotonic()


def _drain_socket(sock: Any, quiet_s: float, deadline: float) -> None:
    sock.setblocking(False)
    discarded = 0
    while time.monotonic() < deadline:
        if not select.select([sock], [], [], quiet_s)[0]:
            return
        if not (chunk := sock.recv(4096)):
            raise OSError("connection closed by the other end")
        discarded += len(chunk)
        if discarded > READ_LIMIT_BYTES:
            raise Flooded(discarded)


# -- server side -------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedRequest:
    """A request as a simulated device sees it; ``values`` is what a write carried
    (coils as 0/1)."""

    unit_id: int
    function_code: int
    address: int
    count: int
    values: tuple[int, ...] = ()


@dataclass(frozen=True)
class Reply:
    """What to answer: ``values`` (registers, or bits as 0/1; any number of them, so a
    32-bit-register device can answer two words per address), a Modbus ``exception``
    code, or nothing at all (``silent``: a dead device on a live bus)."""

    values: tuple[int, ...] = ()
    exception: int = 0
    silent: bool = False


Handler = Callable[[ServedRequest], Reply]


def _read_reply(response: type[ModbusPDU], bits: bool) -> Callable[[ModbusPDU, Reply], ModbusPDU]:
    def build(_request: ModbusPDU, reply: Reply) -> ModbusPDU:
        if bits:
            return response(bits=[bool(v) for v in reply.values])
        return response(registers=list(reply.values))
    return build


def _single_write_reply(request: ModbusPDU, reply: Reply) -> ModbusPDU:
    if request.function_code == 5:
        return WriteSingleCoilResponse(address=request.address, bits=list(request.bits[:1]))
    return WriteSingleRegisterResponse(address=request.address,
                                       registers=list(request.registers[:1]))


def _multiple_write_reply(request: ModbusPDU, reply: Reply) -> ModbusPDU:
    response = WriteMultipleCoilsResponse if request.function_code == 15 \
        else WriteMultipleRegistersResponse
    return response(address=request.address, count=request.count)


_SERVED: dict[type[ModbusPDU], Callable[[ModbusPDU, Reply], ModbusPDU]] = {
    ReadCoilsRequest: _read_reply(ReadCoilsResponse, bits=True),
    ReadDiscreteInputsRequest: _read_reply(ReadDiscreteInputsResponse, bits=True),
    ReadHoldingRegistersRequest: _read_reply(ReadHoldingRegistersResponse, bits=False),
    ReadInputRegistersRequest: _read_reply(ReadInputRegistersResponse, bits=False),
    WriteSingleCoilRequest: _single_write_reply,
    WriteSingleRegisterRequest: _single_write_reply,
    WriteMultipleCoilsRequest: _multiple_write_reply,
    WriteMultipleRegistersRequest: _multiple_write_reply,
}


def _served_request(pdu: ModbusPDU, unit_id: int) -> ServedRequest:
    code = pdu.function_code
    if code in (1, 2, 3, 4):
        return ServedRequest(unit_id, code, pdu.address, pdu.count)
    values = tuple(int(v) for v in (pdu.bits if code in (5, 15) else pdu.registers))
    if code in (5, 6):
        values = values[:1]
    return ServedRequest(unit_id, code, pdu.address, len(values), values)


def _request_classes(handler: Handler) -> list[type[ModbusPDU]]:
    """Subclasses of pymodbus' request classes whose answers come from ``handler``."""
    classes: list[type[ModbusPDU]] = []
    for base, build in _SERVED.items():
        async def datastore_update(self: ModbusPDU, _context: object, device_id: int,
                                   _build: Callable[[ModbusPDU, Reply], ModbusPDU] = build
                                   ) -> ModbusPDU:
            reply = handler(_served_request(self, device_id))
            if reply.silent:
                raise NoSuchIdException(f"unit {device_id} does not answer")
            if reply.exception:
                return ExceptionResponse(self.function_code, reply.exception)
            return _build(self, reply)

        classes.append(type(f"Served{base.__name__}", (base,),
                            {"datastore_update": datastore_update}))
    return classes


class ServerHandle:
    """A started pymodbus server; ``tcp_port`` is the bound port of a TCP server."""

    def __init__(self, server: ModbusTcpServer | ModbusSerialServer,
                 tcp_port: int | None) -> None:
        self._server = server
        self.tcp_port = tcp_port

    async def close(self) -> None:
        await self._server.shutdown()


async def serve(handler: Handler, unit_ids: list[int], protocol: LinkProtocol, *,
                tcp_port: int | None = None, serial_port: str | None = None,
                baudrate: int = 9600, before_reply: Callable[[int], None] | None = None,
                host: str = "127.0.0.1") -> ServerHandle:
    """Start a server in the running event loop; ``tcp_port`` 0 binds a free port of
    ``host``.

    ``before_reply(unit_id)`` runs in the loop just before an answer is framed and sent;
    blocking there delays the answer (and, like a half-duplex bus, everything after it).
    """
    def trace_pdu(sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if sending and before_reply is not None:
            before_reply(int(pdu.dev_id))
        return pdu

    # pymodbus wants a datastore; ours is never consulted for the served function codes.
    devices = [SimDevice(unit_id, simdata=[SimData(0, count=1, datatype=SimDataType.REGISTERS)])
               for unit_id in unit_ids] or [SimDevice(0, simdata=[SimData(0)])]
    common: dict[str, Any] = dict(framer=FRAMERS[protocol], ignore_missing_devices=True,
                                  trace_pdu=trace_pdu, custom_pdu=_request_classes(handler))
    server: ModbusTcpServer | ModbusSerialServer
    if serial_port is not None:
        server = ModbusSerialServer(devices, port=serial_port, baudrate=baudrate, **common)
    else:
        server = ModbusTcpServer(devices, address=(host, tcp_port or 0), **common)
    await server.serve_forever(background=True)
    bound = None if serial_port is not None else server.transport.sockets[0].getsockname()[1]
    return ServerHandle(server, bound)
