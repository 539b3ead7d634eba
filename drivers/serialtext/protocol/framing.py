"""Bytes to frames, for a stream that arrives in pieces of any size.

``Deframer.feed`` takes whatever the port delivered (half a record, three records, noise)
and returns the complete frames found so far; the rest waits for the next call. So a
record split anywhere, even byte by byte, gives the same frames as when it arrives whole.

What is not a good frame becomes a ``FrameFault`` instead of an exception:

* ``bad_checksum``: a complete frame whose checksum does not match;
* ``bad_frame``: a frame cut short by a new start marker (the device reset mid-record),
  a frame longer than ``max_bytes`` (whole, or still without its end), or a frame
  missing its checksum. The rest of an overlong line is dropped up to its line end, so
  the same bytes give the same frames however they are split.

Bytes outside any frame (noise before a start marker, a CR LF after an stx-etx frame) are
skipped and counted in ``skipped_bytes``; they are not faults, since many instruments
send them routinely.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent_drivers.serialtext.protocol.checksums import compute, decode, encode, encoded_length
from edge_agent_drivers.serialtext.protocol.escapes import show
from edge_agent_drivers.serialtext.protocol.settings import Checksum, Framing, FramingKind

_LINE_ENDS = b"\r\n"


@dataclass(frozen=True)
class Frame:
    """A complete frame that passed its checksum; ``body`` is the record without
    markers, separator and checksum."""

    body: bytes


@dataclass(frozen=True)
class FrameFault:
    """A frame that cannot be trusted; ``reason`` is the quality reason for readings."""

    reason: str
    detail: str


FrameEvent = Frame | FrameFault


class Deframer:
    """Finds frames in a byte stream. Holds at most ``max_bytes`` of an unfinished frame."""

    def __init__(self, framing: Framing, checksum: Checksum | None = None) -> None:
        self.framing = framing
        self.checksum = checksum
        self._check_len = encoded_length(checksum.kind, checksum.encoding) if checksum else 0
        self._buffer = b""
        self._discarding = False  # dropping the rest of an overlong line
        self.skipped_bytes = 0

    def feed(self, data: bytes) -> list[FrameEvent]:
        """The frames completed by ``data``, in order."""
        self._buffer += data
        if self.framing.kind is FramingKind.LINE:
            return self._lines()
        return self._marked()

    @property
    def pending(self) -> bytes:
        """The unfinished frame held so far (for messages about a cut-off answer)."""
        return self._buffer

    def reset(self) -> int:
        """Forget an unfinished frame (before a new request); returns the bytes dropped."""
        dropped, self._buffer = len(self._buffer), b""
        self._discarding = False
        self.skipped_bytes += dropped
        return dropped

    # line framing ---------------------------------------------------------------------

    def _lines(self) -> list[FrameEvent]:
        """Cut the buffer at line ends. The buffer is scanned once, from a moving
        offset, and shortened once at the end: slicing it per line would copy the rest
        each time, quadratic in a burst of short lines (a flood)."""
        events: list[FrameEvent] = []
        buffer, pos = self._buffer, 0
        ends = _LineEnds(buffer, self.framing.terminator)
        while True:
            end, end_len = ends.next_from(pos)
            if end < 0:
                break
            line, pos = buffer[pos:end], end + end_len
            if self._discarding:  # the rest of a line that outgrew max_bytes
                self._discarding = False
                self.skipped_bytes += len(line)
            elif len(line) > self.framing.max_bytes:
                events.append(self._too_long(line))
            else:
                events += self._line(line)
        self._buffer = buffer[pos:]
        if len(self._buffer) > self.framing.max_bytes:
            keep = max(len(self.framing.terminator) - 1, 0)
            fault = self._overflow("no line end", keep)
            if not self._discarding:
                events.append(fault)
            self._discarding = True
        return events

    def _line(self, line: bytes) -> list[FrameEvent]:
        """One line: leftover CR/LF and noise before the start marker are skipped; with
        a start marker, only the text after its last occurrence is the record."""
        stripped = line.lstrip(_LINE_ENDS)
        self.skipped_bytes += len(line) - len(stripped)
        events: list[FrameEvent] = []
        start = self.framing.start
        if start:
            at = stripped.rfind(start)
            if at < 0:
                self.skipped_bytes += len(stripped)
                return events
            first = stripped.find(start)
            if first < at:  # an earlier record was cut off by this one (device reset)
                events.append(FrameFault("bad_frame", "record cut short by a new start: "
                                                      f"{show(stripped[first:at])}"))
            self.skipped_bytes += first
            stripped = stripped[at + len(start):]
        if stripped:
            events.append(self._split_checksum(stripped, line_mode=True))
        return events

    # start/end framing ----------------------------------------------------------------

    def _marked(self) -> list[FrameEvent]:
        """Cut the buffer at start and end markers, scanning from a moving offset and
        shortening the buffer once at the end (see ``_lines``)."""
        events: list[FrameEvent] = []
        start, end = self.framing.start, self.framing.end
        buffer, pos = self._buffer, 0
        while True:
            begin = buffer.find(start, pos)
            if begin < 0:  # noise; keep what may be the beginning of a start marker
                cut = max(len(buffer) - (len(start) - 1), pos)
                self.skipped_bytes += cut - pos
                self._buffer = buffer[cut:]
                return events
            self.skipped_bytes += begin - pos
            pos = begin
            stop = buffer.find(end, pos + len(start))
            restart = buffer.find(start, pos + len(start))
            if restart >= 0 and (stop < 0 or restart < stop):
                events.append(FrameFault("bad_frame", f"frame cut short by a new start "
                                                      f"(device reset?): "
                                                      f"{show(buffer[pos:restart])}"))
                pos = restart
                continue
            if stop < 0 or len(buffer) < stop + len(end) + self._check_len:
                self._buffer = buffer[pos:]
                if len(self._buffer) <= self.framing.max_bytes:
                    return events
                # keep what may be the first bytes of the next start marker
                events.append(self._overflow("no end marker", len(start) - 1))
                buffer, pos = self._buffer, 0
                continue
            frame_end = stop + len(end) + self._check_len
            frame, pos = buffer[pos:frame_end], frame_end
            if len(frame) > self.framing.max_bytes:
                events.append(self._too_long(frame))
            else:
                events.append(self._split_checksum(frame[len(start):], line_mode=False))

    def _overflow(self, missing: str, keep: int) -> FrameFault:
        """Drop an unfinished frame that outgrew ``max_bytes`` (garbage, wrong settings),
        keeping ``keep`` bytes that may be the start of a multi-byte line end."""
        cut = len(self._buffer) - keep
        dropped, self._buffer = self._buffer[:cut], self._buffer[cut:]
        self.skipped_bytes += len(dropped)
        return FrameFault("bad_frame", f"{missing} within {self.framing.max_bytes} bytes "
                                       f"(check the framing settings): {show(dropped, 40)}")

    def _too_long(self, frame: bytes) -> FrameFault:
        """A complete frame longer than ``max_bytes``: refused, as it would have been had
        it arrived in pieces."""
        self.skipped_bytes += len(frame)
        return FrameFault("bad_frame", f"record longer than {self.framing.max_bytes} bytes: "
                                       f"{show(frame, 40)}")

    # checksum -------------------------------------------------------------------------

    def _split_checksum(self, rest: bytes, line_mode: bool) -> FrameEvent:
        """``rest`` is the frame after its start marker: body, end/separator, checksum."""
        check = self.checksum
        closing = (check.separator if check else b"") if line_mode else self.framing.end
        if check is None:
            return Frame(rest if line_mode else rest[:-len(closing)])
        written = rest[len(rest) - self._check_len:]
        before = rest[:len(rest) - self._check_len]
        if len(rest) < self._check_len + len(closing) or not before.endswith(closing):
            return FrameFault("bad_frame", f"no checksum where expected: {show(rest)}")
        body = before[:len(before) - len(closing)]
        covered = (self.framing.start if check.covers.with_start else b"") + body \
            + (closing if check.covers.with_end else b"")
        expected = compute(check.kind, covered)
        found = decode(written, check.kind, check.encoding, check.byte_order)
        if found != expected:
            shown = encode(expected, check.kind, check.encoding, check.byte_order)
            return FrameFault("bad_checksum", f"checksum {show(written)} does not match "
                                              f"{show(shown)} computed over {show(covered)}")
        return Frame(body)


class _LineEnds:
    """Where the next line end is, for a buffer scanned forward once. With "any line
    end" the next CR and the next LF are each remembered until passed, so a buffer of
    CR-only lines is not searched to its end for an LF at every line."""

    def __init__(self, buffer: bytes, terminator: bytes) -> None:
        self._buffer = buffer
        self._terminator = terminator
        self._next = {b"\r": -2, b"\n": -2}  # -2: not searched yet; -1: none left

    def next_from(self, pos: int) -> tuple[int, int]:
        """(offset, length) of the first line end at or after ``pos``; (-1, 0) if none."""
        if self._terminator:
            return self._buffer.find(self._terminator, pos), len(self._terminator)
        found = []
        for byte, at in self._next.items():
            if at == -2 or 0 <= at < pos:
                at = self._next[byte] = self._buffer.find(byte, pos)
            if at >= 0:
                found.append(at)
        return (min(found), 1) if found else (-1, 0)


def encode_frame(body: bytes, framing: Framing, checksum: Checksum | None) -> bytes:
    """``body`` framed as the instrument frames its records (for requests that need a
    checksum, and for simulators). Line framing with "any line end" ends with CR."""
    if framing.kind is FramingKind.STX_ETX:
        closing, tail = framing.end, b""
    else:
        closing, tail = (checksum.separator if checksum else b""), framing.terminator or b"\r"
    frame = body + closing
    if checksum is not None:
        covered = (framing.start if checksum.covers.with_start else b"") + body \
            + (closing if checksum.covers.with_end else b"")
        value = compute(checksum.kind, covered)
        frame += encode(value, checksum.kind, checksum.encoding, checksum.byte_order)
    return framing.start + frame + tail
