"""Cut one direction of a Modbus TCP byte stream into frames, keeping bad bytes as such.

TCP delivers a byte stream in segments of any size: one segment may carry several frames
(a master that pipelines requests), one frame may span several segments. The MBAP length
field delimits frames. When bytes cannot start a frame (a capture that begins in the middle
of a frame, a device that sends garbage, a header with a wrong protocol id or length), the
length field is useless, so the only boundary left is the end of the segment that carried
them: everything up to there becomes one malformed frame, and framing resumes with the next
segment. Senders write one frame per segment almost always, so this resynchronises at once.

Used by the recording proxy (segments are what ``recv`` returned) and by the pcap importer
(segments are reassembled TCP payloads). Pure: no I/O, no clock.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from edge_agent.tools.capture.modbus_frames import MBAP_HEADER, mbap_header_problem


@dataclass(frozen=True)
class RawFrame:
    """One delimited frame: ``t`` is when its last byte arrived (seconds, caller's clock);
    ``problem`` says why it could not be framed (None: framed by its MBAP length)."""

    t: float
    data: bytes
    problem: str | None = None


class MbapSplitter:
    """Frames of one direction of one connection, fed segment by segment."""

    def __init__(self) -> None:
        self._pending = b""
        self._pending_t = 0.0

    def feed(self, segment: bytes, t: float) -> list[RawFrame]:
        """Frames completed by ``segment`` (arrived at ``t``), in order."""
        frames: list[RawFrame] = []
        if self._pending and len(self._pending) < MBAP_HEADER \
                and _starts_frame(segment) and not _starts_frame(self._pending + segment):
            # A stray tail of the previous segment, and this one starts cleanly.
            frames.append(self._stray())
        buffer = self._pending + segment
        self._pending = b""
        while len(buffer) >= MBAP_HEADER:
            problem = mbap_header_problem(buffer)
            if problem is not None:
                frames.append(RawFrame(t, buffer, problem))
                return frames
            total = MBAP_HEADER + struct.unpack(">H", buffer[4:6])[0]
            if len(buffer) < total:
                break
            frames.append(RawFrame(t, buffer[:total]))
            buffer = buffer[total:]
        self._pending, self._pending_t = buffer, t
        return frames

    def interrupt(self, t: float, why: str) -> list[RawFrame]:
        """The stream broke (bytes missing from a capture, connection closed): what was
        waiting for the rest of its frame becomes a malformed frame."""
        if not self._pending:
            return []
        frame = RawFrame(t, self._pending, f"{len(self._pending)} bytes of an unfinished "
                                           f"frame ({why})")
        self._pending = b""
        return [frame]

    @property
    def pending(self) -> int:
        """Bytes waiting for the rest of their frame."""
        return len(self._pending)

    def _stray(self) -> RawFrame:
        frame = RawFrame(self._pending_t, self._pending,
                         f"{len(self._pending)} stray bytes, not a frame")
        self._pending = b""
        return frame


def _starts_frame(data: bytes) -> bool:
    return len(data) >= MBAP_HEADER and mbap_header_problem(data) is None
