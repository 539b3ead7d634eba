"""The client side of pymodbus: the only module of the agent's runtime that imports it.

pymodbus changes its API between minor releases (pinned ``>=3.16,<3.17`` in
pyproject.toml), so ``transport.py`` (the client the pollers use) sees only what this
module offers, in our own types. The simulator's side is ``pymodbus_server.py``; no
other module imports pymodbus.

* ``WireClient``: one blocking pymodbus client, created with ``retries=0`` (the only retry
  layer is ours). ``request`` returns an ``Answer`` or raises ``WireClosed``, ``NoAnswer``,
  ``Unusable`` or ``Flooded``; the caller turns those into LinkDown / DeviceTimeout /
  BadResponse / LinkFlooded. At most ``READ_LIMIT_BYTES`` are read per request:
  pymodbus's sync receive loop keeps appending to its buffer until the timeout whenever
  the bytes do not make a frame (a lying MBAP length, noise, frames of another
  transaction), so a flooding device would otherwise cost a core for the whole timeout
  and memory far beyond the framer's own ``MAX_SIZE``.

What this relies on in 3.16 (checked against its source, re-check on an upgrade):
- the sync clients keep their timeout in ``comm_params.timeout_connect`` twice (client and
  transaction manager hold copies); ``set_timeout`` writes both;
- ``trace_packet(False, buffer)`` is called with the receive buffer, so we can tell "no
  byte at all" (timeout) from "bytes that never made a valid frame" (garbled);
- a read-registers answer is decoded as ``byte_count / 2`` registers without comparing
  with the request, so a Daniel/Enron answer (4 bytes per address) arrives as 2 words per
  address; the caller checks the counts;
- the register words of an answer (a read, a register write's echo) are ints unpacked
  with ``struct``, so ``Answer`` copies them without converting each one;
- a read-registers answer's ``decode`` refuses a byte count not below the data's length
  (``ModbusIOException``) and otherwise unpacks ``byte_count // 2`` words one
  ``struct.unpack`` at a time; ``client.register`` puts a response class in that
  client's decoder only (it copies the shared table first), which is how ours, the same
  words in one unpack, replace them (``_WholeWords``);
- the sync clients move every byte through their ``send(request, addr)`` and
  ``recv(size)`` methods (the transaction manager binds ``send`` when the client is made
  and calls ``recv``), and open and close through ``connect``/``close``: a subclass that
  overrides them sees the raw traffic, which is how a link is recorded (``WireTap``) and
  how the bytes read per request are capped (an exception raised in ``recv`` leaves
  ``sync_execute`` unchanged: it catches only timeouts);
- the sync receive loop (``TransactionManager.sync_get_response``) calls only
  ``recv(None)``, expects the first bytes that arrive or b"" after the timeout, and
  ``ModbusTcpClient._handle_abrupt_socket_close`` closes the client and raises
  ``ConnectionException`` when the other end closed: our TCP client's ``recv`` keeps
  that with a blocking socket and the kernel's timeouts, one system call per send and
  per receive (``_CappedTcpClient.recv``);
- ``DecodePDU.decode`` formats ``str(pdu)`` of every answer for a debug line even with
  logging off: our answer classes make it short;
- ``ModbusTcpClient.connect`` opens ``socket.create_connection`` with ``comm_params``'s
  host, port, ``timeout_connect`` and ``source_address``, and only logs why it failed:
  our TCP client opens the socket the same way and keeps the reason ("connection
  refused"), which the technician needs more than "cannot connect".
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from typing import Any, NamedTuple, Protocol

from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)

from edge_agent.config.schema import LinkProtocol
from edge_agent.link import WireTap


class DrainClock(Protocol):
    """The time a serial drain reads and waits by (``time`` itself in service)."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float, /) -> None: ...


# The clock of ``_drain_serial``, a module attribute so that a test can replace it: a test
# that proves the drain decides when a late answer lands inside the drain's wait (on its
# first sleep), instead of racing a real 100 ms window against the machine's load
# (tests/support/drainclock.py). Nothing in service changes it.
drain_clock: DrainClock = time


FRAMERS = {
    LinkProtocol.MODBUS_TCP: FramerType.SOCKET,
    LinkProtocol.MODBUS_RTU: FramerType.RTU,
    LinkProtocol.MODBUS_ASCII: FramerType.ASCII,
}


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


class Answer(NamedTuple):
    """A decoded answer, before it is compared with the request.

    ``function_code`` is as received (0x80 set for an exception answer). ``registers``
    holds the words of a register read or the echoed value of a register write; ``bits``
    the bits of a bit read (whole bytes: a multiple of 8) or the echoed coil.

    A named tuple, not a frozen dataclass: one is made per request, and the dataclass's
    six ``object.__setattr__`` calls cost more than the rest of ``request`` (issue 11).
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
        self._client.register(_HoldingWords)
        self._client.register(_InputWords)

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self._received = b""
        elif data:
            self._received = data  # pymodbus passes its whole receive buffer
        return data

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    @property
    def connect_error(self) -> str | None:
        """Why the last ``connect`` of a TCP link failed ("connection refused"); None for
        a serial port or after a success."""
        return getattr(self._client, "connect_error", None)

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
        self._received = b""
        try:
            pdu = self._call(unit_id, function_code, address, count, value)
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
        registers, bits = pdu.registers, pdu.bits
        return Answer(
            int(pdu.dev_id), int(pdu.function_code),
            int(getattr(pdu, "exception_code", 0) or 0), getattr(pdu, "address", None),
            # pymodbus decodes words with struct (ints already): copied as they are, not
            # converted one by one; bits are made bools (pymodbus may give 0/1)
            tuple(registers) if registers else (),
            tuple(map(bool, bits)) if bits else (),
        )

    def _call(self, unit_id: int, function_code: int, address: int, count: int,
              value: int | bool) -> ModbusPDU:
        """pymodbus's method for ``function_code``, called (a chain of ifs, not a table of
        lambdas built per request: this runs for every read of every poll)."""
        client = self._client
        if function_code == 3:
            return client.read_holding_registers(address, count=count, device_id=unit_id)
        if function_code == 4:
            return client.read_input_registers(address, count=count, device_id=unit_id)
        if function_code == 1:
            return client.read_coils(address, count=count, device_id=unit_id)
        if function_code == 2:
            return client.read_discrete_inputs(address, count=count, device_id=unit_id)
        if function_code == 5:
            return client.write_coil(address, bool(value), device_id=unit_id)
        if function_code == 6:
            return client.write_register(address, int(value), device_id=unit_id)
        raise KeyError(function_code)

    def drain(self, quiet_s: float, limit_s: float) -> None:
        """Discard input until nothing arrived for ``quiet_s`` (at most ``limit_s``), so a
        late answer cannot be taken for the next request's. Raises WireClosed, or
        Flooded when more than ``READ_LIMIT_BYTES`` kept arriving."""
        port = self._client.socket
        if port is None:
            return
        try:
            if isinstance(self._client, ModbusSerialClient):
                clock = drain_clock
                _drain_serial(port, quiet_s, clock.monotonic() + limit_s, clock)
            else:
                _drain_socket(port, quiet_s, time.monotonic() + limit_s)
        except (OSError, ValueError) as err:
            raise WireClosed(str(err)) from err


class _WholeWords(ModbusPDU):
    """A read-registers answer's words in one ``struct.unpack`` (pymodbus unpacks and
    appends them one by one: 10 of the 12 us its decode of 45 words took, issue 11).
    The same words and the same error as pymodbus's ``decode`` (module docstring);
    tests/test_transports.py compares the two over every byte count."""

    def decode(self, data: bytes) -> None:
        byte_count = int(data[0])
        if byte_count >= len(data):
            super().decode(data)  # raises pymodbus's own ModbusIOException
            return
        words = byte_count // 2
        self.registers = list(struct.unpack(f">{words}H", data[1:1 + 2 * words]))

    def __str__(self) -> str:
        """What pymodbus's decoder formats for a debug line on every answer, even with
        its logging off: without the words (pymodbus's own ``__str__`` lists all of
        them and every bit, about 2.6 us for 50 registers, issue 11)."""
        return (f"{type(self).__name__}(dev_id={self.dev_id}, "
                f"transaction_id={self.transaction_id}, {len(self.registers)} registers)")


class _HoldingWords(_WholeWords, ReadHoldingRegistersResponse):
    pass


class _InputWords(_WholeWords, ReadInputRegistersResponse):
    pass


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
    """Opens its socket as pymodbus does, keeping why it could not (``connect_error``),
    and sends and receives with one system call each where pymodbus makes four
    (``recv``)."""

    connect_error: str | None = None
    # (socket, timeout) that the kernel's send and receive timeouts were last set for
    _kernel_timeout: tuple[socket.socket, float] | None = None

    def recv(self, size: int | None) -> bytes:
        """What pymodbus's ``recv(None)`` returns, for less: the first bytes that arrive
        within the answer timeout (at most 4096), b"" when none did, and pymodbus's own
        ``ConnectionException`` when the other end closed without sending any.

        Why: pymodbus puts the socket in non-blocking mode, waits in ``select.select``
        and then reads, on every call; in Python's timeout mode a send and a receive
        each wait in ``poll`` first. Every call into the operating system lets go of the
        interpreter lock and must win it back, and on a busy agent every win-back is a
        hand-over between threads. Here the socket is blocking with the kernel's own
        send and receive timeouts (``SO_SNDTIMEO``, ``SO_RCVTIMEO``) set to the answer
        timeout: a request is one ``send`` and one ``recv`` (issue 11; beside a busy
        writer thread, 5-8 us less CPU per request, docs/performance.md). The timeouts
        are set again when ``set_timeout`` changed them, on a new connection, and when
        a drain made the socket non-blocking. A read with a ``size`` (not one pymodbus
        3.16's sync client makes) is pymodbus's own.

        One difference: a blocking call interrupted by a signal is restarted by Python
        with the whole timeout again (pymodbus's ``select`` waited for what was left).
        The threads that own a wire therefore keep the process's signals off
        themselves (``stopsignals.keep_signals_off_this_thread``); the main thread
        handles them anyway.
        """
        if size is not None:
            return super().recv(size)
        sock = self.socket
        if not sock:
            raise ConnectionException(str(self))
        self._keep_kernel_timeouts(sock)
        try:
            data = sock.recv(4096)
        except (TimeoutError, BlockingIOError):  # nothing within the timeout
            return b""
        if not data:  # closed by the other end: pymodbus closes and raises
            return self._handle_abrupt_socket_close(size, [], 0.0)
        self._read_since_send += len(data)
        if self._read_since_send > READ_LIMIT_BYTES:
            raise _OverLimit(self._read_since_send)
        return data

    def send(self, request: bytes, addr: tuple | None = None) -> int:
        """pymodbus's send, within the answer timeout of the device asked now: a device
        that stopped reading (a full send buffer) fails the request after its own
        timeout, not after the previous device's (``set_timeout`` changes only
        ``comm_params``)."""
        if self.socket:
            self._keep_kernel_timeouts(self.socket)
        return super().send(request, addr)

    def _keep_kernel_timeouts(self, sock: socket.socket) -> None:
        """Set the kernel's timeouts to the answer timeout unless they are already
        (``recv``): a new connection, a changed timeout, a drain that made the socket
        non-blocking."""
        timeout = self.comm_params.timeout_connect or 0.0
        if sock.gettimeout() is not None or self._kernel_timeout != (sock, timeout):
            _wait_in_the_kernel(sock, timeout)
            self._kernel_timeout = (sock, timeout)

    def connect(self) -> bool:
        if self.socket:
            return True
        params = self.comm_params
        try:
            self.socket = socket.create_connection(
                (params.host, params.port), timeout=params.timeout_connect,
                source_address=params.source_address)
            self.connect_error = None
        except OSError as err:
            self.connect_error = os_reason(err)
            self.close()
        return self.socket is not None


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


def os_reason(err: OSError) -> str:
    """'connection refused', 'timed out', 'no route to host': the OS's words, lower case."""
    text = err.strerror or str(err) or type(err).__name__
    if isinstance(err, TimeoutError) and not err.strerror:
        text = "timed out"
    return text[:1].lower() + text[1:]


def _wait_in_the_kernel(sock: socket.socket, timeout_s: float) -> None:
    """Make ``sock`` blocking, each send and receive giving up after ``timeout_s``
    (``SO_SNDTIMEO``/``SO_RCVTIMEO``: it then fails with EAGAIN, BlockingIOError), so
    each is one system call. A timeout of 0, which those options would read as "wait
    for ever", makes it non-blocking instead."""
    if timeout_s <= 0:
        sock.setblocking(False)
        return
    micros = max(1, round(timeout_s * 1_000_000))  # never 0: that would be for ever
    interval = struct.pack("ll", *divmod(micros, 1_000_000))  # struct timeval
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, interval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, interval)


def _drain_serial(port: Any, quiet_s: float, deadline: float, clock: DrainClock) -> None:
    discarded = port.in_waiting
    port.reset_input_buffer()
    quiet_since = clock.monotonic()
    while clock.monotonic() - quiet_since < quiet_s and clock.monotonic() < deadline:
        clock.sleep(quiet_s / 5)
        if waiting := port.in_waiting:
            discarded += waiting
            if discarded > READ_LIMIT_BYTES:
                raise Flooded(discarded)
            port.reset_input_buffer()
            quiet_since = clock.monotonic()


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
