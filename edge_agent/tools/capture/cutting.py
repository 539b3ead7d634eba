"""Cut the bytes a master receives into frames, for recording on the agent's own links.

A link client reads whatever the port or socket delivered: half an answer, an answer and
a stray byte, an answer in one piece. The capture holds frames, so received bytes are cut
here, by what the protocol says about where a frame ends:

* Modbus TCP: the MBAP length (``MbapSplitter``);
* Modbus RTU: the length the function code and byte count imply (``rtu_frame_length``);
* Modbus ASCII: CR LF;
* text protocols: a line end (LF, CR LF, or a CR not followed by LF).

Whatever is still waiting for the rest of its frame when the master sends its next request
(or the connection closes) is cut there: the master has given up on it, so it becomes one
frame of its own, malformed for Modbus (``N bytes of an unfinished frame``), and simply
the bytes that came for text protocols, whose frames this module does not judge (an
STX/ETX answer without a line end is such a frame). Pure: no I/O, no clock.
"""

from __future__ import annotations

from edge_agent.tools.capture.format import TEXT
from edge_agent.tools.capture.mbap_stream import MbapSplitter, RawFrame
from edge_agent.tools.capture.modbus_frames import rtu_frame_length


class AnswerCutter:
    """Frames of the bytes one link receives, fed as they arrive."""

    def __init__(self, protocol: str) -> None:
        self._protocol = protocol
        self._mbap = MbapSplitter() if protocol == "modbus-tcp" else None
        self._pending = b""
        self._pending_t = 0.0

    def feed(self, data: bytes, t: float) -> list[RawFrame]:
        """The frames ``data`` (arrived at ``t``) completes, in order."""
        if self._mbap is not None:
            return self._mbap.feed(data, t)
        frames = []
        if self._protocol == TEXT and self._pending.endswith(b"\r") \
                and not data.startswith(b"\n"):  # that CR ended a line, when it came
            frames.append(RawFrame(self._pending_t, self._pending))
            self._pending = b""
        self._pending += data
        self._pending_t = t
        while (end := self._frame_end()) is not None:
            frames.append(RawFrame(t, self._pending[:end]))
            self._pending = self._pending[end:]
        return frames

    def cut(self, t: float, why: str) -> list[RawFrame]:
        """The master moved on (``why``): what waits for the rest of its frame is one."""
        if self._mbap is not None:
            return self._mbap.interrupt(t, why)
        if not self._pending:
            return []
        data, self._pending = self._pending, b""
        problem = None if self._protocol == TEXT else \
            f"{len(data)} bytes of an unfinished frame ({why})"
        return [RawFrame(self._pending_t, data, problem)]

    def _frame_end(self) -> int | None:
        """Length of the complete frame at the start of the buffer, None until there is
        one."""
        buffer = self._pending
        if not buffer:
            return None
        if self._protocol == "modbus-rtu":
            length = rtu_frame_length(buffer, is_request=False)
            return length if length is not None and length <= len(buffer) else None
        line_feed = buffer.find(b"\n")
        if self._protocol != TEXT:
            return line_feed + 1 if line_feed >= 0 else None
        carriage = buffer.find(b"\r")
        if carriage >= 0 and (line_feed < 0 or carriage < line_feed):
            if carriage + 1 == len(buffer):
                return None  # a CR at the end: wait, an LF may follow
            return carriage + 2 if buffer[carriage + 1] == 0x0A else carriage + 1
        return line_feed + 1 if line_feed >= 0 else None
