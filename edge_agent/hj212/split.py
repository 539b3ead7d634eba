"""Packets over 1024 characters: split with PNUM/PNO, and put back together.

Both standards: a data segment over 1024 characters is sent as several packets, each with
the Flag split bit, ``PNUM`` (how many) and ``PNO`` (which, from 1), with consecutive QNs.
We cut the CP region only between ``;`` groups (a factor is never cut), and every piece
repeats the leading plain fields (``DataTime``…), so a platform that reads each piece
alone still knows its time. Reassembly keeps those leading fields once.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import timedelta

from edge_agent.hj212.packet import (
    MAX_SEGMENT,
    ErrorKind,
    Flag,
    Packet,
    PacketError,
    qn_for,
    qn_time,
)


def _head_and_body(cp: str) -> tuple[list[str], list[str]]:
    groups = cp.split(";") if cp else []
    head = 0
    while head < len(groups) and "-" not in groups[head].split("=", 1)[0]:
        head += 1
    return groups[:head], groups[head:]


def split_packet(packet: Packet, max_segment: int = MAX_SEGMENT) -> list[Packet]:
    """``[packet]`` when its segment fits, else the pieces (QN +1 ms each, PNO 1..PNUM).
    A single factor group too long for one packet raises PacketError."""
    if packet.flag is None or packet.qn is None:
        raise PacketError(ErrorKind.FIELD, "a packet to split needs QN and Flag")
    if len(packet.segment().encode("utf-8")) <= max_segment:
        return [packet]
    head, body = _head_and_body(packet.cp)
    flag = replace(packet.flag, split=True)
    # PNUM/PNO widths depend on the count; measure with a generous placeholder (9999).
    probe = replace(packet, flag=flag, pnum=9999, pno=9999, cp="")
    room = max_segment - len(probe.segment().encode("utf-8"))
    chunks: list[list[str]] = []
    current: list[str] = []
    for group in body:
        candidate = ";".join(head + current + [group])
        if len(candidate.encode("utf-8")) <= room:
            current.append(group)
            continue
        if not current:
            raise PacketError(ErrorKind.LENGTH, f"CP group {group[:40]!r}… alone is longer "
                              f"than a packet may carry ({room} characters)")
        chunks.append(current)
        current = [group]
        if len(";".join(head + current).encode("utf-8")) > room:
            raise PacketError(ErrorKind.LENGTH, f"CP group {group[:40]!r}… alone is longer "
                              f"than a packet may carry ({room} characters)")
    if current:
        chunks.append(current)
    start = qn_time(packet.qn)
    return [replace(packet, qn=qn_for(start + timedelta(milliseconds=index)), flag=flag,
                    pnum=len(chunks), pno=index + 1, cp=";".join(head + chunk))
            for index, chunk in enumerate(chunks)]


@dataclass
class _Pending:
    pieces: dict[int, Packet]
    pnum: int


class Reassembler:
    """Collects split pieces per (MN, ST, CN, PNUM) and returns the whole packet when the
    last one arrives. At most ``max_pending`` incomplete packets are kept; the oldest is
    dropped and counted in ``dropped`` (a station that died mid-way cannot grow memory)."""

    def __init__(self, max_pending: int = 64) -> None:
        self.max_pending = max_pending
        self.dropped = 0
        self._pending: OrderedDict[tuple[str, str, str, int], _Pending] = OrderedDict()

    def add(self, packet: Packet) -> Packet | None:
        """The reassembled packet once complete; the packet itself when it is not split;
        None while pieces are missing. A piece seen twice replaces the earlier one."""
        if packet.pnum is None or packet.pno is None:
            return packet
        key = (packet.mn, packet.st, packet.cn, packet.pnum)
        pending = self._pending.get(key)
        if pending is None or packet.pno == 1 and 1 in pending.pieces:
            if pending is not None:
                self.dropped += 1
            pending = _Pending({}, packet.pnum)
            self._pending[key] = pending
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)
                self.dropped += 1
        pending.pieces[packet.pno] = packet
        if len(pending.pieces) < pending.pnum:
            return None
        del self._pending[key]
        return _join([pending.pieces[number] for number in range(1, pending.pnum + 1)])


def _join(pieces: list[Packet]) -> Packet:
    head, _ = _head_and_body(pieces[0].cp)
    groups = list(head)
    for piece in pieces:
        piece_head, body = _head_and_body(piece.cp)
        groups += [group for group in piece_head if group not in head] + body
    first = pieces[0]
    flag = Flag(first.flag.version, first.flag.ack) if first.flag else None
    return replace(first, flag=flag, pnum=None, pno=None, cp=";".join(groups))
