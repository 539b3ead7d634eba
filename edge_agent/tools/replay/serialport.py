"""The serial side of the replay servers (RTU and text): a port or pty opened raw with the
recorded line settings, and reads that survive an unplugged adapter. Pure os/termios."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import termios
import tty
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)
READ_SIZE = 4096
_PARITY = {"N": 0, "E": termios.PARENB, "O": termios.PARENB | termios.PARODD}


def open_port(path: str, settings: Sequence) -> int:
    """A non-blocking descriptor of ``path`` configured with ``settings`` (baudrate,
    parity, stopbits[, bytesize]); raises OSError, termios.error or ValueError."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        configure_port(fd, *settings)
    except (termios.error, ValueError):
        os.close(fd)
        raise
    return fd


def read_waiting(fd: int, path: str) -> bytes:
    """What is waiting on ``fd`` (b"" when nothing is). When the device is gone (an
    unplugged adapter), says so once and stops watching it."""
    try:
        return os.read(fd, READ_SIZE)
    except (BlockingIOError, InterruptedError):
        return b""
    except OSError as err:
        log.error("replay: cannot read %s any more: %s", path, err.strerror)
        asyncio.get_running_loop().remove_reader(fd)
        return b""


class WatchedPort:
    """A port opened raw and watched by the running event loop, each chunk that arrives
    handed to ``received``: what the RTU and text replay servers share. What to answer,
    and when, stays theirs."""

    def __init__(self, path: str, settings: Sequence,
                 received: Callable[[bytes], None]) -> None:
        self.path = path
        self._settings = settings
        self._received = received
        self._fd: int | None = None

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def open(self) -> None:
        """Open and start watching; needs the running loop (a server's ``start``)."""
        self._fd = open_port(self.path, self._settings)
        asyncio.get_running_loop().add_reader(self._fd, self._readable)

    def close(self) -> None:
        if self._fd is None:
            return
        asyncio.get_running_loop().remove_reader(self._fd)
        os.close(self._fd)
        self._fd = None

    def write(self, data: bytes) -> None:
        """Send ``data`` if the port is open. A full output buffer drops it, as a line
        would lose it: the event loop is never blocked."""
        if self._fd is not None:
            with contextlib.suppress(BlockingIOError):
                os.write(self._fd, data)

    def _readable(self) -> None:
        assert self._fd is not None
        data = read_waiting(self._fd, self.path)
        if data:
            self._received(data)


def configure_port(fd: int, baudrate: int, parity: str, stopbits: int,
                   bytesize: int = 8) -> None:
    """Raw mode and the given speed, parity, stop bits and data bits (7 or 8)."""
    tty.setraw(fd, termios.TCSANOW)
    attrs = termios.tcgetattr(fd)
    speed = getattr(termios, f"B{baudrate}", None)
    if speed is None:
        raise ValueError(f"unsupported baud rate {baudrate}")
    attrs[2] &= ~(termios.PARENB | termios.PARODD | termios.CSTOPB | termios.CSIZE)
    attrs[2] |= _PARITY[parity] | (termios.CSTOPB if stopbits == 2 else 0) | termios.CLOCAL \
        | termios.CREAD | (termios.CS7 if bytesize == 7 else termios.CS8)
    attrs[4] = attrs[5] = speed
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
