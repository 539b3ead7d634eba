"""Serve a responder as a Modbus RTU device on a serial port or a pseudo-terminal.

RTU ends a frame with 3.5 characters of silence, which a pty does not reproduce (bytes
arrive in whatever chunks the kernel hands over), so requests are delimited by their
function code's length rules and the CRC (``rtu_frame_length``). Bytes that make no frame
(noise, a request for a function we cannot delimit) are dropped once the line has been
quiet for ``QUIET_S``, as a device resynchronises on the silence after garbage.

The port is opened with the standard library (termios) in raw mode: no pyserial here, and
a real serial port gets the baud rate and parity asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import termios
import tty

from edge_agent.capture.modbus_frames import rtu_frame_length
from edge_agent.replay.serve import Responder

log = logging.getLogger(__name__)
QUIET_S = 0.05
READ_SIZE = 4096
_PARITY = {"N": 0, "E": termios.PARENB, "O": termios.PARENB | termios.PARODD}


class RtuReplayServer:
    """Answers requests arriving on ``path`` (a serial device or a pty path)."""

    def __init__(self, responder: Responder, path: str, *, baudrate: int = 9600,
                 parity: str = "N", stopbits: int = 1) -> None:
        self._responder = responder
        self._path = path
        self._settings = (baudrate, parity, stopbits)
        self._fd: int | None = None
        self._buffer = b""
        self._quiet: asyncio.TimerHandle | None = None
        self._muted = False

    async def start(self) -> RtuReplayServer:
        fd = os.open(self._path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            configure_port(fd, *self._settings)
        except (termios.error, ValueError):
            os.close(fd)
            raise
        self._fd = fd
        asyncio.get_running_loop().add_reader(fd, self._readable)
        return self

    async def close(self) -> None:
        if self._fd is None:
            return
        asyncio.get_running_loop().remove_reader(self._fd)
        if self._quiet is not None:
            self._quiet.cancel()
        os.close(self._fd)
        self._fd = None

    def _readable(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:  # an unplugged adapter: stop watching, say so once
            log.error("replay: cannot read %s any more: %s", self._path, err.strerror)
            asyncio.get_running_loop().remove_reader(self._fd)
            return
        if self._muted or not data:
            return
        self._buffer += data
        self._answer_frames()
        if self._quiet is not None:
            self._quiet.cancel()
        if self._buffer:
            self._quiet = asyncio.get_running_loop().call_later(QUIET_S, self._line_quiet)

    def _answer_frames(self) -> None:
        while self._buffer and not self._muted:
            length = rtu_frame_length(self._buffer, is_request=True)
            if length is None:
                return
            frame, self._buffer = self._buffer[:length], self._buffer[length:]
            self._respond(frame)

    def _line_quiet(self) -> None:
        """Silence after bytes that made no frame: they were one (malformed) frame."""
        frame, self._buffer = self._buffer, b""
        if frame and not self._muted:
            self._respond(frame)

    def _respond(self, frame: bytes) -> None:
        reply = self._responder.respond(frame, "modbus-rtu")
        if reply.data is not None and self._fd is not None:
            with contextlib.suppress(BlockingIOError):
                os.write(self._fd, reply.data)
        if reply.hang_up:
            self._muted = True
            self._buffer = b""


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
