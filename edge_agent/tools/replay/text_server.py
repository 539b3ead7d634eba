"""Serve a strict text replay (``text.StrictTextReplay``) as a serial instrument, on a
serial port or a pseudo-terminal: bytes in, recorded answers out with their recorded
delays, streamed records on their recorded schedule (``speed`` times as fast).

The port is opened with the standard library (termios) in raw mode, as the RTU replay's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

from edge_agent.tools.replay.serialport import open_port, read_waiting
from edge_agent.tools.replay.text import StrictTextReplay

log = logging.getLogger(__name__)


class TextReplayServer:
    """Plays ``replay`` on ``path``; ``finished`` once it is done and nothing is pending.
    ``changed`` is called after every step, so a command can end when it finishes."""

    def __init__(self, replay: StrictTextReplay, path: str, *, baudrate: int = 9600,
                 parity: str = "N", stopbits: int = 1, bytesize: int = 8,
                 speed: float = 1.0, changed: Callable[[], None] | None = None) -> None:
        self.replay = replay
        self._path = path
        self._settings = (baudrate, parity, stopbits, bytesize)
        self._speed = speed
        self._changed = changed or (lambda: None)
        self._fd: int | None = None
        self._pending: set[asyncio.TimerHandle] = set()
        self._muted = False

    @property
    def finished(self) -> bool:
        return self.replay.done and not self._pending

    async def start(self) -> TextReplayServer:
        self._fd = open_port(self._path, self._settings)
        loop = asyncio.get_running_loop()
        loop.add_reader(self._fd, self._readable)
        for delay_s, data in self.replay.script.streamed:
            self._later(delay_s / self._speed, data, streamed=True)
        return self

    async def close(self) -> None:
        self._mute()
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None

    def _readable(self) -> None:
        assert self._fd is not None
        data = read_waiting(self._fd, self._path)
        if self._muted or not data:
            return
        sends = self.replay.feed(data)
        if sends.mute:
            self._mute()
        else:
            for delay_s, answer in sends.answers:
                self._later(delay_s, answer, streamed=False)
        self._changed()

    def _later(self, delay_s: float, data: bytes, *, streamed: bool) -> None:
        handle: asyncio.TimerHandle | None = None

        def send() -> None:
            self._pending.discard(handle)  # type: ignore[arg-type]
            if self._muted or self._fd is None:
                return
            with contextlib.suppress(BlockingIOError):
                os.write(self._fd, data)
            if streamed:
                self.replay.streamed_sent += 1
            self._changed()

        handle = asyncio.get_running_loop().call_later(delay_s, send)
        self._pending.add(handle)

    def _mute(self) -> None:
        self._muted = True
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
