"""The server side of pymodbus: the simulator's only import of it.

pymodbus changes its API between minor releases (pinned ``>=3.16,<3.17`` in
pyproject.toml), so ``simserver.py`` (the simulator) sees only what this module offers,
in our own types. The client side is ``pymodbus_client.py``; no other module imports
pymodbus, and the agent's runtime never imports this one.

* ``serve``: a pymodbus server (TCP, or a serial/pty path; socket, RTU or ASCII framing)
  whose every read and write is answered by a plain Python function (``Handler``: a
  ``ServedRequest`` in, a ``Reply`` out).

What this relies on in 3.16 (checked against its source, re-check on an upgrade):
- a server's ``custom_pdu`` classes replace the built-in request class of the same
  function code (``DecodePDU.register``), and their ``datastore_update`` builds the answer;
  raising ``NoSuchIdException`` with ``ignore_missing_devices=True`` sends no answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymodbus import FramerType
from pymodbus.exceptions import NoSuchIdException
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

FRAMERS = {  # as the client's (pymodbus_client.FRAMERS): the two sides share no module
    LinkProtocol.MODBUS_TCP: FramerType.SOCKET,
    LinkProtocol.MODBUS_RTU: FramerType.RTU,
    LinkProtocol.MODBUS_ASCII: FramerType.ASCII,
}


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
