"""The I/O edge of text protocols: one serial port or TCP connection per link.

``TextLinkClient`` moves bytes and finds frames; what a frame means is the driver's
business. It connects on first use (a missing adapter or a dead serial-device server
becomes BAD readings, not a failed start) and again after any I/O error. Errors come out
as the poller's typed ``LinkError``s: ``LinkDown`` (reason ``no_connection``) when the
port cannot be opened or the connection broke. Waiting for an answer is bounded by the
link's ``timeout_ms``; the caller decides what "no answer" means.

In request mode a late answer to the previous request must not pass for the answer to
the next one: input that arrived between polls is discarded before each request, and
after a poll that got no answer the client first waits for the line to go quiet.

Every read is bounded. One poll (``ask`` or ``listen``, stale input included) may read
at most ``read_budget(framing)`` bytes: ``FLOOD_FRAMES`` records of the device's longest
(``max_bytes``, 256 KiB at the default 4096). A device that sends more is flooding (a
babbling device, a foreign stream, a wrong baud rate on a fast line): the poll fails
with ``LinkFlooded`` (reason ``flood``), the connection or port is closed and the
half-read input forgotten, and the poller reopens it after the device's backoff. So a
device streaming at network speed costs one budget of memory and CPU per backoff
period, never more, and the other links' pollers keep their pace.

Given a ``WireTap`` (the recorder of a link with ``record:``, which the poller passes in),
the stream is wrapped (``TappedStream``) so the tap sees every byte written and read
(docs/capture-replay.md).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Protocol, TypeVar

from edge_agent_drivers.serialtext.protocol.framing import Deframer, FrameEvent
from edge_agent_drivers.serialtext.protocol.settings import Framing

from edge_agent.config.schema import Link, SerialLink
from edge_agent.link import ExchangeCounts, LinkDown, LinkError, LinkFlooded, WireTap
from edge_agent.serialports import open_serial_port

log = logging.getLogger(__name__)
T = TypeVar("T")

_QUIET_S = 0.1  # silence that ends a late answer after a timeout
_RECV_BYTES = 16384  # one recv; the GIL is released for each
FLOOD_FRAMES = 64  # a poll may read this many longest records' worth of bytes


def read_budget(framing: Framing) -> int:
    """Bytes one poll may read before the device counts as flooding."""
    return framing.max_bytes * FLOOD_FRAMES


class BadFrame(LinkError):
    """The answer arrived but cannot be trusted: ``bad_checksum`` or ``bad_frame``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ByteStream(Protocol):
    """What the client needs from a serial port or a socket."""

    def read(self, timeout_s: float, limit: int) -> bytes:
        """The first bytes to arrive within ``timeout_s`` (at most ``limit``); b"" if
        none did."""
        ...

    def read_waiting(self, limit: int) -> bytes:
        """What has arrived already (at most ``limit`` bytes), without waiting."""
        ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class TcpStream:
    """A TCP connection to a serial-device server, read like a serial port."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def read(self, timeout_s: float, limit: int) -> bytes:
        if limit <= 0:
            return b""
        self._sock.settimeout(max(timeout_s, 0.001))
        try:
            data = self._sock.recv(min(_RECV_BYTES, limit))
        except TimeoutError:
            return b""
        if not data:
            raise ConnectionError("connection closed by the serial-device server")
        return data + self.read_waiting(limit - len(data))

    def read_waiting(self, limit: int) -> bytes:
        """Reads in chunks until the socket is empty or ``limit`` bytes were read, giving
        other threads the interpreter between chunks."""
        self._sock.settimeout(0.0)
        chunks = []
        try:
            while limit > 0:
                chunk = self._sock.recv(min(_RECV_BYTES, limit))
                if not chunk:
                    raise ConnectionError("connection closed by the serial-device server")
                chunks.append(chunk)
                limit -= len(chunk)
                time.sleep(0)  # a device streaming at LAN speed must not hog the GIL
        except BlockingIOError:
            pass
        return b"".join(chunks)

    def write(self, data: bytes) -> None:
        self._sock.settimeout(5.0)
        self._sock.sendall(data)

    def close(self) -> None:
        self._sock.close()


class TappedStream:
    """A ByteStream that shows a ``WireTap`` (the link's recording) every byte."""

    def __init__(self, stream: ByteStream, tap: WireTap) -> None:
        self._stream = stream
        self._tap = tap
        tap.opened()

    def read(self, timeout_s: float, limit: int) -> bytes:
        return self._seen(self._stream.read(timeout_s, limit))

    def read_waiting(self, limit: int) -> bytes:
        return self._seen(self._stream.read_waiting(limit))

    def write(self, data: bytes) -> None:
        self._stream.write(data)
        self._tap.sent(data)

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._tap.closed()

    def _seen(self, data: bytes) -> bytes:
        if data:
            self._tap.received(data)
        return data


Wanted = Callable[[FrameEvent], bool]
Read = Callable[[int], bytes]  # a read given the bytes it may return


class TextLinkClient:
    """Bytes in and out of one link, for the devices polled on it in turn."""

    def __init__(self, link: Link, tap: WireTap | None = None) -> None:
        """``tap`` sees every byte on the wire (a recording), and is finished by ``close``."""
        self.link = link
        self._stream: ByteStream | None = None
        self._tap = tap
        self._last_write = 0.0
        self._unsettled = False
        self._left = 0  # bytes this poll may still read
        self.floods = 0  # polls ended by a flood (counted; logged when it starts)
        self._flooding = False
        self.counts = ExchangeCounts()  # the poller credits them to the device polled

    def ask(self, request: bytes, deframer: Deframer, wanted: Wanted,
            timeout_ms: int | None = None) -> list[FrameEvent]:
        """Send ``request`` and read until a ``wanted`` event (the answer) or the
        timeout (``timeout_ms``, default the link's); returns every event seen, the last
        one wanted unless time ran out."""
        stream = self._connected()
        self._left = read_budget(deframer.framing)
        self._discard_stale(stream, deframer)
        self._pace()
        self._guarded(partial(stream.write, request))
        self._last_write = time.monotonic()
        self.counts.requests += 1
        events = self._read_until(stream, deframer, wanted, timeout_ms)
        self._unsettled = not any(wanted(event) for event in events)
        if self._unsettled:
            self.counts.timeouts += 1
        else:
            self.counts.answers += 1
        self._not_flooding()
        return events

    def listen(self, deframer: Deframer, wanted: Wanted,
               timeout_ms: int | None = None) -> list[FrameEvent]:
        """Events from everything that arrived since the last call; when none is
        ``wanted``, keep reading until one is or the timeout passes."""
        stream = self._connected()
        self._left = read_budget(deframer.framing)
        events = deframer.feed(self._take(stream.read_waiting, deframer))
        if not any(wanted(event) for event in events):
            events += self._read_until(stream, deframer, wanted, timeout_ms)
        if any(wanted(event) for event in events):
            self.counts.answers += 1
        self._not_flooding()
        return events

    def close(self) -> None:
        """Close the port or connection and end the link's recording: the poller is done
        with the link. (After an I/O error the connection alone is closed and reopened.)"""
        self._disconnect()
        if self._tap is not None:
            self._tap.finish()

    def _disconnect(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            except OSError:
                log.debug("%s: error while closing", self.link.name, exc_info=True)
            self._stream = None

    def _read_until(self, stream: ByteStream, deframer: Deframer, wanted: Wanted,
                    timeout_ms: int | None) -> list[FrameEvent]:
        deadline = time.monotonic() + (timeout_ms or self.link.timeout_ms) / 1000
        events: list[FrameEvent] = []
        while (remaining := deadline - time.monotonic()) > 0:
            chunk = self._take(partial(stream.read, remaining), deframer)
            new = deframer.feed(chunk) if chunk else []
            events += new
            if any(wanted(event) for event in new):
                break
        return events

    def _discard_stale(self, stream: ByteStream, deframer: Deframer) -> None:
        """Drop what arrived since the last exchange; after a timeout, also what is
        still arriving (a late answer), until the line is quiet."""
        stale = len(self._take(stream.read_waiting, deframer))
        if self._unsettled:
            deadline = time.monotonic() + self.link.timeout_ms / 1000
            while time.monotonic() < deadline and (
                    chunk := self._take(partial(stream.read, _QUIET_S), deframer)):
                stale += len(chunk)
            self._unsettled = False
        stale += deframer.reset()
        if stale:
            log.debug("%s: discarded %d stale bytes before a request", self.link.name, stale)

    def _take(self, read: Read, deframer: Deframer) -> bytes:
        """One read within what is left of the poll's budget; the budget spent means a
        flood: the connection is closed and ``LinkFlooded`` raised."""
        data = self._guarded(partial(read, self._left))
        self._left -= len(data)
        if self._left <= 0:
            self._flooded(deframer)
        return data

    def _flooded(self, deframer: Deframer) -> None:
        budget = read_budget(deframer.framing)
        self.floods += 1
        self._unsettled = False  # the next connection has no late answer to wait for
        deframer.reset()
        self._disconnect()
        if not self._flooding:
            self._flooding = True
            log.warning("%s: the device sent more than %d bytes in one poll (a flood); "
                        "the link is closed and reopened after the device's backoff, its "
                        "readings are BAD 'flood' (further floods are counted, not logged)",
                        self.link.name, budget)
        raise LinkFlooded(f"{self.link.name}: flood: more than {budget} bytes in one poll "
                          f"({FLOOD_FRAMES} records of max_bytes {deframer.framing.max_bytes})")

    def _not_flooding(self) -> None:
        if self._flooding:
            self._flooding = False
            log.info("%s: no longer flooding after %d flooded polls", self.link.name,
                     self.floods)

    def _pace(self) -> None:
        wait_s = self._last_write + self.link.request_gap_ms / 1000 - time.monotonic()
        if wait_s > 0:
            time.sleep(wait_s)

    def _connected(self) -> ByteStream:
        if self._stream is None:
            self._stream = self._open()
            if self._tap is not None:
                self._stream = TappedStream(self._stream, self._tap)
        return self._stream

    def _open(self) -> ByteStream:
        link = self.link
        try:
            if isinstance(link, SerialLink):
                return open_serial_port(link.port, link.baudrate, link.bytesize,
                                        link.parity.value, link.stopbits)
            sock = socket.create_connection((link.host, link.port), link.timeout_ms / 1000)
        except OSError as err:
            raise LinkDown(f"{link.name}: cannot connect: {err}") from err
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if link.connect_pause_ms:
            time.sleep(link.connect_pause_ms / 1000)
        return TcpStream(sock)

    def _guarded(self, action: Callable[[], T]) -> T:
        """Run one I/O call; an OSError means the port or connection is gone."""
        try:
            return action()
        except OSError as err:
            self._disconnect()
            raise LinkDown(f"{self.link.name}: connection lost: {err}") from err
