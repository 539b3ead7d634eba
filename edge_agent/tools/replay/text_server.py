"""Serve a strict text replay (``text.StrictTextReplay``) as a serial instrument, on a
serial port or a pseudo-terminal: bytes in, recorded answers out with their recorded
delays, streamed records on their recorded schedule (``speed`` times as fast).

The port is opened with the standard library (termios) in raw mode, as the RTU replay's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from edge_agent.tools.replay.serialport import WatchedPort
from edge_agent.tools.replay.text import StrictTextReplay

log = logging.getLogger(__name__)


class TextReplayServer:
    """Plays ``replay`` on ``path``; ``finished`` once it is done and nothing is pending.
    ``changed`` is called after every step, so a command can end when it finishes."""

    def __init__(self, replay: StrictTextReplay, path: str, *, baudrate: int = 9600,
                 parity: str = "N", stopbits: int = 1, bytesize: int = 8,
                 speed: float = 1.0, changed: Callable[[], None] | None = None) -> None:
        self.replay = replay
        self._port = WatchedPort(path, (baudrate, parity, stopbits, bytesize), self._received)
        self._speed = speed
        self._changed = changed or (lambda: None)
        self._pending: set[asyncio.TimerHandle] = set()
        self._muted = False

    @property
    def finished(self) -> bool:
        return self.replay.done and not self._pending

    async def start(self) -> TextReplayServer:
        self._port.open()
        for delay_s, data in self.replay.script.streamed:
            self._later(delay_s / self._speed, data, streamed=True)
        return self

    async def close(self) -> None:
        self._mute()
        self._port.close()

    def _received(self, data: bytes) -> None:
        if self._muted:
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
            if self._muted or not self._port.is_open:
                return
            self._port.write(data)
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
