"""Simulated text-protocol instruments, for the tests and the demo.

``TextDeviceSim`` runs a model on the device end of a pseudo-terminal pair (a serial
instrument) or on a TCP port (an instrument behind a serial-device server), and can be
told to misbehave the ways field instruments do. Faults apply to the next answer (or
streamed record), one per answer, in the order they were queued:

* ``bad_checksum``: the frame's checksum is off by one;
* ``noise``: garbage bytes come before the frame;
* ``reset``: half the frame, then the boot banner of a restarting instrument, and no
  answer;
* ``silent``: no answer at all.

The models build their frames with their own few lines of code, not with
edge_agent_drivers.serialtext.protocol, so an end-to-end test compares two independent
implementations.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol

FAULTS = ("bad_checksum", "noise", "reset", "silent")
NOISE = b"\x00\xff#~garbage~\x7f"


class TextModel(Protocol):
    """What an instrument says. ``period_s`` set: it streams ``record()`` on its own."""

    period_s: float | None
    request_end: bytes
    boot_banner: bytes

    def answer(self, request: bytes, corrupt: bool) -> bytes | None: ...

    def record(self, corrupt: bool) -> bytes: ...


def _local_clock() -> datetime:
    """The analyzers' clock: China standard time (UTC+8), whole seconds."""
    return datetime.now(UTC).astimezone(timezone(timedelta(hours=8))).replace(microsecond=0)


@dataclass
class NoxAnalyzerSim:
    """The NOx/SO2 analyzer of drivers/serialtext/profile.yaml (see its README).

    Answers ``<STX>DA<addr><ETX>`` with
    ``<STX>MD<addr>,YYYY-MM-DD,hh:mm:ss,NO,NO2,NOX,SO2,<status><ETX><sum8 hex><CR><LF>``;
    values are ``+0012.3`` style, ``----`` when there is none.
    """

    address: int = 1
    values: dict[str, float | None] = field(default_factory=lambda: {
        "no": 12.3, "no2": 4.5, "nox": 16.8, "so2": 3.1})
    status: str = "A"
    clock: Callable[[], datetime] = _local_clock
    period_s: float | None = None
    request_end: bytes = b"\x03"
    boot_banner: bytes = b"\r\nNOX-SIM BOOT V1.0 SELFTEST OK\r\n"
    last_time: datetime | None = None

    def answer(self, request: bytes, corrupt: bool) -> bytes | None:
        if request.lstrip(b"\r\n") != b"\x02DA%02d\x03" % self.address:
            return None
        return self.record(corrupt)

    def record(self, corrupt: bool) -> bytes:
        moment = self.last_time = self.clock()
        numbers = ",".join("----" if self.values[name] is None else f"{self.values[name]:+07.1f}"
                           for name in ("no", "no2", "nox", "so2"))
        body = (f"MD{self.address:02d},{moment:%Y-%m-%d,%H:%M:%S},{numbers},"
                f"{self.status}").encode("ascii")
        check = (sum(body) + 0x03 + (1 if corrupt else 0)) & 0xFF
        return b"\x02" + body + b"\x03" + b"%02X" % check + b"\r\n"


@dataclass
class H2sStreamSim:
    """An H2S analyzer streaming NMEA-style lines on its own every ``period_s``:
    ``$H2S,0.012,ppm,OK*41<CR><LF>`` (XOR of the bytes between ``$`` and ``*``)."""

    value: float | None = 0.012
    status: str = "OK"
    period_s: float | None = 0.1
    request_end: bytes = b"\r"
    boot_banner: bytes = b"\r\n*** H2S-SIM RESTART ***\r\n"
    sent: int = 0

    def answer(self, request: bytes, corrupt: bool) -> bytes | None:
        return None

    def record(self, corrupt: bool) -> bytes:
        self.sent += 1
        shown = "" if self.value is None else f"{self.value:.3f}"
        body = f"H2S,{shown},ppm,{self.status}".encode("ascii")
        check = 0
        for byte in body:
            check ^= byte
        return b"$" + body + b"*" + b"%02X" % (check ^ (1 if corrupt else 0)) + b"\r\n"


class TextDeviceSim:
    """Runs ``model`` until ``stop``: on ``serial_path`` (a pty's device end) or, without
    one, on a TCP port of 127.0.0.1 (``tcp_port``) accepting one connection at a time."""

    def __init__(self, model: TextModel, serial_path: str | None = None) -> None:
        self.model = model
        self.faults: deque[str] = deque()
        self.requests: list[bytes] = []
        self.answers = 0
        self.tcp_port: int | None = None
        self._path = serial_path
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._fd: int | None = None
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="text-sim")

    def start(self) -> TextDeviceSim:
        if self._path is not None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_NOCTTY)
        else:
            self._listener = socket.create_server(("127.0.0.1", 0))
            self.tcp_port = self._listener.getsockname()[1]
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for closable in (self._conn, self._listener):
            if closable is not None:
                closable.close()
        if self._fd is not None:
            os.close(self._fd)

    def queue(self, *faults: str) -> None:
        """Misbehave on the next answers, one fault each (see the module docstring)."""
        unknown = [fault for fault in faults if fault not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault {unknown[0]!r}; known: {', '.join(FAULTS)}")
        self.faults.extend(faults)

    def send_raw(self, data: bytes) -> None:
        """Bytes on the line right now (noise, a partial line, a banner)."""
        self._write(data)

    def drop_connection(self) -> None:
        """The serial-device server closes the TCP connection (reboot, idle timeout)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):  # already closed by the other end
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _run(self) -> None:
        buffer = b""
        period = self.model.period_s
        next_record = time.monotonic() + (period or 0)
        while not self._stop.is_set():
            wait_s = 0.05 if period is None else max(0.0, next_record - time.monotonic())
            data = self._read(min(wait_s, 0.05))
            if data:
                buffer = self._requests(buffer + data)
            if period is not None and time.monotonic() >= next_record:
                next_record += period
                self._reply(self.model.record)

    def _requests(self, buffer: bytes) -> bytes:
        end = self.model.request_end
        while end in buffer:
            request, buffer = buffer.split(end, 1)
            request += end
            self.requests.append(request)
            self._reply(lambda corrupt, request=request: self.model.answer(request, corrupt))
        return buffer

    def _reply(self, render: Callable[[bool], bytes | None]) -> None:
        fault = self.faults.popleft() if self.faults else None
        frame = render(fault == "bad_checksum")
        if frame is None or fault == "silent":
            return
        self.answers += 1
        if fault == "noise":
            frame = NOISE + frame
        elif fault == "reset":
            frame = frame[:len(frame) // 2] + self.model.boot_banner
        self._write(frame)

    def _read(self, timeout_s: float) -> bytes:
        if self._fd is not None:
            if select.select([self._fd], [], [], timeout_s)[0]:
                return os.read(self._fd, 4096)
            return b""
        return self._read_tcp(timeout_s)

    def _read_tcp(self, timeout_s: float) -> bytes:
        assert self._listener is not None
        conn = self._conn
        if conn is None:
            if select.select([self._listener], [], [], timeout_s)[0]:
                self._conn, _ = self._listener.accept()
            return b""
        try:
            if not select.select([conn], [], [], timeout_s)[0]:
                return b""
            data = conn.recv(4096)
        except (OSError, ValueError):  # closed by drop_connection meanwhile
            data = b""
        if not data and conn is self._conn:
            self.drop_connection()
        return data

    def _write(self, data: bytes) -> None:
        with self._write_lock:
            if self._fd is not None:
                os.write(self._fd, data)
            elif self._conn is not None:
                try:
                    self._conn.sendall(data)
                except OSError:
                    self.drop_connection()
