"""How the Modbus TCP client receives (drivers/modbus/protocol/pymodbus_client.py,
``_CappedTcpClient.recv``): one system call per wait instead of pymodbus's four, with
pymodbus's outcomes kept. An answer arriving in pieces is put together, silence is a
timeout only once the answer timeout has passed, a device that hangs up is a broken
link, and a socket left non-blocking by a drain, or given a device's own timeout, waits
as long as it is told to.

The devices are raw sockets (tests/support/rawmodbus.py), not pymodbus's server, so the
pieces, the silence and the hang-up are exactly as written here."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from edge_agent_drivers.modbus.protocol.transport import ModbusLinkClient
from edge_agent_drivers.modbus.settings import RegisterKind
from support.rawmodbus import RawModbusDevice, Request

from edge_agent.config.schema import LinkProtocol, TcpLink
from edge_agent.link import BadResponse, DeviceTimeout, LinkDown

HOLDING = RegisterKind.HOLDING


def words(request: Request) -> list[int]:
    return [request.address + i for i in range(request.count)]


def answer(request: Request) -> bytes:
    return request.frame(request.answer_pdu(words(request)))


class DrippingDevice(RawModbusDevice):
    """Answers every request correctly, one byte at a time, ``gap_s`` apart, and keeps
    the connection: the client must put the answer together from many receives."""

    def __init__(self, gap_s: float, rtu: bool = False) -> None:
        super().__init__(rtu, answer, close_after_answer=False)
        self.gap_s = gap_s

    def send_answer(self, conn: socket.socket, data: bytes) -> None:
        for byte in data:
            conn.sendall(bytes([byte]))
            time.sleep(self.gap_s)


def client_of(device: RawModbusDevice, timeout_ms: int,
              protocol: LinkProtocol = LinkProtocol.MODBUS_TCP) -> ModbusLinkClient:
    return ModbusLinkClient(TcpLink("lan", "127.0.0.1", device.port, protocol=protocol,
                                    timeout_ms=timeout_ms))


@pytest.mark.parametrize("protocol", [LinkProtocol.MODBUS_TCP, LinkProtocol.MODBUS_RTU],
                         ids=["mbap", "rtu-over-tcp"])
def test_an_answer_arriving_byte_by_byte_is_put_together(protocol):
    with DrippingDevice(0.003, rtu=protocol is LinkProtocol.MODBUS_RTU) as device:
        client = client_of(device, 10_000, protocol)
        try:
            for address in (0, 40):
                assert client.read_registers(1, HOLDING, address, 5) == \
                    [address + i for i in range(5)]
        finally:
            client.close()
    assert device.connections == 1 and device.requests == 2


def test_silence_is_a_timeout_only_after_the_answer_timeout():
    """A device that never answers: the read fails as a timeout, and not before its
    200 ms (a receive that did not wait would fail at once)."""
    with RawModbusDevice(False, lambda request: b"", close_after_answer=False) as device:
        client = client_of(device, 200)
        try:
            started = time.monotonic()
            with pytest.raises(DeviceTimeout, match="no answer within 200 ms"):
                client.read_registers(1, HOLDING, 0, 3)
            assert time.monotonic() - started >= 0.19
        finally:
            client.close()


@pytest.mark.parametrize("sent", [b"", b"\x00"], ids=["nothing", "one-byte"])
def test_a_device_hanging_up_is_a_broken_link_and_the_next_read_reconnects(sent):
    """Whatever the device sent before closing (nothing, or a byte of an answer), the
    read fails as a lost link at once, not after the 5 s timeout, and the next read
    opens a new connection."""
    hang_up = [True]

    def reply(request: Request) -> bytes:
        return sent if hang_up[0] else answer(request)

    with RawModbusDevice(False, reply, close_after_answer=lambda: hang_up[0]) as device:
        client = client_of(device, 5000)
        try:
            started = time.monotonic()
            with pytest.raises((LinkDown, BadResponse)) as caught:
                client.read_registers(1, HOLDING, 0, 3)
            assert caught.value.transient
            assert time.monotonic() - started < 4.0
            hang_up[0] = False
            assert client.read_registers(1, HOLDING, 7, 2) == [7, 8]
        finally:
            client.close()
    assert device.connections == 2


def test_a_drained_socket_waits_again_for_the_next_answer():
    """RTU over TCP has no transaction id: after bytes that are not the answer (here
    another unit's frame), the client drains the line, which makes the socket
    non-blocking.
    The next answers, 150 ms late within a 2 s timeout, must still be waited for."""
    replies = iter(["other-unit", "late", "late"])

    def reply(request: Request) -> bytes:
        if next(replies, "late") == "other-unit":
            return Request(None, 9, request.function, request.address,
                           request.count).frame(request.answer_pdu(words(request)))
        time.sleep(0.15)
        return answer(request)

    with RawModbusDevice(True, reply, close_after_answer=False) as device:
        client = client_of(device, 2000, LinkProtocol.MODBUS_RTU)
        try:
            with pytest.raises(BadResponse, match="not its answer"):
                client.read_registers(1, HOLDING, 0, 2)
            assert client.read_registers(1, HOLDING, 3, 2) == [3, 4]
            assert client.read_registers(1, HOLDING, 5, 2) == [5, 6]
        finally:
            client.close()
    assert device.connections == 1


def test_a_shorter_device_timeout_is_taken_up_by_the_open_connection():
    """The connection was opened with the link's 5 s; a device's 200 ms then applies to
    the very next receive."""
    silent = [False]

    def reply(request: Request) -> bytes:
        return b"" if silent[0] else answer(request)

    with RawModbusDevice(False, reply, close_after_answer=False) as device:
        client = client_of(device, 5000)
        try:
            assert client.read_registers(1, HOLDING, 0, 1) == [0]
            client.set_timeout_ms(200)
            silent[0] = True
            started = time.monotonic()
            with pytest.raises(DeviceTimeout, match="within 200 ms"):
                client.read_registers(1, HOLDING, 0, 1)
            assert time.monotonic() - started < 4.0
        finally:
            client.close()


def test_the_answer_class_describes_itself_without_its_words():
    """pymodbus formats every answer for a debug line; ours says what it is, not all
    its words."""
    from edge_agent_drivers.modbus.protocol import pymodbus_client

    pdu = pymodbus_client._InputWords()
    pdu.decode(bytes([100]) + struct.pack(">50H", *range(50)))
    text = str(pdu)
    assert pdu.registers == list(range(50))
    assert "50 registers" in text and "49" not in text


def test_the_socket_waits_in_the_kernel_with_the_answer_timeout():
    """After a read the socket is blocking, with the kernel's receive and send timeouts
    at the answer timeout: one system call per send and receive, and neither can wait
    for ever."""
    with RawModbusDevice(False, answer, close_after_answer=False) as device:
        client = client_of(device, 250)
        try:
            assert client.read_registers(1, HOLDING, 0, 1) == [0]
            sock = client._wire._client.socket
            assert sock.gettimeout() is None
            for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
                seconds, micros = struct.unpack(
                    "ll", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("ll")))
                # the kernel keeps it in its own ticks (4 ms at 250 Hz)
                assert seconds == 0 and abs(micros - 250_000) <= 10_000
        finally:
            client.close()


class StopsReading(RawModbusDevice):
    """Answers the first request, then never reads again: its receive window closes."""

    def __init__(self) -> None:
        super().__init__(False, answer, close_after_answer=False)

    def serve(self, conn: socket.socket) -> None:
        request = self._read_request(conn)
        if request is not None:
            conn.sendall(answer(request))
        while not self.stopping:
            time.sleep(0.05)


def fill_send_buffer(sock: socket.socket) -> int:
    """What a peer that stopped reading leaves behind: our send buffer full. The
    socket's mode is put back as it was."""
    was = sock.gettimeout()
    sock.setblocking(False)
    sent = 0
    try:
        while True:
            sent += sock.send(b"\0" * 65536)
    except BlockingIOError:
        pass
    sock.settimeout(was)
    return sent


def test_a_send_gives_up_after_the_timeout_of_the_device_asked_now():
    """Device A's 3 s timeout was in force; device B on the same connection has 100 ms.
    With the send buffer full (the peer stopped reading), B's request fails after its own
    timeout, not A's (found in review: the kernel's send timeout was only set when
    receiving)."""
    with StopsReading() as device:
        client = client_of(device, 3000)
        try:
            assert client.read_registers(1, HOLDING, 0, 1) == [0]
            assert fill_send_buffer(client._wire._client.socket) > 0
            client.set_timeout_ms(100)
            started = time.monotonic()
            with pytest.raises((LinkDown, DeviceTimeout)) as caught:
                client.read_registers(2, HOLDING, 0, 1)
            assert caught.value.transient
            assert time.monotonic() - started < 2.0
        finally:
            client.close()


def test_signals_sent_to_a_wire_thread_do_not_stretch_its_timeout():
    """A blocking receive that a signal interrupts is restarted with its whole timeout.
    A wire's thread keeps the signals the agent handles off itself, so a stream of
    SIGHUP sent to it leaves the 300 ms timeout as it is."""
    import signal
    import threading

    from edge_agent.stopsignals import keep_signals_off_this_thread

    outcome: list[tuple[str, float]] = []
    ready = threading.Event()
    previous = signal.signal(signal.SIGHUP, lambda *_: None)
    with RawModbusDevice(False, lambda request: b"", close_after_answer=False) as device:
        def read() -> None:
            keep_signals_off_this_thread()
            client = client_of(device, 300)
            ready.set()
            started = time.monotonic()
            try:
                client.read_registers(1, HOLDING, 0, 1)
                outcome.append(("answered", time.monotonic() - started))
            except DeviceTimeout:
                outcome.append(("timeout", time.monotonic() - started))
            finally:
                client.close()

        thread = threading.Thread(target=read, name="wire")
        thread.start()
        try:
            ready.wait(10)
            until = time.monotonic() + 3.0
            while thread.is_alive() and time.monotonic() < until:
                signal.pthread_kill(thread.ident, signal.SIGHUP)
                time.sleep(0.05)
            thread.join(10)
        finally:
            signal.signal(signal.SIGHUP, previous)
    assert outcome and outcome[0][0] == "timeout"
    assert outcome[0][1] < 2.0, f"the timeout was stretched to {outcome[0][1]:.2f} s"
