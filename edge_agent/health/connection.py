"""One HTTP/1.0 exchange on the health endpoint, with everything a client can hold bounded.

Why these limits: without them, 60 slow clients sending large headers took the agent from
41 MB to 400 MB, and about 120 idle connections used up its file descriptors, so
``/healthz`` stopped answering and the MQTT client could not reconnect. Now:

* at most MAX_CONNECTIONS open at once; one more is answered 503 and closed at once;
* the request (line and headers) must arrive within REQUEST_TIMEOUT_S, else 408;
* a line is at most MAX_LINE_BYTES (request line: 414, header line: 431), at most
  MAX_HEADER_LINES header lines and MAX_HEADER_BYTES in all (431);
* the answer must be taken by the client within WRITE_TIMEOUT_S, else the connection is
  dropped (the kernel's buffer holds what was written, not the agent).

So one connection holds at most ~2 x MAX_LINE_BYTES of buffer plus its answer, and the
endpoint at most MAX_CONNECTIONS + 1 file descriptors. Only GET is served; one request
per connection (HTTP/1.0, ``Connection: close``), as the ``http.server`` it replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

from edge_agent import __version__
from edge_agent.health.clienterrors import ClientErrors, clip

MAX_CONNECTIONS = 32
MAX_LINE_BYTES = 8192
MAX_HEADER_LINES = 64
MAX_HEADER_BYTES = 16384
REQUEST_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 10.0
LINGER_S, LINGER_BYTES = 1.0, 65536  # after an error answer, see _send_error

Headers = tuple[tuple[str, str], ...]
# status, content type, body, and optionally more headers (WWW-Authenticate, CSP)
Answer = tuple[HTTPStatus, str, bytes] | tuple[HTTPStatus, str, bytes, Headers]
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/1\.[0-9]")
_TEXT = "text/plain; charset=utf-8"


class ClientError(Exception):
    """The client broke a rule: ``reason`` (clienterrors.REASONS), the status to answer
    with (None: nothing to answer, the client is gone), and what it sent."""

    def __init__(self, reason: str, status: HTTPStatus | None, detail: str = "") -> None:
        super().__init__(reason)
        self.reason, self.status, self.detail = reason, status, detail


class ClientGone(Exception):
    """The client closed before sending anything: a port probe, not an error."""


@dataclass(frozen=True)
class Request:
    """What the endpoint uses of a request: the one header it reads is Authorization
    (the token when it listens beyond loopback); it is never logged."""

    method: str
    target: str
    authorization: str | None = None


async def read_request(reader: asyncio.StreamReader) -> Request:
    """The request line and headers from ``reader`` (made with limit=MAX_LINE_BYTES)."""
    line = await _line(reader, first=True)
    parts = line.split()
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _VERSION.fullmatch(parts[2]):
        raise ClientError("bad_request", HTTPStatus.BAD_REQUEST, clip(line))
    header_bytes = 0
    authorization: str | None = None
    for count in range(MAX_HEADER_LINES + 1):
        header = await _line(reader, first=False)
        if header in (b"\r\n", b"\n"):
            return Request(parts[0].decode("ascii"), parts[1].decode("iso-8859-1"),
                           authorization)
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"authorization":
            authorization = value.strip().decode("iso-8859-1")
        header_bytes += len(header)
        if count == MAX_HEADER_LINES or header_bytes > MAX_HEADER_BYTES:
            break
    raise ClientError("headers_too_large", HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                      f"more than {MAX_HEADER_LINES} lines or {MAX_HEADER_BYTES} bytes")


async def _line(reader: asyncio.StreamReader, first: bool) -> bytes:
    try:
        return await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        if first:
            raise ClientError("request_line_too_long", HTTPStatus.REQUEST_URI_TOO_LONG,
                              f"over {MAX_LINE_BYTES} bytes") from None
        raise ClientError("headers_too_large", HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                          f"a header line over {MAX_LINE_BYTES} bytes") from None
    except asyncio.IncompleteReadError as err:
        if first and not err.partial:
            raise ClientGone from None
        raise ClientError("disconnected", None, "closed before the request's end") from None
    except ConnectionError as err:
        raise ClientError("disconnected", None, type(err).__name__) from None


def response(status: HTTPStatus, content_type: str, body: bytes,
             headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """The whole HTTP/1.0 answer, headers as ``http.server`` sent them, plus ``headers``.
    ``nosniff``: a browser must take a body as the type said, never guess HTML in it."""
    more = "".join(f"{name}: {value}\r\n" for name, value in headers)
    head = (f"HTTP/1.0 {status.value} {status.phrase}\r\n"
            f"Server: edge-agent/{__version__}\r\n"
            f"Date: {formatdate(usegmt=True)}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\n"
            "X-Content-Type-Options: nosniff\r\n"
            f"{more}"
            "Connection: close\r\n\r\n")
    return head.encode("ascii") + body


def error_response(status: HTTPStatus) -> bytes:
    return response(status, _TEXT, f"{status.value} {status.phrase}\n".encode())


class Connections:
    """Accepts and serves connections, one request each, at most ``max_connections``
    at a time.

    ``answer`` computes (status, content type, body[, headers]) for a GET; it may block
    (the outbox is asked with a 5 s deadline), so the caller runs it off the loop.
    """

    def __init__(self, answer: Callable[[Request], Awaitable[Answer]], errors: ClientErrors,
                 report: Callable[[str, BaseException], None],
                 max_connections: int = MAX_CONNECTIONS) -> None:
        """``report`` is told what is not a client's fault: accept() failing (EMFILE: the
        process is out of file descriptors; accepting resumes a second later), or a bug
        that ended a connection's task."""
        self._answer = answer
        self.errors = errors
        self._report = report
        self.max_connections = max_connections
        self.open = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def accept_forever(self, listener: socket.socket) -> None:
        """Accept one connection at a time, so the endpoint never holds more than
        ``max_connections`` + 2 file descriptors (with the listener), even in a flood;
        one over the limit is answered 503 and closed at once."""
        loop = asyncio.get_running_loop()
        listener.setblocking(False)
        while True:
            try:
                conn, address = await loop.sock_accept(listener)
            except OSError as err:
                self._report("cannot accept a connection", err)
                await asyncio.sleep(1.0)
                continue
            try:
                self._start(conn, _peer(address))
            except Exception as err:  # a bug: this loop must go on accepting
                conn.close()
                self._report("cannot serve a connection", err)

    def _start(self, conn: socket.socket, peer: str) -> None:
        if self.open >= self.max_connections:
            self.errors.record("busy", peer, f"{self.open} open")
            with contextlib.suppress(OSError):  # best effort: the kernel takes it
                conn.send(error_response(HTTPStatus.SERVICE_UNAVAILABLE))
            conn.close()
            return
        self.open += 1
        task = asyncio.create_task(self._serve(conn, peer))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.open -= 1
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self._report("a connection ended on an error", error)

    async def _serve(self, conn: socket.socket, peer: str) -> None:
        """One connection, from accept to close."""
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=MAX_LINE_BYTES)
        except OSError as err:
            conn.close()
            self.errors.record("disconnected", peer, type(err).__name__)
            return
        try:
            await self._exchange(reader, writer)
        except ClientError as err:
            self.errors.record(err.reason, peer, err.detail)
            if err.status is not None:
                await _send_error(reader, writer, err.status)
        finally:
            _close(writer)

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def _exchange(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                request = await read_request(reader)
        except ClientGone:
            return
        except TimeoutError:
            raise ClientError("request_timeout", HTTPStatus.REQUEST_TIMEOUT,
                              f"over {REQUEST_TIMEOUT_S:g} s") from None
        if request.method != "GET":
            raise ClientError("unsupported_method", HTTPStatus.NOT_IMPLEMENTED,
                              clip(request.method))
        await _send(writer, response(*await self._answer(request)))


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Write ``data`` and wait until the kernel has taken all of it (a write buffer limit
    of 0), for at most WRITE_TIMEOUT_S."""
    writer.transport.set_write_buffer_limits(high=0)
    try:
        writer.write(data)
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await writer.drain()
    except TimeoutError:
        raise ClientError("write_timeout", None, f"over {WRITE_TIMEOUT_S:g} s") from None
    except ConnectionError as err:
        raise ClientError("disconnected", None, type(err).__name__) from None


async def _send_error(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      status: HTTPStatus) -> None:
    """Answer ``status`` to a client that broke a rule (already counted), then read and
    drop what it still sends for a moment (at most LINGER_BYTES in LINGER_S): closing
    with unread data makes the kernel send a reset, which can destroy the answer before
    the client reads it."""
    try:
        await _send(writer, error_response(status))
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(LINGER_S):
            taken = 0
            while taken < LINGER_BYTES and (chunk := await reader.read(MAX_LINE_BYTES)):
                taken += len(chunk)
    except (ClientError, TimeoutError, ConnectionError, asyncio.LimitOverrunError):
        pass  # the client is gone or won't stop: it has had its answer or its chance


def _close(writer: asyncio.StreamWriter) -> None:
    """Close now; drop what the client has not taken rather than hold an fd for it."""
    if writer.transport.get_write_buffer_size():
        writer.transport.abort()
    else:
        writer.close()


def _peer(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
        return f"{host}:{address[1]}"
    return str(address)
