"""TCP segments from a pcap or pcapng file: the one module of ours that imports dpkt.

The files' records are read by ``pcap_records.py`` (classic libpcap: microsecond or
nanosecond, either byte order) and ``pcapng_records.py`` (each interface with its own
link type), which report every record that is not whole. dpkt dissects each packet by
its interface's link type: Ethernet (with VLAN tags), Linux cooked captures (SLL, SLL2),
raw IP and BSD loopback/null, then IPv4 and IPv6, in pure Python. Everything the importer
needs leaves this module as a plain ``TcpSegment``; nothing dpkt-specific escapes it.

Nothing is lost without a count: a packet that is not TCP over IP is counted; one whose
headers cannot be read is listed (number and byte offset); packets of an interface whose
link type carries no IP we can read are counted per interface; a TCP packet the capture's
snap length cut short is counted; damage to the file itself is listed in
``PcapSummary.damage``.
"""

from __future__ import annotations

import ipaddress
import mmap
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt

from edge_agent.tools.capture.pcap_records import (
    PCAP_MAGIC,
    ClassicPcap,
    Damage,
    Interface,
    PacketRecord,
)
from edge_agent.tools.capture.pcapng_records import SECTION_HEADER, Pcapng

_SYN, _FIN, _RST = dpkt.tcp.TH_SYN, dpkt.tcp.TH_FIN, dpkt.tcp.TH_RST
_TCP = 6
# loopback/null header families: AF_INET, and AF_INET6 as Linux, the BSDs and macOS number it
_FAMILY_IPV4, _FAMILY_IPV6 = {2}, {10, 24, 28, 30}
_OTHER_LINKS = {105: "IEEE 802.11 wireless without radio header",
                127: "IEEE 802.11 wireless with radiotap header", 147: "user-defined",
                189: "Linux USB", 195: "IEEE 802.15.4", 220: "Linux USB",
                249: "Linux netlink", 9: "PPP", 50: "PPP in HDLC framing",
                104: "Cisco HDLC", 201: "Bluetooth", 253: "Linux netlink (nflog)"}


class PcapError(Exception):
    """The file is not a pcap or pcapng file at all."""


@dataclass(frozen=True)
class TcpSegment:
    """One captured TCP segment. ``index`` is the packet number in the file (from 1, as
    Wireshark counts); ``t_us`` microseconds since the epoch (an integer: float seconds
    since 1970 cannot hold microseconds exactly, and a pcap and a pcapng of the same
    packets must give the same times); addresses as text."""

    index: int
    t_us: int
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    syn: bool
    fin: bool
    rst: bool
    payload: bytes


@dataclass(frozen=True)
class Skipped:
    """Frames of one interface left unread because of its link type."""

    interface: Interface
    frames: int
    reason: str

    def describe(self) -> str:
        return f"{self.frames} frame(s) of {self.interface.describe()} skipped: {self.reason}"


@dataclass
class PcapSummary:
    """What reading the file met besides TCP segments."""

    packets: int = 0
    not_tcp: int = 0
    undecodable: list[tuple[int, int]] = field(default_factory=list)  # (number, offset)
    snap_cut: int = 0
    damage: list[Damage] = field(default_factory=list)
    interfaces: list[Interface] = field(default_factory=list)
    skipped_frames: Counter[Interface] = field(default_factory=Counter)

    @property
    def cut_short(self) -> bool:
        """The file stops inside a record: a capture cut short (plug pulled, copy cut)."""
        return any(d.at_end for d in self.damage)

    @property
    def damaged(self) -> list[Damage]:
        """Damage before the end of the file: records lost in the middle."""
        return [d for d in self.damage if not d.at_end]

    def skipped(self) -> list[Skipped]:
        """Per interface with an unreadable link type, how many frames were skipped."""
        return [Skipped(interface, frames, _why_not(interface.link_type))
                for interface, frames in self.skipped_frames.items()]


def tcp_segments(path: Path, summary: PcapSummary) -> Iterator[TcpSegment]:
    """Every TCP segment in the file, in file order; ``summary`` counts the rest."""
    with path.open("rb") as stream:
        try:  # mapped, not read: a capture can be far larger than memory
            data: mmap.mmap | bytes = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
        except (ValueError, OSError):  # empty, or a pipe
            data = stream.read()
        try:
            yield from _segments(path, data, summary)
        finally:
            if isinstance(data, mmap.mmap):
                data.close()


def _segments(path: Path, data: mmap.mmap | bytes,
              summary: PcapSummary) -> Iterator[TcpSegment]:
    reader = _reader(path, data)
    decoders: dict[Interface, Callable[[bytes], Any] | None] = {}
    for record in reader.records(summary.damage):
        interface = record.interface
        if interface not in decoders:
            decoders[interface] = _LINK_DECODERS.get(interface.link_type)
        summary.packets += 1
        decode = decoders[interface]
        if decode is None:
            summary.skipped_frames[interface] += 1
            continue
        segment = _segment(summary, decode, record)
        if segment is None:
            continue
        if len(record.data) < record.original_length:
            summary.snap_cut += 1
        yield segment
    summary.interfaces[:] = reader.interfaces


def _reader(path: Path, data: mmap.mmap | bytes) -> ClassicPcap | Pcapng:
    magic = bytes(data[:4])
    try:
        if magic in PCAP_MAGIC:
            return ClassicPcap(data)
        if len(data) >= 4 and struct.unpack("<I", magic)[0] == SECTION_HEADER:
            return Pcapng(data)
    except ValueError as err:
        raise PcapError(f"{path}: {err}") from None
    raise _not_a_capture(path)


def _not_a_capture(path: Path) -> PcapError:
    return PcapError(f"{path}: not a pcap or pcapng file (tcpdump -w and Wireshark write "
                     "those)")


def _raw_ip(buf: bytes) -> Any:
    return dpkt.ip6.IP6(buf) if buf[:1] and buf[0] >> 4 == 6 else dpkt.ip.IP(buf)


def _loopback(buf: bytes) -> Any:
    """BSD loopback/null: a 4-byte address family, in the capturing host's byte order
    (link type 0) or in network order (108); read it both ways."""
    if len(buf) < 4:
        raise dpkt.NeedData("loopback header")
    families = set(struct.unpack("<I", buf[:4]) + struct.unpack(">I", buf[:4]))
    if families & _FAMILY_IPV4:
        return dpkt.ip.IP(buf[4:])
    if families & _FAMILY_IPV6:
        return dpkt.ip6.IP6(buf[4:])
    return None  # another protocol on the loopback: not TCP


_LINK_DECODERS: dict[int, Callable[[bytes], Any]] = {
    1: dpkt.ethernet.Ethernet,                     # Ethernet
    113: dpkt.sll.SLL, 276: dpkt.sll2.SLL2,        # Linux cooked (tcpdump -i any), v1 and v2
    0: _loopback, 108: _loopback,                  # BSD loopback/null; OpenBSD loopback
    101: _raw_ip, 12: _raw_ip, 14: _raw_ip,        # raw IP (and its old BSD numbers)
    228: dpkt.ip.IP, 229: dpkt.ip6.IP6,            # raw IPv4, raw IPv6
}


def _why_not(link_type: int) -> str:
    known = _OTHER_LINKS.get(link_type) or ("user-defined" if 147 <= link_type <= 162
                                            else None)
    name = f"link type {link_type}" + (f" ({known})" if known else "")
    return (f"{name} is not one that carries IP as read here (Ethernet, Linux cooked, raw "
            "IP, loopback)")


def _segment(summary: PcapSummary, decode_link: Callable[[bytes], Any],
             record: PacketRecord) -> TcpSegment | None:
    try:
        ip = decode_link(record.data)
        while not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) and hasattr(ip, "data") \
                and isinstance(ip.data, dpkt.Packet):
            ip = ip.data  # Ethernet, VLAN tags, SLL ... down to the IP packet
        if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6):
            summary.not_tcp += 1
            return None
        if not isinstance(ip.data, dpkt.tcp.TCP):
            if ip.p == _TCP and not (isinstance(ip, dpkt.ip.IP) and ip.offset):
                raise dpkt.UnpackError("TCP header cut or damaged")  # dpkt keeps bytes
            summary.not_tcp += 1
            return None
        tcp = ip.data
        return TcpSegment(record.number, record.t_us, _address(ip.src), tcp.sport,
                          _address(ip.dst), tcp.dport, tcp.seq, bool(tcp.flags & _SYN),
                          bool(tcp.flags & _FIN), bool(tcp.flags & _RST), bytes(tcp.data))
    except (dpkt.UnpackError, ValueError, IndexError, struct.error):
        summary.undecodable.append((record.number, record.offset))
        return None


def _address(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))
