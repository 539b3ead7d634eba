"""The service manager's side of sd_notify: a datagram socket the agent's NOTIFY_SOCKET
points at, read the way systemd reads it (one datagram, newline-separated KEY=VALUE)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path


class NotifyListener:
    """A bound AF_UNIX datagram socket; ``address`` is what NOTIFY_SOCKET should say
    (``@name`` for the abstract namespace, or a file path)."""

    def __init__(self, path: Path | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if path is None:
            name = f"edge-agent-test-{os.getpid()}-{id(self):x}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.sock.bind(str(path))
            self.address = str(path)
        self.received: list[dict[str, str]] = []

    def next(self, timeout_s: float) -> dict[str, str]:
        """The next datagram as a dict; fails the test if none comes within ``timeout_s``."""
        self.sock.settimeout(timeout_s)
        try:
            data = self.sock.recv(4096)
        except TimeoutError as err:
            raise AssertionError(f"no notification within {timeout_s} s; so far: "
                                 f"{self.received[-5:]}") from err
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        self.received.append(fields)
        return fields

    def wait_for(self, key: str, timeout_s: float, value: str | None = None,
                 contains: str | None = None) -> dict[str, str]:
        """Read datagrams until one has ``key`` (equal to ``value`` / containing
        ``contains`` when given); fails at the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {key}; "
                                     f"last notifications: {self.received[-5:]}")
            fields = self.next(remaining)
            if key in fields and (value is None or fields[key] == value) \
                    and (contains is None or contains in fields[key]):
                return fields

    def close(self) -> None:
        self.sock.close()
