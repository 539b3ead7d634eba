"""Frames found in a byte stream, by table: every case fed whole, split at every point
(two pieces) and byte by byte must give the same frames and faults."""

from __future__ import annotations

import pytest
from edge_agent_drivers.serialtext.protocol.checksums import (
    ByteOrder,
    ChecksumEncoding,
    ChecksumKind,
)
from edge_agent_drivers.serialtext.protocol.framing import Deframer, Frame, FrameFault, encode_frame
from edge_agent_drivers.serialtext.protocol.settings import Checksum, Covers, Framing, FramingKind
from support.rawrtu import crc16_modbus  # written out independently of checksums.py

ANY_LINE = Framing()
CRLF = Framing(terminator=b"\r\n")
NMEA = Framing(start=b"$", terminator=b"\r\n")
XOR_STAR = Checksum(ChecksumKind.XOR8, separator=b"*")
STX_ETX = Framing(FramingKind.STX_ETX, b"\x02", b"\x03")
SUM_BODY_END = Checksum(ChecksumKind.SUM8, covers=Covers.BODY_END)
CRC_RAW = Checksum(ChecksumKind.CRC16_MODBUS, ChecksumEncoding.RAW, ByteOrder.LITTLE)
GGA = b"GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,"


def stx_sum(body: bytes, delta: int = 0) -> bytes:
    return b"\x02" + body + b"\x03" + b"%02X" % ((sum(body) + 3 + delta) & 0xFF)


def crc_with_stx() -> bytes:
    """A body whose raw CRC contains the STX byte 0x02."""
    body = next(b for n in range(1000) if 0x02 in crc16_modbus(b := b"D %04d" % n))
    return body


TRICKY = crc_with_stx()

# (id, framing, checksum, stream, expected: bodies as bytes, faults as reason strings)
CASES = [
    ("any-line-end", ANY_LINE, None, b"12.3,4.5\r\n6.7,8.9\r\n\n", [b"12.3,4.5", b"6.7,8.9"]),
    ("lf-only", ANY_LINE, None, b"a\nb\n", [b"a", b"b"]),
    ("crlf-keeps-lone-cr", CRLF, None, b"a\rb\r\nc\r\n", [b"a\rb", b"c"]),
    ("partial-line-waits", CRLF, None, b"done\r\nhalf a li", [b"done"]),
    ("nmea-xor", NMEA, XOR_STAR, b"$" + GGA + b"*76\r\n", [GGA]),
    ("nmea-lower-hex", NMEA, XOR_STAR, b"$" + GGA + b"*76\r\n$AB*03\r\n", [GGA, b"AB"]),
    ("noise-before-start", NMEA, XOR_STAR, b"\x00\xffjunk$AB*03\r\n", [b"AB"]),
    ("line-without-start-skipped", NMEA, XOR_STAR, b"BOOT OK\r\n$AB*03\r\n", [b"AB"]),
    ("bad-checksum", NMEA, XOR_STAR, b"$AB*04\r\n$AB*03\r\n", ["bad_checksum", b"AB"]),
    ("checksum-not-hex", NMEA, XOR_STAR, b"$AB*0G\r\n", ["bad_checksum"]),
    ("checksum-missing", NMEA, XOR_STAR, b"$AB\r\n", ["bad_frame"]),
    ("reset-mid-line", NMEA, XOR_STAR, b"$H2S,0.0$AB*03\r\n", ["bad_frame", b"AB"]),
    ("stx-etx-plain", STX_ETX, None, b"\x02A\x03\r\n\x02B\x03", [b"A", b"B"]),
    ("stx-etx-sum", STX_ETX, SUM_BODY_END, stx_sum(b"MD,1") + b"\r\n" + stx_sum(b"MD,2"),
     [b"MD,1", b"MD,2"]),
    ("stx-etx-bad-sum", STX_ETX, SUM_BODY_END, stx_sum(b"MD,1", 1) + stx_sum(b"MD,2"),
     ["bad_checksum", b"MD,2"]),
    ("stx-etx-reset", STX_ETX, SUM_BODY_END, b"\x02MD,1,2" + stx_sum(b"MD,3"),
     ["bad_frame", b"MD,3"]),
    ("stx-etx-waits-for-checksum", STX_ETX, SUM_BODY_END, stx_sum(b"X")[:-1], []),
    ("raw-crc-holding-stx", STX_ETX, CRC_RAW,
     b"\x02" + TRICKY + b"\x03" + crc16_modbus(TRICKY) + b"\x02B\x03" + crc16_modbus(b"B"),
     [TRICKY, b"B"]),
    ("garbage-only", STX_ETX, None, b"no frame here \x03\x03", []),
]


def feed_all(deframer: Deframer, pieces: list[bytes]) -> list[object]:
    found: list[object] = []
    for piece in pieces:
        for event in deframer.feed(piece):
            found.append(event.body if isinstance(event, Frame) else event.reason)
    return found


def splits(stream: bytes) -> list[tuple[str, list[bytes]]]:
    ways = [("whole", [stream]), ("byte-by-byte", [stream[i:i + 1] for i in range(len(stream))])]
    ways += [(f"split-at-{i}", [stream[:i], stream[i:]]) for i in range(1, len(stream))]
    return ways


@pytest.mark.parametrize(("framing", "checksum", "stream", "expected"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_frames_are_the_same_however_the_stream_is_split(framing, checksum, stream, expected):
    for how, pieces in splits(stream):
        assert feed_all(Deframer(framing, checksum), pieces) == expected, how


@pytest.mark.parametrize("framing", [CRLF, ANY_LINE, STX_ETX], ids=["crlf", "any", "stx-etx"])
def test_overlong_garbage_is_one_bad_frame_and_the_next_record_still_counts(framing):
    small = Framing(framing.kind, framing.start, framing.end, framing.terminator, max_bytes=16)
    good = encode_frame(b"GOOD", small, None)
    stream = b"x" * 40 + b"\r\n" + good if framing is not STX_ETX \
        else b"\x02" + b"x" * 40 + b"\x03" + good
    for how, pieces in splits(stream):
        deframer = Deframer(small)
        assert feed_all(deframer, pieces) == ["bad_frame", b"GOOD"], how
        assert len(deframer._buffer) <= 16


def test_overflow_keeps_the_first_half_of_a_two_byte_start_marker():
    """Found by fuzzing: an unfinished frame outgrowing max_bytes was dropped with the
    '<' that began the next '<<' start, so the next record was lost when the stream
    happened to be split right after that '<'."""
    small = Framing(FramingKind.STX_ETX, b"<<", b">>", b"", max_bytes=16)
    stream = b"<<" + b"x" * 40 + b"<<GOOD>>"
    for how, pieces in splits(stream):
        assert feed_all(Deframer(small), pieces) == ["bad_frame", b"GOOD"], how


class CopyCountingBytes(bytes):
    """Bytes that count how many bytes their slices copy (slices stay counting)."""

    copied = 0

    def __add__(self, other: bytes) -> CopyCountingBytes:
        return CopyCountingBytes(bytes(self) + other)

    def __getitem__(self, key):
        if not isinstance(key, slice):
            return bytes.__getitem__(self, key)
        piece = CopyCountingBytes(bytes.__getitem__(self, key))
        CopyCountingBytes.copied += len(piece)
        return piece


@pytest.mark.parametrize(("framing", "record"), [(ANY_LINE, b"1.0\r"), (CRLF, b"1.0\r\n"),
                                                 (STX_ETX, b"\x021.0\x03")],
                         ids=["any", "crlf", "stx-etx"])
def test_a_burst_of_short_records_is_deframed_in_linear_work(framing, record):
    """A flood's burst (5000 records in one read) costs copies in proportion to its
    size: the buffer is cut once per feed, not once per record (which copied the rest
    of the burst for every record, quadratic)."""
    CopyCountingBytes.copied = 0
    deframer = Deframer(framing)
    deframer._buffer = CopyCountingBytes(record * 5000)
    assert len(deframer.feed(b"")) == 5000
    assert CopyCountingBytes.copied <= 3 * len(record) * 5000


def test_endless_garbage_keeps_the_buffer_bounded():
    deframer = Deframer(Framing(max_bytes=64))
    faults = sum(len(deframer.feed(b"z" * 1000)) for _ in range(100))
    assert faults == 1  # one fault for the whole overlong run, not one per chunk
    assert len(deframer._buffer) <= 64
    assert feed_all(deframer, [b"\rOK\r"]) == [b"OK"]


def test_reset_drops_an_unfinished_frame_before_a_new_request():
    deframer = Deframer(STX_ETX)
    assert deframer.feed(b"\x02late answ") == []
    assert deframer.reset() == 10
    assert feed_all(deframer, [b"er\x03\x02NEW\x03"]) == [b"NEW"]


def test_fault_details_show_the_bytes_received():
    fault = Deframer(STX_ETX, SUM_BODY_END).feed(stx_sum(b"MD,1", 1))[0]
    assert isinstance(fault, FrameFault)
    assert "checksum" in fault.detail and "<ETX>" in fault.detail


@pytest.mark.parametrize(("framing", "checksum", "body", "wire"), [
    (STX_ETX, SUM_BODY_END, b"DA01", b"\x02DA01\x03E9"),  # 0x44+0x41+0x30+0x31+0x03
    (STX_ETX, CRC_RAW, b"RD", b"\x02RD\x03" + crc16_modbus(b"RD")),
    (NMEA, XOR_STAR, b"AB", b"$AB*03\r\n"),
    (ANY_LINE, None, b"RD", b"RD\r"),
], ids=["stx-sum", "stx-crc-raw", "nmea", "line-any-ends-with-cr"])
def test_encode_frame_writes_what_the_deframer_reads(framing, checksum, body, wire):
    assert encode_frame(body, framing, checksum) == wire
    assert feed_all(Deframer(framing, checksum), [wire]) == [body]
