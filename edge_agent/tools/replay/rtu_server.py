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
import logging

from edge_agent.tools.capture.modbus_frames import rtu_frame_length
from edge_agent.tools.replay.serialport import WatchedPort
from edge_agent.tools.replay.serve import Responder

log = logging.getLogger(__name__)
QUIET_S = 0.05
class RtuReplayServer:
    """Answers requests arriving on ``path`` (a serial device or a pty path)."""

    def __init__(self, responder: Responder, path: str, *, baudrate: int = 9600,
                 parity: str = "N", stopbits: int = 1) -> None:
        self._responder = responder
        self._port = WatchedPort(path, (baudrate, parity, stopbits), self._received)
        self._buffer = b""
        self._quiet: asyncio.TimerHandle | None = None
        self._muted = False

    async def start(self) -> RtuReplayServer:
        self._port.open()
        return self

    async def close(self) -> None:
        if self._quiet is not None:
            self._quiet.cancel()
        self._port.close()

    def _received(self, data: bytes) -> None:
        if self._muted:
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
        if reply.data is not None:
            self._port.write(reply.data)
        if reply.hang_up:
            self._muted = True
            self._buffer = b""
