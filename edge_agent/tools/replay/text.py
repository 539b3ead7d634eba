"""Strict replay of a text-protocol instrument (a capture's ``text`` link): the recorded
requests, byte for byte and in order, get the recorded answers, as late as they came;
records the instrument sent on its own (a streaming analyser) go out on their recorded
schedule.

A text request has no length field, so the replay compares bytes as they arrive with the
next recorded request: a byte that differs is a mismatch at once (the master does not
wait for a timeout to learn it asked something else), a request not yet complete waits
for the rest. Bytes after the last recorded request are a mismatch too. After a
mismatch the replay goes mute, as the strict Modbus replay does.

An answer's lines are sent with the delays they had after their request in the recording
(in real time, whatever ``--speed``: a master's timeout is real time), so an answer that
came late, or not at all, does so again. Pure: the server (``text_server.py``) does I/O.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edge_agent.tools.capture.files import Capture
from edge_agent.tools.capture.format import TEXT, Frame, show_text
from edge_agent.tools.replay.script import ScriptError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextExchange:
    """A recorded request and its answer's records, each with its delay after the
    request (seconds); no records: the instrument did not answer."""

    request: bytes
    answer: tuple[tuple[float, bytes], ...]


@dataclass(frozen=True)
class TextScript:
    """One text link of a capture: its exchanges in order, and what the instrument sent
    unasked (``streamed``: seconds after the first such record, bytes)."""

    link: str
    exchanges: tuple[TextExchange, ...]
    streamed: tuple[tuple[float, bytes], ...]


def load_text_script(capture: Capture, link: str | None = None) -> TextScript:
    """The text link ``link`` (may be omitted when the capture has one text link)."""
    texts = [known.name for known in capture.header.links if known.protocol == TEXT]
    if link is None:
        if len(texts) != 1:
            raise ScriptError(f"the capture holds {len(texts)} text links "
                              f"({', '.join(texts) or 'none'}): say which one to replay"
                              if texts else "the capture holds no text link: replay a "
                              "Modbus capture with 'replay tcp' or 'replay rtu'")
        link = texts[0]
    if link not in texts:
        known = {k.name: k.protocol for k in capture.header.links}
        raise ScriptError(f"link {link!r} is a {known[link]} link: replay it with 'replay "
                          "tcp' or 'replay rtu'" if link in known else
                          f"the capture has no link {link!r} (it has: {', '.join(known)})")
    frames = capture.frames(link)
    exchanges = tuple(TextExchange(f.data, _answer(f, frames)) for f in frames
                      if f.dir == "tx")
    unasked = [f for f in frames if f.dir == "rx" and f.xid is None]
    streamed = tuple((f.t - unasked[0].t, f.data) for f in unasked)
    if not exchanges and not streamed:
        raise ScriptError(f"link {link!r} holds nothing to replay")
    return TextScript(link, exchanges, streamed)


def _answer(request: Frame, frames: list[Frame]) -> tuple[tuple[float, bytes], ...]:
    return tuple((max(0.0, f.t - request.t), f.data) for f in frames
                 if f.dir == "rx" and f.xid == request.xid and request.xid is not None)


@dataclass(frozen=True)
class TextMismatch:
    """Bytes the recording did not have at that point. ``number`` counts the recorded
    requests from 1; ``expected`` is None past the end of the recording."""

    number: int
    received: bytes
    expected: bytes | None
    reason: str

    def __str__(self) -> str:
        expected = show_text(self.expected) if self.expected is not None else "nothing"
        return (f"request {self.number}: {self.reason}: received {show_text(self.received)}"
                f", recording has {expected}")


@dataclass(frozen=True)
class Sends:
    """What to send after the bytes just received: (delay in seconds, bytes) each; and
    whether the replay has gone mute."""

    answers: tuple[tuple[float, bytes], ...] = ()
    mute: bool = False


class StrictTextReplay:
    """Plays one text link's script; ``mismatches`` and ``done`` say how it went."""

    def __init__(self, script: TextScript) -> None:
        self.script = script
        self._next = 0
        self._received = b""
        self.streamed_sent = 0  # counted by the server as it sends them
        self.mismatches: list[TextMismatch] = []

    @property
    def served(self) -> int:
        return self._next

    @property
    def done(self) -> bool:
        """Every recorded request came, in order, and every streamed record went out."""
        return (self._next == len(self.script.exchanges) and not self.mismatches
                and self.streamed_sent == len(self.script.streamed))

    def feed(self, data: bytes) -> Sends:
        """Bytes from the master; the answers to the requests they complete."""
        if self.mismatches:
            return Sends(mute=True)
        self._received += data
        answers: list[tuple[float, bytes]] = []
        while self._received:
            exchanges = self.script.exchanges
            if self._next >= len(exchanges):
                return self._mismatch(None, "the recording has no more requests (it held "
                                      f"{len(exchanges)})")
            expected = exchanges[self._next].request
            length = min(len(self._received), len(expected))
            if self._received[:length] != expected[:length]:
                return self._mismatch(expected, "request differs from the recording")
            if length < len(expected):
                break  # the rest of the request is still on its way
            self._received = self._received[length:]
            answers += exchanges[self._next].answer
            self._next += 1
        return Sends(tuple(answers))

    def _mismatch(self, expected: bytes | None, reason: str) -> Sends:
        """Nothing more is sent, not even the answers still due: the master must see
        the replay stop where the recording stopped fitting."""
        mismatch = TextMismatch(self._next + 1, self._received, expected, reason)
        self.mismatches.append(mismatch)
        log.error("strict replay: %s", mismatch)
        return Sends(mute=True)
