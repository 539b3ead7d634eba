"""Checksums of text-protocol frames: what is computed, and how it is written on the wire.

Each algorithm is a pure function of the covered bytes. The CRC-16 variants are the
CRC catalogue's (reveng.sourceforge.io/crc-catalogue); their published check values over
``b"123456789"`` are in the tests:

=================  ======  =======  ==========  =========
name               poly    init     reflected   check
=================  ======  =======  ==========  =========
crc16-modbus       0x8005  0xFFFF   yes         0x4B37
crc16-ccitt-false  0x1021  0xFFFF   no          0x29B1
crc16-xmodem       0x1021  0x0000   no          0x31C3
crc16-kermit       0x1021  0x0000   yes         0x2189
=================  ======  =======  ==========  =========

``sum8`` is the byte sum mod 256 (check 0xDD), ``xor8`` the XOR of all bytes (NMEA's
checksum; check 0x31), ``lrc8`` the two's complement of the byte sum (Modbus ASCII's
LRC; check 0x23).

On the wire a checksum is ASCII hex digits (``hex``: 2 or 4 characters, either case
accepted when reading, upper case when writing) or the binary bytes (``raw``). 16-bit
values are written high byte first (``big``) or low byte first (``little``; Modbus RTU
sends its CRC that way).
"""

from __future__ import annotations

import re
from enum import StrEnum

_HEX = re.compile(rb"[0-9A-Fa-f]+")


class ChecksumKind(StrEnum):
    SUM8 = "sum8"
    XOR8 = "xor8"
    LRC8 = "lrc8"
    CRC16_MODBUS = "crc16-modbus"
    CRC16_CCITT_FALSE = "crc16-ccitt-false"
    CRC16_XMODEM = "crc16-xmodem"
    CRC16_KERMIT = "crc16-kermit"

    @property
    def width_bytes(self) -> int:
        """1 for the 8-bit sums, 2 for the CRC-16s."""
        return 2 if self.value.startswith("crc16") else 1


class ChecksumEncoding(StrEnum):
    HEX = "hex"
    RAW = "raw"


class ByteOrder(StrEnum):
    BIG = "big"
    LITTLE = "little"


# (polynomial as used by the loop, initial value, reflected)
_CRC16 = {
    ChecksumKind.CRC16_MODBUS: (0xA001, 0xFFFF, True),
    ChecksumKind.CRC16_CCITT_FALSE: (0x1021, 0xFFFF, False),
    ChecksumKind.CRC16_XMODEM: (0x1021, 0x0000, False),
    ChecksumKind.CRC16_KERMIT: (0x8408, 0x0000, True),
}


def compute(kind: ChecksumKind, data: bytes) -> int:
    """The checksum of ``data`` (0..255 for the 8-bit kinds, 0..65535 for CRC-16)."""
    if kind is ChecksumKind.SUM8:
        return sum(data) & 0xFF
    if kind is ChecksumKind.LRC8:
        return -sum(data) & 0xFF
    if kind is ChecksumKind.XOR8:
        value = 0
        for byte in data:
            value ^= byte
        return value
    poly, crc, reflected = _CRC16[kind]
    return _crc16_reflected(data, poly, crc) if reflected else _crc16(data, poly, crc)


def _crc16_reflected(data: bytes, poly: int, crc: int) -> int:
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
    return crc


def _crc16(data: bytes, poly: int, crc: int) -> int:
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ poly if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def encoded_length(kind: ChecksumKind, encoding: ChecksumEncoding) -> int:
    """Bytes the checksum takes in a frame."""
    return kind.width_bytes * (2 if encoding is ChecksumEncoding.HEX else 1)


def encode(value: int, kind: ChecksumKind, encoding: ChecksumEncoding,
           order: ByteOrder) -> bytes:
    """The checksum as it appears in a frame."""
    raw = value.to_bytes(kind.width_bytes, order.value)
    return raw.hex().upper().encode("ascii") if encoding is ChecksumEncoding.HEX else raw


def decode(written: bytes, kind: ChecksumKind, encoding: ChecksumEncoding,
           order: ByteOrder) -> int | None:
    """The value a frame's checksum bytes stand for; None when they are not hex digits
    (a garbled frame, reported as a bad checksum by the caller)."""
    if encoding is ChecksumEncoding.HEX:
        if not _HEX.fullmatch(written) or len(written) != 2 * kind.width_bytes:
            return None
        raw = bytes.fromhex(written.decode("ascii"))
    else:
        raw = written
    return int.from_bytes(raw, order.value)
