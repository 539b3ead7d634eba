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

from edge_agent.tools.capture.modbus_frames import rtu_frame_length
from edge_agent.tools.replay.serialport import open_port, read_waiting
from edge_agent.tools.replay.serve import Responder

log = logging.getLogger(__name__)
QUIET_S = 0.05
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
        self._fd = open_port(self._path, self._settings)
        asyncio.get_running_loop().add_reader(self._fd, self._readable)
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
        data = read_waiting(self._fd, self._path)
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
