"""A clock for the Modbus serial drain that puts a late answer inside the drain's wait.

After a timeout or a broken answer, an RTU/ASCII client on a serial line waits until the
line has been quiet for 100 ms and discards what arrived (``pymodbus_client._drain_serial``),
so that a late answer is not read as the next request's. Proving that with real time
needs the answer to land after the timeout and inside those 100 ms: a 50 ms margin that a
second test worker on two shared cores broke in 3 of 21 runs. This clock takes real time
out of the drain instead: time moves only when the drain sleeps, and on each sleep the
slave's held late answer is released and waited for on the agent's side of the line.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios
from collections.abc import Callable
from types import TracebackType

from support.waiting import wait_until


class InstantDrain:
    """Stands in for ``time`` as ``pymodbus_client.drain_clock`` where nothing can arrive
    late (a muted unit, a dead device): time moves only when the drain sleeps, so its
    100 ms of waiting for a quiet line after each timeout pass at once. ``waits`` counts
    the drain's sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits = 0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float, /) -> None:
        self.waits += 1
        self.now += seconds


class LateAnswerInTheDrain:
    """Stands in for ``time`` as ``pymodbus_client.drain_clock`` (set it with monkeypatch).

    ``sleep`` calls ``release`` (``RawRtuSlave.release_late``: send the held late answer,
    return its length, 0 if none), waits until that many bytes are in the agent's input
    queue (``agent_path``, read with FIONREAD, never consumed), then moves the clock on: the
    drain sees the answer after the timeout and while it waits for quiet, which is exactly
    what it exists for. ``released`` counts the answers released that way; a client that
    does not drain never sleeps here, and the slave sends the held answer right before the
    next one instead."""

    def __init__(self, release: Callable[[], int], agent_path: str) -> None:
        self._release = release
        self._line = os.open(agent_path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        self.now = 0.0
        self.released = 0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float, /) -> None:
        if sent := self._release():
            self.released += 1
            wait_until(lambda: self._waiting() >= sent, 30,
                       "the late answer in the agent's input queue", poll_s=0.001)
        self.now += seconds

    def _waiting(self) -> int:
        """Bytes in the agent's side input queue (the pty's, whoever holds it open)."""
        raw = fcntl.ioctl(self._line, termios.FIONREAD, b"\0\0\0\0")
        return int(struct.unpack("i", raw)[0])

    def close(self) -> None:
        os.close(self._line)

    def __enter__(self) -> LateAnswerInTheDrain:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def once(length: int) -> Callable[[], int]:
    """A ``release`` for a device that answers late by itself (a SimServer's delay): the
    first drain waits for its ``length`` bytes, later drains for nothing."""
    pending = [length]

    def release() -> int:
        return pending.pop() if pending else 0

    return release
