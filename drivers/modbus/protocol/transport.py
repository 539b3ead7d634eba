"""The Modbus client a link's poller uses: one blocking client per link, answers checked
against their requests, errors typed, requests paced.

Transports, as the link's ``protocol`` says: Modbus TCP, Modbus RTU on a serial port, RTU
framing over TCP (serial-to-Ethernet gateways in transparent mode), Modbus ASCII on a
serial port or over TCP. pymodbus itself is reached only through ``pymodbus_client`` (the
one module importing it on the client side). The simulator is a tool
(edge_agent/tools/sim/simserver.py): nothing here loads it.

Errors come out typed:

* ``LinkDown``      cannot connect, or the connection broke (reason ``no_connection``)
* ``DeviceTimeout`` not a single byte of answer in time (reason ``timeout``)
* ``BadResponse``   bytes that never made a valid frame (bad CRC/LRC, noise, a truncated
  frame), or an answer that does not fit the request: another unit, another function,
  another count (reason ``bad_response``)
* ``ModbusExceptionReply`` the device answered with a Modbus exception (``exception_XX``)
* ``LinkFlooded``   more bytes than any answer can have kept arriving (reason ``flood``):
  at most ``READ_LIMIT_BYTES`` (the longest frame plus 4 KiB) are read per request or
  per discarded late answer; then the connection or port is closed, the next poll
  reopens it after the device's backoff, and the flood is logged when it starts

The first three are transient (worth a retry); an exception reply is transient only for
codes 05/06 (acknowledge / busy) and the gateway codes 0A/0B. After a timeout or a bad
answer, a late answer must not be read as the next request's: Modbus TCP drops the
connection; RTU and ASCII (serial or TCP) wait until the line is quiet and discard it.

Given a ``WireTap`` (the recorder of a link with ``record:``, which the poller passes in),
the wire client shows it every byte sent and received (``pymodbus_client``'s tap;
docs/capture-replay.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edge_agent_drivers.modbus.protocol.pymodbus_client import (
    Answer,
    Flooded,
    NoAnswer,
    Unusable,
    WireClient,
    WireClosed,
)
from edge_agent_drivers.modbus.settings import RegisterKind

from edge_agent.config.schema import Link, LinkProtocol, SerialLink, TcpLink
from edge_agent.link import (
    BadResponse,
    DeviceTimeout,
    ExchangeCounts,
    LinkDown,
    LinkError,
    LinkFlooded,
    WireTap,
)
from edge_agent.serialports import explain_missing

log = logging.getLogger(__name__)
# pymodbus logs every timeout at ERROR on its own; our poller logs transitions instead.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

_TRANSIENT_EXCEPTION_CODES = {0x05, 0x06, 0x0A, 0x0B}
_QUIET_LINE_S = 0.1  # silence that ends a late answer on a serial line
MAX_REGISTERS = 125  # per read, Modbus limit (function 3/4)
MAX_ENRON_VALUES = 63  # 32-bit registers per read: 4 bytes each in a 255-byte answer
MAX_BITS = 2000  # per read, Modbus limit (function 1/2)


class ModbusExceptionReply(LinkError):
    """The device answered with exception ``code`` (02: illegal data address, ...)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = f"exception_{code:02x}"
        self.transient = code in _TRANSIENT_EXCEPTION_CODES


def rtu_frame_gap_s(baudrate: int) -> float:
    """The silence that separates two RTU frames: 3.5 characters of 11 bits, and a fixed
    1.75 ms above 19200 baud (Modbus over Serial Line, 2.5.1.1). A request sent sooner
    after the previous frame may be read as its continuation and dropped."""
    return 0.00175 if baudrate > 19200 else 3.5 * 11 / baudrate


def request_gap_s(link: Link) -> float:
    """Pause between the end of one exchange and the next request: the link's
    ``request_gap_ms``, never less than the inter-frame silence on a serial RTU line."""
    gap_s = link.request_gap_ms / 1000
    if isinstance(link, SerialLink) and link.protocol is LinkProtocol.MODBUS_RTU:
        gap_s = max(gap_s, rtu_frame_gap_s(link.baudrate))
    return gap_s


class ModbusLinkClient:
    """A blocking Modbus client for one link; used only by that link's poller thread.

    Addresses are 0-based wire addresses. Argument errors (a count beyond the Modbus
    limits, a bit table passed to a register read) are programming errors: ValueError.
    """

    def __init__(self, link: Link, tap: WireTap | None = None) -> None:
        """``tap`` sees every byte on the wire (a recording), and is finished by ``close``."""
        if not link.protocol.is_modbus:
            raise ValueError(f"link {link.name} speaks {link.protocol.value}, not Modbus")
        self.link = link
        self.tap = tap
        self._wire = _make_wire(link, tap)
        self._timeout_ms = link.timeout_ms
        self._gap_s = request_gap_s(link)
        self._last_exchange_end = 0.0
        self.floods = 0  # requests ended by a flood (counted; logged when it starts)
        self._flooding = False
        self.counts = ExchangeCounts()  # the poller credits them to the device polled

    def set_timeout_ms(self, timeout_ms: int | None) -> None:
        """Answer timeout for the following requests: a device's own ``timeout_ms``, or
        None for the link's. The poller sets it before each device's poll."""
        wanted = timeout_ms or self.link.timeout_ms
        if wanted != self._timeout_ms:
            self._timeout_ms = wanted
            self._wire.set_timeout(wanted / 1000)

    def read_registers(self, unit_id: int, kind: RegisterKind, address: int, count: int, *,
                       enron_32bit: bool = False) -> list[int]:
        """Read ``count`` holding or input registers at ``address``.

        With ``enron_32bit`` each address holds 32 bits (Daniel/Enron maps, e.g. 5001-5999
        and 7001-7999 on gas chromatographs): ``count`` is the number of values (at most
        63) and the result holds ``2 * count`` words, two per address, as sent.
        """
        if kind.is_bit:
            raise ValueError(f"{kind.value} holds bits: use read_bits")
        limit = MAX_ENRON_VALUES if enron_32bit else MAX_REGISTERS
        _check_count(count, limit)

        def what() -> str:  # only an error message needs it: not built per request
            return f"reading {kind.value} {address}+{count}" + (
                " (32-bit)" if enron_32bit else "")

        answer = self._exchange(unit_id, kind.function_code, address, what, count=count)
        expected = 2 * count if enron_32bit else count
        if len(answer.registers) != expected:
            # An answer with another count is not this request's (typically a late answer
            # to the previous one, or a 16-bit answer to a 32-bit read). Never decode it.
            self._discard_late_answer()
            raise BadResponse(f"unit {unit_id}: answer does not fit the request ("
                              f"{len(answer.registers)} registers; asked {expected} "
                              f"{what()})")
        return list(answer.registers)

    def read_bits(self, unit_id: int, kind: RegisterKind, address: int,
                  count: int) -> list[bool]:
        """Read ``count`` coils (function 1) or discrete inputs (function 2)."""
        if not kind.is_bit:
            raise ValueError(f"{kind.value} holds registers: use read_registers")
        _check_count(count, MAX_BITS)

        def what() -> str:  # only an error message needs it: not built per request
            return f"reading {kind.value} {address}+{count}"

        answer = self._exchange(unit_id, kind.function_code, address, what, count=count)
        if len(answer.bits) != 8 * ((count + 7) // 8):  # bits arrive in whole bytes
            self._discard_late_answer()
            raise BadResponse(f"unit {unit_id}: answer does not fit the request "
                              f"({len(answer.bits) // 8} bytes of bits; {what()})")
        return list(answer.bits[:count])

    def write_register(self, unit_id: int, address: int, value: int) -> None:
        """Write one holding register (function 6); returns once the device echoed it."""
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"a register holds 0..65535, not {value}")
        what = f"writing {value} to holding {address}"
        answer = self._exchange(unit_id, 6, address, lambda: what, value=value)
        if answer.address != address or answer.registers[:1] != (value,):
            self._discard_late_answer()
            raise BadResponse(f"unit {unit_id}: echo does not fit the request ({what}; "
                              f"echo {answer.address}={list(answer.registers)})")

    def write_coil(self, unit_id: int, address: int, value: bool) -> None:
        """Write one coil (function 5); returns once the device echoed it."""
        what = f"writing {'ON' if value else 'OFF'} to coil {address}"
        answer = self._exchange(unit_id, 5, address, lambda: what, value=value)
        if answer.address != address or answer.bits[:1] != (bool(value),):
            self._discard_late_answer()
            raise BadResponse(f"unit {unit_id}: echo does not fit the request ({what}; "
                              f"echo {answer.address}={list(answer.bits[:1])})")

    def _exchange(self, unit_id: int, function_code: int, address: int,
                  what: Callable[[], str], *, count: int = 1, value: int | bool = 0) -> Answer:
        """One request and its answer, checked for unit and function; raises typed.
        ``what`` describes the request for an error message (called only for one)."""
        self._ensure_connected()
        self._pace()
        self.counts.requests += 1
        try:
            answer = self._wire.request(unit_id, function_code, address, count=count,
                                        value=value)
        except Flooded as err:
            raise self._flooded(f"unit {unit_id} {what()}", err) from err
        except WireClosed as err:
            log.debug("%s: %s", self.link.name, err)
            self._wire.close()
            raise LinkDown(f"{self.link.name}: connection to {_describe(self.link)} "
                           "broke or was closed by the other end") from err
        except NoAnswer as err:
            log.debug("%s unit %d: %s", self.link.name, unit_id, err)
            self._discard_late_answer()
            if err.received:
                raise BadResponse(f"unit {unit_id}: no valid answer {what()}, only bytes that "
                                  "are not its answer (bad CRC/LRC, noise, a truncated, late "
                                  f"or foreign frame): {_hex(err.received)}") from err
            self.counts.timeouts += 1
            raise DeviceTimeout(f"unit {unit_id}: no answer within {self._timeout_ms} ms "
                                f"({what()})") from err
        except Unusable as err:
            self._discard_late_answer()
            raise BadResponse(f"unit {unit_id}: unusable answer {what()} ({err})") from err
        finally:
            self._last_exchange_end = time.monotonic()
        self.counts.answers += 1
        if answer.unit_id != unit_id or answer.function_code & 0x7F != function_code:
            self._discard_late_answer()
            raise BadResponse(f"unit {unit_id}: answer does not fit the request (unit "
                              f"{answer.unit_id}, function {answer.function_code & 0x7F}; "
                              f"{what()} asks function {function_code})")
        if self._flooding:
            self._flooding = False
            log.info("%s: no longer flooding after %d flooded requests", self.link.name,
                     self.floods)
        if answer.function_code & 0x80:
            self.counts.exceptions += 1
            code = answer.exception_code
            raise ModbusExceptionReply(code, f"unit {unit_id}: exception {code:02x} {what()}")
        return answer

    def _flooded(self, what: str, err: Flooded) -> LinkFlooded:
        """Close the link after a flood; count it, log when flooding starts."""
        self._wire.close()
        self.floods += 1
        if not self._flooding:
            self._flooding = True
            log.warning("%s: flood %s: %s; the connection is closed and reopened after "
                        "the device's backoff, its readings are BAD 'flood' (further "
                        "floods are counted, not logged)", self.link.name, what, err)
        return LinkFlooded(f"{self.link.name}: flood {what}: {err}")

    def _ensure_connected(self) -> None:
        if self._wire.connected:
            return
        if not self._wire.connect():
            hint = explain_missing(self.link.port) if isinstance(self.link, SerialLink) \
                else self._wire.connect_error
            raise LinkDown(f"{self.link.name}: cannot connect to {_describe(self.link)}"
                           + (f": {hint}" if hint else ""))
        pause_ms = getattr(self.link, "connect_pause_ms", 0)
        if pause_ms:  # devices and gateways that drop a request sent right after opening
            time.sleep(pause_ms / 1000)
        self._last_exchange_end = time.monotonic()

    def _pace(self) -> None:
        if not self._gap_s:  # no gap configured (most TCP links): no clock to read
            return
        wait_s = self._last_exchange_end + self._gap_s - time.monotonic()
        if wait_s > 0:
            time.sleep(wait_s)

    def _discard_late_answer(self) -> None:
        """Modbus TCP: drop the connection. RTU and ASCII, which carry no transaction id:
        wait until the line is quiet, then discard what arrived."""
        if isinstance(self.link, TcpLink) and self.link.protocol is LinkProtocol.MODBUS_TCP:
            self._wire.close()
            return
        try:
            self._wire.drain(_QUIET_LINE_S, self._timeout_ms / 1000)
        except WireClosed:  # port gone: the next request reconnects
            self._wire.close()
        except Flooded as err:
            raise self._flooded("while discarding a late answer", err) from err

    def close(self) -> None:
        """Close the connection or port, and end the link's recording: the poller is done
        with the link. (After an error the connection alone is closed and reopened.)"""
        self._wire.close()
        if self.tap is not None:
            self.tap.finish()


def _make_wire(link: Link, tap: WireTap | None) -> WireClient:
    timeout_s = link.timeout_ms / 1000
    if isinstance(link, TcpLink):
        return WireClient(link.protocol, timeout_s=timeout_s, name=link.name, host=link.host,
                          tcp_port=link.port, tap=tap)
    return WireClient(link.protocol, timeout_s=timeout_s, name=link.name,
                      serial_port=link.port, baudrate=link.baudrate, bytesize=link.bytesize,
                      parity=link.parity.value, stopbits=link.stopbits, tap=tap)


def _check_count(count: int, limit: int) -> None:
    if not 1 <= count <= limit:
        raise ValueError(f"count must be 1..{limit}, not {count}")


def _hex(data: bytes, limit: int = 32) -> str:
    shown = data[:limit].hex(" ")
    return shown + (f" ... ({len(data)} bytes)" if len(data) > limit else "")


def _describe(link: Link) -> str:
    if isinstance(link, TcpLink):
        return f"{link.host}:{link.port}"
    return f"{link.port} ({link.baudrate} {link.bytesize}{link.parity.value}{link.stopbits})"

