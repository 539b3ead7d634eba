"""pcap and pcapng files built byte by byte with struct, carrying real Modbus TCP exchanges.

Independent of the code under test (no edge_agent imports, no scapy): the formats as
their specifications write them (libpcap's file format; pcapng, IETF draft), so that a
test can cut or damage a file at a byte it knows and name the packet and offset the
importer must report.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

ETHERNET, RAW, RAW_IPV4, RAW_IPV6, SLL, SLL2, NULL, LOOP = 1, 101, 228, 229, 113, 276, 0, 108
WIFI = 105  # IEEE 802.11: no IP as the importer reads it
T0_US = 1_700_000_000_000_000


@dataclass(frozen=True)
class Packet:
    """One captured frame: link-layer bytes, capture time, pcapng interface id."""

    t_us: int
    frame: bytes
    interface: int = 0
    original_length: int | None = None


def read_holding(tid: int, unit: int, address: int, count: int) -> bytes:
    """A Modbus TCP request: read ``count`` holding registers from ``address``."""
    return struct.pack(">HHHBBHH", tid, 0, 6, unit, 3, address, count)


def holding_answer(tid: int, unit: int, values: list[int]) -> bytes:
    """The device's answer to ``read_holding``: byte count then the register values."""
    pdu = struct.pack(">BB", 3, 2 * len(values)) + struct.pack(f">{len(values)}H", *values)
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip_tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
           payload: bytes) -> bytes:
    """An IPv4 or IPv6 packet (by the addresses) holding one TCP segment, checksums right."""
    source, target = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    tcp = bytearray(struct.pack(">HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535,
                                0, 0) + payload)
    if source.version == 4:
        pseudo = source.packed + target.packed + struct.pack(">BBH", 0, 6, len(tcp))
    else:
        pseudo = source.packed + target.packed + struct.pack(">IxxxB", len(tcp), 6)
    struct.pack_into(">H", tcp, 16, _checksum(pseudo + bytes(tcp)))
    if source.version == 6:
        return struct.pack(">IHBB", 6 << 28, len(tcp), 6, 64) + source.packed \
            + target.packed + bytes(tcp)
    header = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6,
                                   0, source.packed, target.packed))
    struct.pack_into(">H", header, 10, _checksum(bytes(header)))
    return bytes(header) + bytes(tcp)


def framed(link_type: int, packet: bytes) -> bytes:
    """``packet`` (IPv4 or IPv6) behind the link-layer header of ``link_type``."""
    v6 = packet[0] >> 4 == 6
    ethertype = 0x86DD if v6 else 0x0800
    if link_type == ETHERNET:
        return bytes.fromhex("020000000002020000000001") + struct.pack(">H", ethertype) \
            + packet
    if link_type in (RAW, RAW_IPV4, RAW_IPV6):
        return packet
    if link_type == SLL:  # packet type, ARPHRD, address length, address (8), protocol
        return struct.pack(">HHH8sH", 0, 1, 6, b"\2\0\0\0\0\1", ethertype) + packet
    if link_type == SLL2:  # protocol, reserved, ifindex, ARPHRD, type, length, address
        return struct.pack(">HHIHBB8s", ethertype, 0, 2, 1, 0, 6, b"\2\0\0\0\0\1") + packet
    if link_type == NULL:  # AF_INET 2 / AF_INET6 30 (macOS), host byte order (here little)
        return struct.pack("<I", 30 if v6 else 2) + packet
    if link_type == LOOP:  # network byte order; AF_INET6 24 (OpenBSD)
        return struct.pack(">I", 24 if v6 else 2) + packet
    raise ValueError(f"no framing for link type {link_type}")


@dataclass(frozen=True)
class Session:
    """A master polling one Modbus server: the handshake, then ``exchanges`` requests each
    answered, 100 ms apart. Requests 12 bytes, answers 13 (two registers)."""

    master: str
    server: str
    exchanges: int
    unit: int = 1
    sport: int = 40001
    first_t_us: int = T0_US

    def packets(self, link_type: int, interface: int = 0) -> list[Packet]:
        m, s, t = 1000, 5000, self.first_t_us
        out = [self._to_server(link_type, interface, t, m, 0, 0x02, b""),
               self._to_master(link_type, interface, t + 1000, s, m + 1, 0x12, b"")]
        m, s = m + 1, s + 1
        for i in range(self.exchanges):
            t = self.first_t_us + 100_000 * (i + 1)
            request = read_holding(i + 1, self.unit, 7000 + 2 * i, 2)
            answer = holding_answer(i + 1, self.unit, [i, 1000 + i])
            out.append(self._to_server(link_type, interface, t, m, s, 0x18, request))
            out.append(self._to_master(link_type, interface, t + 5000, s, m + 12, 0x18,
                                       answer))
            m, s = m + len(request), s + len(answer)
        return out

    def _to_server(self, link_type: int, interface: int, t: int, seq: int, ack: int,
                   flags: int, payload: bytes) -> Packet:
        return Packet(t, framed(link_type, ip_tcp(self.master, self.server, self.sport, 502,
                                                  seq, ack, flags, payload)), interface)

    def _to_master(self, link_type: int, interface: int, t: int, seq: int, ack: int,
                   flags: int, payload: bytes) -> Packet:
        return Packet(t, framed(link_type, ip_tcp(self.server, self.master, 502, self.sport,
                                                  seq, ack, flags, payload)), interface)


def pcap_bytes(link_type: int, packets: list[Packet], nanoseconds: bool = False,
               big_endian: bool = False) -> bytes:
    """A classic libpcap file."""
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 262144, link_type)]
    for p in packets:
        seconds, us = divmod(p.t_us, 1_000_000)
        original = len(p.frame) if p.original_length is None else p.original_length
        out.append(struct.pack(e + "IIII", seconds, us * 1000 if nanoseconds else us,
                               len(p.frame), original) + p.frame)
    return b"".join(out)


def pcap_offsets(packets: list[Packet]) -> list[int]:
    """Where each packet's record starts in ``pcap_bytes``."""
    offsets, at = [], 24
    for p in packets:
        offsets.append(at)
        at += 16 + len(p.frame)
    return offsets


def _block(kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def pcapng_bytes(interfaces: list[tuple[int, str]], packets: list[Packet],
                 nanosecond_interfaces: tuple[int, ...] = ()) -> bytes:
    """A pcapng file: one section, an interface description per (link type, name), an
    enhanced packet block per packet (time in microseconds, or nanoseconds for the
    interfaces listed)."""
    out = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for number, (link_type, name) in enumerate(interfaces):
        options = _option(2, name.encode())
        if number in nanosecond_interfaces:
            options += _option(9, b"\x09")
        out.append(_block(1, struct.pack("<HHI", link_type, 0, 262144) + options
                          + struct.pack("<I", 0)))
    for p in packets:
        ticks = p.t_us * 1000 if p.interface in nanosecond_interfaces else p.t_us
        original = len(p.frame) if p.original_length is None else p.original_length
        out.append(_block(6, struct.pack("<IIIII", p.interface, ticks >> 32,
                                         ticks & 0xFFFFFFFF, len(p.frame), original)
                          + p.frame))
    return b"".join(out)


def pcapng_offsets(data: bytes) -> list[int]:
    """Where each enhanced packet block starts in a (little-endian) pcapng file."""
    offsets, at = [], 0
    while at < len(data):
        kind, length = struct.unpack_from("<II", data, at)
        if kind == 6:
            offsets.append(at)
        at += length
    return offsets
