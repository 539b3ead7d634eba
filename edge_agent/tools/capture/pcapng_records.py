"""Packet records of a pcapng file, read by us: every interface keeps its own link type.

A pcapng file describes each capture interface in its own block (IDB), and every packet
names its interface, so one file can hold an Ethernet interface and a raw-IP one; dpkt's
reader applies the first interface's link type to all of them. Here each packet carries
its ``Interface`` (link type, name, time resolution) and damage is reported as in
``pcap_records.py``: a block's two length fields must agree, a packet's captured length
must fit its block, and after damage reading resumes at the next whole block.

Blocks read: section header (either byte order, several sections), interface
description, enhanced, simple and (obsolete) packet blocks. Name resolution, statistics,
decryption secrets and custom blocks carry no packets and are stepped over.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from edge_agent.tools.capture.pcap_records import (
    Damage,
    Interface,
    PacketRecord,
    resync,
    ticks_to_us,
)

SECTION_HEADER = 0x0A0D0D0A
_BYTE_ORDER = 0x1A2B3C4D
_IDB, _PB, _SPB, _EPB = 1, 2, 3, 6
_KNOWN = {SECTION_HEADER, _IDB, _PB, _SPB, 4, 5, _EPB, 7, 8, 9, 0x0A, 0xBAD, 0x40000BAD}
_OPT_NAME, _OPT_TSRESOL, _OPT_TSOFFSET = 2, 9, 14
_MAX_BLOCK = 16 * 1024 * 1024
_SMALLEST = {SECTION_HEADER: 28, _IDB: 20, _PB: 32, _SPB: 16, _EPB: 32}


@dataclass(frozen=True)
class _Clock:
    per_second: int
    offset_s: int


class Pcapng:
    """The records of a pcapng file."""

    def __init__(self, data: bytes) -> None:
        """``data`` is the whole file, starting with a section header block."""
        self._data = data
        self._endian = "<"
        self._section = -1
        self._current: list[tuple[Interface, _Clock, int]] = []
        self.interfaces: list[Interface] = []
        self._last_t_us = 0

    def records(self, damage: list[Damage]) -> Iterator[PacketRecord]:
        """Every whole packet in file order; whatever is not one goes to ``damage``."""
        data, size, pos, number = self._data, len(self._data), 0, 0
        while pos < size:
            if size - pos < 12:
                damage.append(Damage(pos, None, f"the file ends {size - pos} bytes into the "
                                     f"block at byte {pos}", True))
                return
            kind, length, endian = self._block_header(pos)
            packet = kind in (_EPB, _PB, _SPB)
            number += packet
            which = f"packet {number} at byte {pos}" if packet else f"block at byte {pos}"
            problem = self._problem(pos, kind, length, endian)
            if problem is not None:
                found = resync(data, pos + 4, self._fits,
                               zero_at=7 if self._endian == "<" else 4)
                if found is None and pos + length > size and _plausible(length):
                    damage.append(Damage(pos, number if packet else None, f"{which}: the file "
                                         f"ends after {size - pos} of its {length} bytes",
                                         True))
                    return
                damage.append(Damage(pos, number if packet else None, f"{which}: {problem}"
                                     + (f"; reading resumed at the next whole block (byte "
                                        f"{found})" if found is not None else
                                        "; no whole block follows"), False))
                if found is None:
                    return
                pos = found
                continue
            body = bytes(data[pos + 8:pos + length - 4])
            if kind == SECTION_HEADER:
                self._endian = endian
                self._section += 1
                self._current = []
            elif kind == _IDB:
                self._interface(body)
            elif packet:
                record = self._packet(kind, body, number, pos, damage)
                if record is not None:
                    yield record
            pos += length

    def _block_header(self, pos: int) -> tuple[int, int, str]:
        """Type, total length and byte order of the block at ``pos`` (a section header
        says its own byte order; every other block has its section's)."""
        endian = self._endian
        if struct.unpack_from("<I", self._data, pos)[0] == SECTION_HEADER \
                and len(self._data) - pos >= 12:
            magic = bytes(self._data[pos + 8:pos + 12])
            endian = "<" if magic == struct.pack("<I", _BYTE_ORDER) else ">"
        kind, length = struct.unpack_from(endian + "II", self._data, pos)
        return kind, length, endian

    def _problem(self, pos: int, kind: int, length: int, endian: str) -> str | None:
        """What makes the block at ``pos`` not whole, or None."""
        size = len(self._data)
        if not _plausible(length) or length < _SMALLEST.get(kind, 12):
            return f"its length field ({length}) cannot be a block's (damaged)"
        if pos + length > size:
            return f"its length ({length}) runs past the end of the file"
        trailer = struct.unpack_from(endian + "I", self._data, pos + length - 4)[0]
        if trailer != length:
            return (f"its two length fields disagree ({length} and {trailer}): bytes are "
                    "missing or damaged")
        if kind in (_EPB, _PB):
            captured = struct.unpack_from(endian + "I", self._data, pos + 20)[0]
            if captured > length - 32:
                return (f"its captured length ({captured}) is more than the block holds "
                        f"({length - 32}): damaged")
        return None

    def _fits(self, pos: int) -> bool:
        """A whole block of a known kind starts at ``pos`` (for resuming after damage)."""
        if pos + 12 > len(self._data):
            return False
        kind, length, endian = self._block_header(pos)
        return kind in _KNOWN and self._problem(pos, kind, length, endian) is None

    def _interface(self, body: bytes) -> None:
        link, _reserved, _snaplen = struct.unpack_from(self._endian + "HHI", body, 0)
        name, per_second, offset_s = None, 1_000_000, 0
        for code, value in _options(body[8:], self._endian):
            if code == _OPT_NAME:
                name = value.rstrip(b"\0").decode("utf-8", "replace")
            elif code == _OPT_TSRESOL and value:
                exponent = value[0] & 0x7F
                per_second = 2 ** exponent if value[0] & 0x80 else 10 ** exponent
            elif code == _OPT_TSOFFSET and len(value) >= 8:
                offset_s = struct.unpack_from(self._endian + "q", value)[0]
        interface = Interface(len(self._current), link, name, self._section)
        self._current.append((interface, _Clock(per_second, offset_s), _snaplen))
        self.interfaces.append(interface)

    def _packet(self, kind: int, body: bytes, number: int, pos: int,
                damage: list[Damage]) -> PacketRecord | None:
        e = self._endian
        if kind == _SPB:
            ident, ticks_hi, ticks_lo = 0, 0, 0
            original = struct.unpack_from(e + "I", body)[0]
            snaplen = self._current[0][2] if self._current else 0
            captured = min(original, len(body) - 4, snaplen or original)
            start = 4
        elif kind == _PB:
            ident, _drops, ticks_hi, ticks_lo, captured, original = struct.unpack_from(
                e + "HHIIII", body)
            start = 20
        else:
            ident, ticks_hi, ticks_lo, captured, original = struct.unpack_from(e + "IIIII",
                                                                               body)
            start = 20
        if ident >= len(self._current):
            damage.append(Damage(pos, number, f"packet {number} at byte {pos}: it names "
                                 f"interface {ident}, which the file does not describe "
                                 "before it; skipped", False))
            return None
        interface, clock, _snaplen = self._current[ident]
        t_us = ticks_to_us((ticks_hi << 32) | ticks_lo, clock.per_second) \
            + clock.offset_s * 1_000_000
        if kind == _SPB:
            t_us = self._last_t_us  # simple packet blocks carry no time: the one before
        self._last_t_us = t_us
        return PacketRecord(number, pos, interface, t_us, body[start:start + captured],
                            original)


def _plausible(length: int) -> bool:
    return 12 <= length <= _MAX_BLOCK and length % 4 == 0


def _options(raw: bytes, endian: str) -> Iterator[tuple[int, bytes]]:
    """(code, value) of each option, up to the end-of-options mark or the bytes' end."""
    pos = 0
    while pos + 4 <= len(raw):
        code, length = struct.unpack_from(endian + "HH", raw, pos)
        if code == 0:
            return
        yield code, raw[pos + 4:pos + 4 + length]
        pos += 4 + (length + 3) // 4 * 4
