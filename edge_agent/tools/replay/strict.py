"""Strict replay: answer only the recorded requests, in the recorded order.

The device's side of a capture is played back exactly: each request must equal the next
recorded one (unit id and PDU byte for byte; the transaction id, which each master numbers
its own way, is not compared), and gets the recorded answer, silence included. Anything
else is a ``Mismatch``: it is kept for the test to see, logged, and the replay goes mute
and hangs up, so the master fails at once instead of polling on against a script that no
longer fits.

Answers go out as recorded. A malformed recorded answer is sent as the same bytes; a good
one gets the request's transaction id. Replaying a TCP capture on an RTU port (or the
other way round) reframes each answer in the server's framing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edge_agent.tools.capture.modbus_frames import encode_rtu, encode_tcp
from edge_agent.tools.replay.script import Script, adu
from edge_agent.tools.replay.serve import Reply

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mismatch:
    """A request the recording did not have at that point. ``number`` counts the
    recorded requests from 1; ``expected`` is None past the end of the recording."""

    number: int
    received: bytes
    expected: bytes | None
    reason: str

    def __str__(self) -> str:
        expected = self.expected.hex(" ") if self.expected is not None else "nothing"
        return (f"request {self.number}: {self.reason}: received {self.received.hex(' ')}, "
                f"recording has {expected}")


class StrictReplay:
    """Plays one link's script; ``mismatches`` and ``done`` say how it went."""

    def __init__(self, script: Script) -> None:
        self._script = script
        self._next = 0
        self.mismatches: list[Mismatch] = []

    @property
    def done(self) -> bool:
        """Every recorded request came, in order, and nothing else did."""
        return self._next == len(self._script.exchanges) and not self.mismatches

    @property
    def served(self) -> int:
        return self._next

    def respond(self, frame: bytes, protocol: str) -> Reply:
        if self.mismatches:
            return Reply(hang_up=True)
        mismatch = self._check(frame, protocol)
        if mismatch is not None:
            self.mismatches.append(mismatch)
            log.error("strict replay: %s", mismatch)
            return Reply(hang_up=True)
        exchange = self._script.exchanges[self._next]
        self._next += 1
        if exchange.answer is None:
            return Reply()
        return Reply(self._answer(exchange.answer.data, frame, protocol))

    def _check(self, frame: bytes, protocol: str) -> Mismatch | None:
        number = self._next + 1
        if self._next >= len(self._script.exchanges):
            return Mismatch(number, frame, None, "the recording has no more requests "
                            f"(it held {len(self._script.exchanges)})")
        expected = self._script.exchanges[self._next].request.data
        if _comparable(frame, protocol) != _comparable(expected, self._script.protocol):
            return Mismatch(number, frame, expected, "request differs from the recording")
        return None

    def _answer(self, recorded: bytes, request: bytes, protocol: str) -> bytes:
        body = adu(recorded, self._script.protocol)
        if body is None:
            return recorded  # malformed as recorded: replay the very bytes
        if protocol == "modbus-tcp":
            tid = int.from_bytes(request[:2], "big") if len(request) >= 2 else 0
            return encode_tcp(tid, body[0], body[1:])
        return encode_rtu(body[0], body[1:])


def _comparable(frame: bytes, protocol: str) -> bytes:
    """What must be identical: unit id + PDU of a sound frame; otherwise the bytes as they
    are, less a TCP transaction id."""
    body = adu(frame, protocol)
    if body is not None:
        return body
    return frame[2:] if protocol == "modbus-tcp" else frame
