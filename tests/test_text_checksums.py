"""Checksums against the CRC catalogue's published check values, their wire encodings,
and how a station file writes control bytes (tables, no I/O)."""

from __future__ import annotations

import pytest
from edge_agent_drivers.serialtext.protocol.checksums import (
    ByteOrder,
    ChecksumEncoding,
    ChecksumKind,
    compute,
    decode,
    encode,
    encoded_length,
)
from edge_agent_drivers.serialtext.protocol.escapes import EscapeError, show, to_bytes

CHECK = b"123456789"


@pytest.mark.parametrize(("kind", "expected"), [
    (ChecksumKind.SUM8, 0xDD),  # 477 mod 256
    (ChecksumKind.XOR8, 0x31),
    (ChecksumKind.LRC8, 0x23),  # two's complement of 0xDD
    (ChecksumKind.CRC16_MODBUS, 0x4B37),  # catalogue: CRC-16/MODBUS
    (ChecksumKind.CRC16_CCITT_FALSE, 0x29B1),  # catalogue: CRC-16/IBM-3740
    (ChecksumKind.CRC16_XMODEM, 0x31C3),  # catalogue: CRC-16/XMODEM
    (ChecksumKind.CRC16_KERMIT, 0x2189),  # catalogue: CRC-16/KERMIT
], ids=str)
def test_checksum_matches_the_catalogue_check_value(kind, expected):
    assert compute(kind, CHECK) == expected


@pytest.mark.parametrize(("frame", "kind", "expected"), [
    # A Modbus RTU read request: its CRC is 0x0A84, sent 84 0A (low byte first).
    (bytes.fromhex("010300000001"), ChecksumKind.CRC16_MODBUS, 0x0A84),
    # A published NMEA GGA sentence, '$GPGGA,...*76': XOR of the bytes between $ and *
    (b"GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,", ChecksumKind.XOR8,
     0x76),
    # Modbus ASCII LRC of 01 03 00 00 00 01 is 0xFB.
    (bytes.fromhex("010300000001"), ChecksumKind.LRC8, 0xFB),
    (b"", ChecksumKind.CRC16_CCITT_FALSE, 0xFFFF),
    (b"", ChecksumKind.SUM8, 0x00),
], ids=["modbus-rtu-request", "nmea-gga", "modbus-ascii-lrc", "ccitt-empty", "sum-empty"])
def test_checksum_of_real_world_frames(frame, kind, expected):
    assert compute(kind, frame) == expected


@pytest.mark.parametrize(("value", "kind", "encoding", "order", "wire"), [
    (0x4B37, ChecksumKind.CRC16_MODBUS, ChecksumEncoding.HEX, ByteOrder.BIG, b"4B37"),
    (0x4B37, ChecksumKind.CRC16_MODBUS, ChecksumEncoding.HEX, ByteOrder.LITTLE, b"374B"),
    (0x4B37, ChecksumKind.CRC16_MODBUS, ChecksumEncoding.RAW, ByteOrder.BIG, b"\x4b\x37"),
    (0x4B37, ChecksumKind.CRC16_MODBUS, ChecksumEncoding.RAW, ByteOrder.LITTLE, b"\x37\x4b"),
    (0x0A, ChecksumKind.SUM8, ChecksumEncoding.HEX, ByteOrder.BIG, b"0A"),
    (0x0A, ChecksumKind.XOR8, ChecksumEncoding.RAW, ByteOrder.BIG, b"\x0a"),
], ids=["hex-big", "hex-little", "raw-big", "raw-little", "hex-8bit", "raw-8bit"])
def test_checksum_encoding_round_trips(value, kind, encoding, order, wire):
    assert encode(value, kind, encoding, order) == wire
    assert len(wire) == encoded_length(kind, encoding)
    assert decode(wire, kind, encoding, order) == value


@pytest.mark.parametrize("written", [b"4b37", b"4B37"])
def test_hex_checksum_is_read_in_either_case(written):
    assert decode(written, ChecksumKind.CRC16_XMODEM, ChecksumEncoding.HEX, ByteOrder.BIG) \
        == 0x4B37


@pytest.mark.parametrize("written", [b"4G", b" A", b"A ", b"+1", b"\xff\x00", b"A"])
def test_garbled_hex_checksum_is_no_value_not_an_exception(written):
    assert decode(written, ChecksumKind.SUM8, ChecksumEncoding.HEX, ByteOrder.BIG) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("<STX>DA<ETX>", b"\x02DA\x03"),
    ("<stx>DA<etx>", b"\x02DA\x03"),
    ("RD<CR><LF>", b"RD\r\n"),
    ("RD\\r\\n", b"RD\r\n"),
    ("RD\r", b"RD\r"),  # YAML double quotes already made the CR
    ("\\x02DATA?\\x03", b"\x02DATA?\x03"),
    ("a\\\\b", b"a\\b"),
    ("<5 ppm>", b"<5 ppm>"),  # not a control name: kept
    ("<ACK><NAK><DC1><DEL>", b"\x06\x15\x11\x7f"),
    ("caf\u00e9", b"caf\xe9"),
], ids=["names", "names-lower", "cr-lf-names", "backslash", "yaml-escape", "hex", "backslash2",
        "not-a-name", "more-names", "latin1"])
def test_text_becomes_the_bytes_the_manual_means(text, expected):
    assert to_bytes(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("RD\\q", "unknown escape \\q"),
    ("RD\\", "unknown escape \\ at the end"),
    ("\\x4", "\\x needs two hex digits"),
    ("\u00b5\u4e2d", "is not a single byte"),
], ids=["unknown", "trailing", "short-hex", "wide"])
def test_text_that_cannot_be_bytes_says_why(text, message):
    with pytest.raises(EscapeError, match=message.replace("\\", "\\\\")):
        to_bytes(text)


def test_bytes_are_shown_as_a_technician_writes_them():
    assert show(b"\x02MD,1\x03\x39\x41\r\n\xff") == "<STX>MD,1<ETX>9A<CR><LF>\\xFF"
    assert show(b"x" * 10, limit=4) == "xxxx..."
