"""The serial side of the replay servers (RTU and text): a port or pty opened raw with the
recorded line settings, and reads that survive an unplugged adapter. Pure os/termios."""

from __future__ import annotations

import asyncio
import logging
import os
import termios
import tty
from collections.abc import Sequence

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
