"""Devices that flood: they send without end, as fast as the machine allows, to whoever
connects (a TCP serial-device server) or opens the port (a pseudo-terminal).

Both stop sending while nobody reads, so a test's flood costs CPU only while the agent
has the link open.
"""

from __future__ import annotations

import os
import select
import socket
import termios
import threading
import tty

from support.tcpdevice import TcpDevice

CHUNK = b"0123456789," * 6000  # no line end, no start marker: never a record


class FloodingTcpDevice(TcpDevice):
    """A serial-device server on a free port of 127.0.0.1 that floods every connection
    with ``chunk`` until the client closes it. ``connections`` counts accepted ones
    (a closed and reopened link shows as a second connection)."""

    def __init__(self, chunk: bytes = CHUNK) -> None:
        super().__init__("flood-tcp")
        self._chunk = chunk
        self.sent_bytes = 0

    def serve(self, conn: socket.socket) -> None:
        """Send until the agent closes the connection (an OSError ends the serving)."""
        while not self.stopping:
            try:
                self.sent_bytes += conn.send(self._chunk)
            except TimeoutError:
                continue  # nobody reads right now


class FloodingPty:
    """A serial port (``agent_path``, a pseudo-terminal) whose device end floods."""

    def __init__(self, chunk: bytes = CHUNK) -> None:
        self._chunk = chunk
        self._master, self._slave = os.openpty()
        for fd in (self._master, self._slave):
            tty.setraw(fd, termios.TCSANOW)
        os.set_blocking(self._master, False)
        # the slave stays open here, so the master never sees EIO while the agent reopens
        self.agent_path = os.ttyname(self._slave)
        self.sent_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="flood-pty")

    def __enter__(self) -> FloodingPty:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        os.close(self._master)
        os.close(self._slave)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not select.select([], [self._master], [], 0.2)[1]:
                continue
            try:
                self.sent_bytes += os.write(self._master, self._chunk)
            except BlockingIOError:
                continue
