"""A device on a free TCP port of 127.0.0.1 that serves one connection at a time, on
its own thread: the part every hand-made test device shares (floods.py, rawmodbus.py).

A subclass says what happens on a connection (``serve``); this class accepts, counts
connections, closes each one, and stops within a poll interval (0.2 s) of ``__exit__``.
An OSError while serving means the client went away: the next connection is awaited.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Self

POLL_S = 0.2  # how long accept and each socket call wait before looking at the stop flag


class TcpDevice:
    """Base of the test devices; ``port`` is where the agent connects."""

    def __init__(self, name: str) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(POLL_S)
        self.port = self._server.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._server.close()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def serve(self, conn: socket.socket) -> None:
        """What the device does with one connection (its timeout is POLL_S)."""
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.settimeout(POLL_S)
            with conn, contextlib.suppress(OSError):
                self.serve(conn)
