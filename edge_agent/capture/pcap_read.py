"""TCP segments from a pcap or pcapng file: the one module of ours that imports dpkt.

dpkt reads both file formats (classic libpcap, microsecond or nanosecond, either byte
order; pcapng) and dissects Ethernet (with VLAN tags), Linux cooked captures (SLL, SLL2),
raw IP and BSD loopback, IPv4 and IPv6, in pure Python. Everything the importer needs
leaves this module as a plain ``TcpSegment``; nothing dpkt-specific escapes it.

A file cut short (a capture stopped by pulling the plug) yields the packets before the
cut; ``PcapSummary.cut_short`` says so. A packet that is not TCP over IP is counted and
skipped; one too short to hold its headers is counted as undecodable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import dpkt

_LINK_DECODERS: dict[int, Any] = {
    dpkt.pcap.DLT_EN10MB: dpkt.ethernet.Ethernet,
    dpkt.pcap.DLT_LINUX_SLL: dpkt.sll.SLL,
    dpkt.pcap.DLT_LINUX_SLL2: dpkt.sll2.SLL2,
    dpkt.pcap.DLT_NULL: dpkt.loopback.Loopback,
    dpkt.pcap.DLT_LOOP: dpkt.loopback.Loopback,
}
_RAW_IP = (dpkt.pcap.DLT_RAW, 12, 14, 101, dpkt.pcap.DLT_IPV4, dpkt.pcap.DLT_IPV6)
_SYN, _FIN, _RST = dpkt.tcp.TH_SYN, dpkt.tcp.TH_FIN, dpkt.tcp.TH_RST


class PcapError(Exception):
    """The file is not a pcap/pcapng file, or holds a link type we cannot dissect."""


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


@dataclass
class PcapSummary:
    """What reading the file met besides TCP segments."""

    packets: int = 0
    not_tcp: int = 0
    undecodable: int = 0
    cut_short: bool = False
    link_type: int | None = None
    notes: list[str] = field(default_factory=list)


def tcp_segments(path: Path, summary: PcapSummary) -> Iterator[TcpSegment]:
    """Every TCP segment in the file, in file order; ``summary`` counts the rest."""
    with path.open("rb") as stream:
        reader = _open(path, stream)
        summary.link_type = reader.datalink()
        decode_link = _link_decoder(path, summary.link_type)
        packets = iter(reader)
        while True:
            try:
                t, buf = next(packets)
            except StopIteration:
                return
            except (dpkt.UnpackError, ValueError):
                summary.cut_short = True
                return
            summary.packets += 1
            t_us = round(float(t) * 1_000_000)
            segment = _segment(summary, decode_link, summary.packets, t_us, buf)
            if segment is not None:
                yield segment


def _open(path: Path, stream: BinaryIO) -> Any:
    try:
        return dpkt.pcap.UniversalReader(stream)
    except (ValueError, dpkt.UnpackError):
        raise PcapError(f"{path}: not a pcap or pcapng file (tcpdump -w and Wireshark "
                        "write those)") from None


def _link_decoder(path: Path, link_type: int) -> Any:
    if link_type in _LINK_DECODERS:
        return _LINK_DECODERS[link_type]
    if link_type in _RAW_IP:
        return _raw_ip
    raise PcapError(f"{path}: link type {link_type} is not supported (Ethernet, Linux "
                    "cooked, raw IP and loopback captures are)")


def _raw_ip(buf: bytes) -> Any:
    return dpkt.ip6.IP6(buf) if buf[:1] and buf[0] >> 4 == 6 else dpkt.ip.IP(buf)


def _segment(summary: PcapSummary, decode_link: Any, index: int, t_us: int,
             buf: bytes) -> TcpSegment | None:
    try:
        ip = decode_link(buf)
        while not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) and hasattr(ip, "data") \
                and isinstance(ip.data, dpkt.Packet):
            ip = ip.data  # Ethernet, VLAN tags, SLL ... down to the IP packet
        if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) or not isinstance(ip.data,
                                                                           dpkt.tcp.TCP):
            summary.not_tcp += 1
            return None
        tcp = ip.data
        return TcpSegment(index, t_us, _address(ip.src), tcp.sport, _address(ip.dst), tcp.dport,
                          tcp.seq, bool(tcp.flags & _SYN), bool(tcp.flags & _FIN),
                          bool(tcp.flags & _RST), bytes(tcp.data))
    except (dpkt.UnpackError, ValueError, IndexError):
        summary.undecodable += 1
        return None


def _address(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))
