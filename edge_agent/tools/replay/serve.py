"""What the replay servers share: how a responder answers a frame, and the image mode's
responder and clock.

A server (``tcp_server``, ``rtu_server``) delimits request frames and hands each to a
``Responder``; the responder says what to send back (``Reply``). Strict replay
(``strict.StrictReplay``) and register-image replay (``ImageReplay``) are the two
responders; neither knows sockets or ports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from edge_agent.tools.capture.modbus_frames import encode_rtu, encode_tcp
from edge_agent.tools.replay.image import RegisterImage
from edge_agent.tools.replay.script import adu


@dataclass(frozen=True)
class Reply:
    """Bytes to send (None: stay silent, as a device that does not answer), and whether
    to hang up (TCP: close the connection; RTU: go mute)."""

    data: bytes | None = None
    hang_up: bool = False


class Responder(Protocol):
    def respond(self, frame: bytes, protocol: str) -> Reply:
        """The reply to one request frame received in ``protocol``'s framing."""
        ...


class RecordingClock:
    """Recording time for the image replay: starts at the recording's first request and
    runs ``speed`` times as fast as the wall clock (1: real time). It stops at the end of
    the recording unless ``loop``, when it starts over."""

    def __init__(self, start_t: float, end_t: float, speed: float = 1.0, *,
                 loop: bool = False, monotonic: Callable[[], float] = time.monotonic) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be above 0, not {speed}")
        self._start_t, self._end_t = start_t, end_t
        self._speed, self._loop = speed, loop
        self._monotonic = monotonic
        self._origin = monotonic()

    def __call__(self) -> float:
        elapsed = (self._monotonic() - self._origin) * self._speed
        length = self._end_t - self._start_t
        if self._loop and length > 0:
            return self._start_t + elapsed % length
        return self._start_t + min(elapsed, length)


class ImageReplay:
    """Answers from a ``RegisterImage`` at the recording time ``clock()`` gives."""

    def __init__(self, image: RegisterImage, clock: Callable[[], float]) -> None:
        self._image = image
        self._clock = clock
        self.requests = 0

    def respond(self, frame: bytes, protocol: str) -> Reply:
        body = adu(frame, protocol)
        if body is None:  # broken framing: a device ignores it
            return Reply()
        self.requests += 1
        answer = self._image.answer(body[0], body[1:], self._clock())
        if answer is None:
            return Reply()
        if protocol == "modbus-tcp":
            return Reply(encode_tcp(int.from_bytes(frame[:2], "big"), body[0], answer))
        return Reply(encode_rtu(body[0], answer))
