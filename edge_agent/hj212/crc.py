"""CRC16 of an HJ 212 packet, and the variants real devices send instead.

HJ 212-2017 and 2025 Appendix A: init 0xFFFF, per byte ``crc = (crc >> 8) ^ byte``, then
eight shifts with 0xA001, printed as four hex digits, high byte first. It is *not* the
Modbus CRC (which does ``crc ^= byte``), but some devices send the Modbus one, printed
either way round (/work/shared/hj212/README.md B.13). The parser recognises those and
reports them by name, so a station engineer learns which variant a platform or device
uses instead of seeing a bare mismatch; and the agent sends a variant only to a platform
whose ``crc:`` setting asks for it (docs/hj212.md, "CRC variants").
"""

from __future__ import annotations

from enum import StrEnum


class CrcVariant(StrEnum):
    """Which CRC a packet carries. Only ``HJ212`` is what the standards define."""

    HJ212 = "hj212"  # Appendix A, high byte first
    MODBUS_HIGH_FIRST = "modbus-high-first"  # Modbus CRC-16 printed high byte first
    MODBUS_LOW_FIRST = "modbus-low-first"  # Modbus CRC-16 printed low byte first


def _eight_shifts(value: int) -> int:
    for _ in range(8):
        lsb = value & 1
        value >>= 1
        if lsb:
            value ^= 0xA001
    return value


# Both CRCs shift eight times with 0xA001 per byte; tabulating those shifts makes them
# about eight times faster (tests compare with the Appendix A loop written out).
_SHIFTED = tuple(_eight_shifts(value) for value in range(256))


def hj212_crc16(data: bytes) -> int:
    """The Appendix A CRC of ``data`` (the UTF-8 bytes of the data segment): init 0xFFFF,
    per byte ``crc = (crc >> 8) ^ byte`` then eight shifts with 0xA001. The value shifted
    is below 256, so the eight shifts are one table lookup."""
    crc = 0xFFFF
    for byte in data:
        crc = _SHIFTED[(crc >> 8) ^ byte]
    return crc


def modbus_crc16(data: bytes) -> int:
    """The Modbus RTU CRC-16 of ``data`` (as a number; on a Modbus wire it goes low first)."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _SHIFTED[(crc ^ byte) & 0xFF]
    return crc


def crc_text(data: bytes, variant: CrcVariant = CrcVariant.HJ212) -> str:
    """The four uppercase hex digits the agent sends after the data segment: Appendix A's
    CRC unless a platform's ``crc:`` setting names a variant it insists on."""
    if variant == CrcVariant.HJ212:
        return f"{hj212_crc16(data):04X}"
    modbus = modbus_crc16(data)
    if variant == CrcVariant.MODBUS_LOW_FIRST:
        modbus = (modbus & 0xFF) << 8 | modbus >> 8
    return f"{modbus:04X}"


def crc_variant_of(data: bytes, given: str) -> CrcVariant | None:
    """Which variant's CRC of ``data`` equals the four hex digits ``given`` (either case);
    None when none does."""
    if len(given) != 4 or any(char not in "0123456789abcdefABCDEF" for char in given):
        return None  # int(..., 16) would also take "+1AB", " 1AB" and "1_AB"
    value = int(given, 16)
    if hj212_crc16(data) == value:
        return CrcVariant.HJ212
    modbus = modbus_crc16(data)
    if modbus == value:
        return CrcVariant.MODBUS_HIGH_FIRST
    if ((modbus & 0xFF) << 8 | modbus >> 8) == value:
        return CrcVariant.MODBUS_LOW_FIRST
    return None
