"""Turn delimited frames into capture records, pairing each answer with its request.

Modbus TCP pairs by transaction id within one connection. Masters reuse ids (several
requests with one id in flight is legal, if unwise, and real captures hold it), so among
open requests with the answer's id the oldest wins, as a device answers in order. RTU and
ASCII have no id: a serial master waits for each answer, so an answer belongs to the one
request before it; on a text link every record up to the next request does (an answer
of several lines). A request left open is unanswered; an answer that finds no request
(a capture that starts mid-exchange, a device talking out of turn) keeps no xid.

Pure and clock-free: the proxy and the pcap importer both feed it in time order.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import replace

from edge_agent.tools.capture.format import TEXT, Event, Frame, Record, decode_frame
from edge_agent.tools.capture.modbus_frames import rtu_adu, tcp_adu

MAX_OPEN_PER_CONNECTION = 256  # older open requests are left unanswered


class Exchanges:
    """Numbers requests (xid 1, 2, ...) and gives each answer its request's xid."""

    def __init__(self, protocols: dict[str, str], first_xid: int = 1) -> None:
        """``protocols`` maps each link name to its protocol (``modbus-tcp``, ...);
        ``first_xid`` is above every xid already in a capture that is being continued."""
        self._protocols = protocols
        self._next_xid = first_xid
        self._open: dict[tuple[str, int | None], deque[Frame]] = {}

    def frame(self, t: float, direction: str, link: str, conn: int | None, data: bytes,
              problem: str | None = None) -> Frame:
        """The record of one frame; ``problem`` is the framer's reason it is malformed."""
        protocol = self._protocols[link]
        info = decode_frame(protocol, data, direction == "tx")
        if problem is not None:
            info = replace(info, malformed=problem)
        frame = Frame(t, direction, link, data, info, conn)
        if not _pairable(protocol, data):
            return frame
        if direction == "tx":
            return self._opened(frame)
        return self._answered(frame)

    def close(self, link: str, conn: int | None) -> list[Frame]:
        """The connection ended: its open requests are unanswered (returned for counts)."""
        return list(self._open.pop((link, conn), ()))

    def _opened(self, frame: Frame) -> Frame:
        frame = replace(frame, xid=self._next_xid)
        self._next_xid += 1
        waiting = self._open.setdefault((frame.link, frame.conn), deque())
        if self._protocols[frame.link] != "modbus-tcp":
            waiting.clear()  # a serial master waits for each answer: the last one is over
        waiting.append(frame)
        if len(waiting) > MAX_OPEN_PER_CONNECTION:
            waiting.popleft()
        return frame

    def _answered(self, frame: Frame) -> Frame:
        waiting = self._open.get((frame.link, frame.conn))
        if not waiting:
            return frame
        if self._protocols[frame.link] == TEXT:  # an answer of several lines: every one
            return replace(frame, xid=waiting[-1].xid)  # belongs to the last request
        request = next((r for r in waiting if r.info.tid == frame.info.tid), None)
        if request is None:
            return frame
        waiting.remove(request)
        info = frame.info
        if info.address is None:  # read answers carry no address: the request's
            info = replace(info, address=request.info.address, count=request.info.count)
        return replace(frame, xid=request.xid, info=info)


def _pairable(protocol: str, data: bytes) -> bool:
    """Whether the frame's framing is sound enough to pair it (TCP header, RTU CRC)."""
    if protocol == "modbus-tcp":
        return tcp_adu(data) is not None
    if protocol == "modbus-rtu":
        return rtu_adu(data) is not None
    return True


def tally(records: Sequence[Record]) -> Counter[str]:
    """Frames by kind: requests, answers, exceptions, malformed, unanswered, unmatched."""
    counts: Counter[str] = Counter()
    answered = {r.xid for r in records if isinstance(r, Frame) and r.dir == "rx" and r.xid}
    for record in records:
        if isinstance(record, Event):
            counts[f"{record.event} events"] += 1
            continue
        counts["requests" if record.dir == "tx" else "answers"] += 1
        if record.info.malformed is not None:
            counts["malformed"] += 1
        if record.info.exception_code is not None:
            counts["exceptions"] += 1
        if record.dir == "tx" and record.xid is not None and record.xid not in answered:
            counts["unanswered"] += 1
        if record.dir == "rx" and record.xid is None:
            counts["without request"] += 1
    return counts
