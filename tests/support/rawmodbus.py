"""A raw Modbus TCP / RTU-over-TCP device for hostile-input tests: it reads each request
off a real socket and answers with whatever bytes a test function returns (a valid
answer, a mutated one, noise), or floods the connection without end.

pymodbus's own server cannot send malformed frames, which is the point here; the valid
answers are built with our own few lines (independent of pymodbus's encoder).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from support.rawrtu import with_crc
from support.tcpdevice import TcpDevice


@dataclass(frozen=True)
class Request:
    """A read request as it arrived: ``tid`` is None for RTU framing."""

    tid: int | None
    unit: int
    function: int
    address: int
    count: int

    def answer_pdu(self, values: list[int]) -> bytes:
        """The valid answer's PDU (function 1-4) holding ``values`` (bits as 0/1)."""
        if self.function in (1, 2):
            bits = [v & 1 for v in values[:self.count]]
            data = bytes(sum(bit << i for i, bit in enumerate(bits[at:at + 8]))
                         for at in range(0, len(bits), 8))
        else:
            data = b"".join(struct.pack(">H", v & 0xFFFF) for v in values[:self.count])
        return bytes([self.function, len(data)]) + data

    def frame(self, pdu: bytes) -> bytes:
        """``pdu`` framed as this request was: MBAP with its transaction id, or RTU."""
        if self.tid is None:
            return with_crc(bytes([self.unit]) + pdu)
        return struct.pack(">HHHB", self.tid, 0, len(pdu) + 1, self.unit) + pdu


Answerer = Callable[[Request], bytes]


class RawModbusDevice(TcpDevice):
    """Serves one connection at a time on a free port of 127.0.0.1.

    ``answer(request)`` gives the bytes sent back; after them the connection is closed
    when ``close_after_answer`` (or when it returns True, if it is a function): a
    truncated answer then ends at once instead of in the client's timeout. ``flood``:
    after each request, send these bytes without end until the client goes away
    (``flooded_bytes`` counts what it accepted).
    """

    def __init__(self, rtu: bool, answer: Answerer | None = None, *,
                 close_after_answer: bool | Callable[[], bool] = True,
                 flood: bytes | None = None) -> None:
        super().__init__("raw-modbus")
        self.rtu = rtu
        self._answer = answer
        self._close_after = close_after_answer
        self._flood = flood
        self.requests = 0
        self.flooded_bytes = 0

    def serve(self, conn: socket.socket) -> None:
        while not self.stopping:
            try:
                request = self._read_request(conn)
            except TimeoutError:
                continue
            if request is None:
                return
            self.requests += 1
            if self._flood is not None:
                self._send_flood(conn)
                return
            assert self._answer is not None
            self.send_answer(conn, self._answer(request))
            close = self._close_after() if callable(self._close_after) else self._close_after
            if close:
                return

    def send_answer(self, conn: socket.socket, data: bytes) -> None:
        """How an answer's bytes go out: at once (a subclass may drip them)."""
        conn.sendall(data)

    def _send_flood(self, conn: socket.socket) -> None:
        """Floods until the test stops the server or the agent hangs up: the hang-up
        (reset or broken pipe) is the agent's answer to a flood, not an error here."""
        while not self.stopping:
            try:
                conn.sendall(self._flood or b"")
            except OSError:
                return
            self.flooded_bytes += len(self._flood or b"")

    def _read_request(self, conn: socket.socket) -> Request | None:
        size = 8 if self.rtu else 12
        data = b""
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        if self.rtu:
            unit, function, address, count = struct.unpack(">BBHH", data[:6])
            return Request(None, unit, function, address, count)
        tid, _proto, _length, unit, function, address, count = struct.unpack(">HHHBBHH", data)
        return Request(tid, unit, function, address, count)
