"""Put one direction of a captured TCP connection back in order, as the receiver saw it.

A capture holds what passed the wire, not what the receiving program read: segments sent
twice (retransmissions), overlapping, out of order, or missing because the capture started
late or dropped packets. ``Reassembler`` takes the segments in capture order and hands out
each stream byte once, in order, each chunk stamped with the time of the segment that
brought it; a hole that never fills becomes a ``Gap`` (the bytes are missing from the
capture, not from the conversation).

Sequence numbers wrap at 2**32. A connection whose SYN was not captured starts at its
first captured segment. Pure: segments in, chunks out.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_HELD_SEGMENTS = 64  # out-of-order segments waiting for a hole to fill


@dataclass(frozen=True)
class Chunk:
    """Stream bytes, in order, from one segment captured at ``t``."""

    t: float
    data: bytes


@dataclass(frozen=True)
class Gap:
    """``missing`` stream bytes never captured, noticed at ``t``."""

    t: float
    missing: int


def _after(a: int, b: int) -> int:
    """Signed distance from sequence number ``b`` to ``a``, modulo 2**32."""
    return (a - b + 2 ** 31) % 2 ** 32 - 2 ** 31


class Reassembler:
    """One direction of one TCP connection."""

    def __init__(self) -> None:
        self._next: int | None = None  # sequence number of the next byte to hand out
        self._held: dict[int, tuple[float, bytes]] = {}
        self.duplicates = 0  # segments (or parts) already delivered: retransmissions

    def syn(self, seq: int) -> None:
        """A SYN fixes the stream's first byte at ``seq + 1``."""
        if self._next is None:
            self._next = (seq + 1) % 2 ** 32

    def segment(self, t: float, seq: int, payload: bytes) -> list[Chunk | Gap]:
        """Stream pieces this segment makes available, in order."""
        if not payload:
            return []
        if self._next is None:
            self._next = seq
        offset = _after(seq, self._next)
        if offset + len(payload) <= 0:
            self.duplicates += 1
            return []
        if offset > 0:
            self._held.setdefault(seq, (t, payload))
            return self._skip_hole() if len(self._held) > MAX_HELD_SEGMENTS else []
        if offset < 0:
            self.duplicates += 1  # partly retransmitted: keep only the new bytes
            payload = payload[-offset:]
        return self._deliver(t, payload)

    def finish(self) -> list[Chunk | Gap]:
        """The connection ended (or the capture did): holes left will never fill."""
        pieces: list[Chunk | Gap] = []
        while self._held:
            pieces += self._skip_hole()
        return pieces

    def _deliver(self, t: float, payload: bytes) -> list[Chunk | Gap]:
        assert self._next is not None
        pieces: list[Chunk | Gap] = [Chunk(t, payload)]
        self._next = (self._next + len(payload)) % 2 ** 32
        while self._held:
            seq = min(self._held, key=lambda s: _after(s, self._next or 0))
            offset = _after(seq, self._next)
            if offset > 0:
                break
            held_t, held = self._held.pop(seq)
            if offset + len(held) <= 0:
                self.duplicates += 1
                continue
            pieces.append(Chunk(held_t, held[-offset:] if offset else held))
            self._next = (self._next + len(held) + offset) % 2 ** 32
        return pieces

    def _skip_hole(self) -> list[Chunk | Gap]:
        """Give up on the hole before the earliest held segment and deliver from it."""
        assert self._next is not None
        seq = min(self._held, key=lambda s: _after(s, self._next or 0))
        t, payload = self._held.pop(seq)
        missing = _after(seq, self._next)
        self._next = seq
        return [Gap(t, missing), *self._deliver(t, payload)]
