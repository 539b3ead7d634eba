"""The capture tool's own framing, by tables: CRC-16 and LRC against published values,
MBAP/RTU/ASCII frames good and bad, the MBAP stream cut whole, in halves and byte by byte,
and TCP reassembly through retransmissions, overlaps, reordering, holes and wrap-around."""

from __future__ import annotations

import pytest

from edge_agent.tools.capture.mbap_stream import MbapSplitter
from edge_agent.tools.capture.modbus_frames import (
    FrameInfo,
    crc16,
    decode_ascii,
    decode_pdu,
    decode_rtu,
    decode_tcp,
    encode_ascii,
    encode_rtu,
    encode_tcp,
    lrc,
    rtu_frame_length,
)
from edge_agent.tools.capture.tcp_reassembly import Chunk, Gap, Reassembler

READ_REQ = bytes.fromhex("000100000006050300000003")  # unit 5, holding 0+3
READ_ANS = bytes.fromhex("000100000009050306000b000c000d")
WRITE_REQ = bytes.fromhex("0002000000060506000700630000")[:12]  # unit 5, holding 7 := 99


def test_crc16_matches_the_modbus_specification_examples():
    # "Modbus over serial line" spec, 6.2.2: 02 07 -> CRC 0x1241 (sent 41 12).
    assert crc16(bytes.fromhex("0207")) == 0x1241
    assert encode_rtu(1, bytes.fromhex("0300000001")) == bytes.fromhex("010300000001840a")


def test_lrc_matches_the_modbus_specification_example():
    # 11 03 00 6B 00 03 -> LRC 0x7E (Modbus over serial line, 6.2.1 example).
    assert lrc(bytes.fromhex("1103006b0003")) == 0x7E
    assert encode_ascii(0x11, bytes.fromhex("03006b0003")) == b":1103006B00037E\r\n"


TCP_CASES = [
    ("read request", READ_REQ, True,
     FrameInfo(unit_id=5, function_code=3, tid=1, address=0, count=3)),
    ("read answer", READ_ANS, False, FrameInfo(unit_id=5, function_code=3, tid=1)),
    ("write echo", bytes.fromhex("000400000006050600070063"), False,
     FrameInfo(unit_id=5, function_code=6, tid=4, address=7, count=1)),
    ("exception", bytes.fromhex("000300000003058302"), False,
     FrameInfo(unit_id=5, function_code=0x83, tid=3, exception_code=2)),
    ("write multiple", bytes.fromhex("000500000009051000010001020007"), True,
     FrameInfo(unit_id=5, function_code=16, tid=5, address=1, count=1)),
    ("diagnostics passes undecoded", bytes.fromhex("0000000000060a0800040000"), True,
     FrameInfo(unit_id=10, function_code=8, tid=0)),
]


@pytest.mark.parametrize(("frame", "is_request", "expected"),
                         [case[1:] for case in TCP_CASES], ids=[case[0] for case in TCP_CASES])
def test_tcp_frames_decode(frame, is_request, expected):
    assert decode_tcp(frame, is_request) == expected


MALFORMED_TCP = [
    ("protocol id", "0001001000060a0100010003", "protocol id 16"),
    ("length beyond Modbus", "0001000088040507080910", "length 34820"),
    ("length disagrees", "000100000007050300000003", "MBAP length 7 but 6 bytes"),
    ("exception of 3 bytes", "0001000000040a810600", "exception answer of 3 bytes"),
    ("byte count disagrees", "000100000005050304000b", "byte count 4 but 2 data bytes"),
    ("too short", "010123", "too short"),
]


@pytest.mark.parametrize(("hex_frame", "why"), [c[1:] for c in MALFORMED_TCP],
                         ids=[c[0] for c in MALFORMED_TCP])
def test_malformed_tcp_frames_say_why_and_keep_what_they_can(hex_frame, why):
    info = decode_tcp(bytes.fromhex(hex_frame), is_request=False)
    assert why in (info.malformed or "")


ADDRESS_AND_WORD = [
    ("read request", "0300070003", True, FrameInfo(function_code=3, address=7, count=3)),
    ("single write request: one register", "0600070063", True,
     FrameInfo(function_code=6, address=7, count=1)),
    ("multiple write answer: its count", "1000010002", False,
     FrameInfo(function_code=16, address=1, count=2)),
    ("read request of 4 bytes", "03000000", True,
     FrameInfo(function_code=3, malformed="function 3 request of 4 bytes (expected 5)")),
    ("write echo of 3 bytes", "060007", False,
     FrameInfo(function_code=6, malformed="function 6 answer of 3 bytes (expected 5)")),
    ("multiple write answer of 6 bytes", "100001000200", False,
     FrameInfo(function_code=16, malformed="function 16 answer of 6 bytes (expected 5)")),
]


@pytest.mark.parametrize(("pdu", "is_request", "expected"), [c[1:] for c in ADDRESS_AND_WORD],
                         ids=[c[0] for c in ADDRESS_AND_WORD])
def test_address_and_count_pdus_decode_and_a_wrong_length_names_the_direction(
        pdu, is_request, expected):
    assert decode_pdu(bytes.fromhex(pdu), is_request) == expected


def test_rtu_frames_decode_and_a_bad_crc_is_named():
    good = encode_rtu(1, bytes.fromhex("0300000002"))
    assert decode_rtu(good, True) == FrameInfo(unit_id=1, function_code=3, address=0, count=2)
    bad = good[:-1] + bytes([good[-1] ^ 0x5A])
    assert decode_rtu(bad, True).malformed.startswith("bad CRC")
    assert decode_rtu(bad, True).unit_id == 1


def test_ascii_frames_decode_and_a_bad_lrc_is_named():
    frame = encode_ascii(0x11, bytes.fromhex("03006b0003"))
    assert decode_ascii(frame, True) == FrameInfo(unit_id=0x11, function_code=3,
                                                  address=0x6B, count=3)
    assert decode_ascii(frame.replace(b"7E", b"7F"), True).malformed.startswith("bad LRC")
    assert "starts with ':'" in decode_ascii(b"1103\r\n", True).malformed


RTU_LENGTHS = [
    ("read request", encode_rtu(1, bytes.fromhex("0300000002")), True),
    ("read answer", encode_rtu(1, bytes.fromhex("030400010002")), False),
    ("write multiple request", encode_rtu(1, bytes.fromhex("10000100020400010002")), True),
    ("exception", encode_rtu(1, bytes.fromhex("8302")), False),
    ("report slave id (by CRC)", encode_rtu(1, bytes.fromhex("1103aabbcc")), False),
]


@pytest.mark.parametrize(("frame", "is_request"), [c[1:] for c in RTU_LENGTHS],
                         ids=[c[0] for c in RTU_LENGTHS])
def test_rtu_frame_length_waits_for_the_whole_frame_then_finds_its_end(frame, is_request):
    for cut in range(len(frame)):
        assert rtu_frame_length(frame[:cut], is_request) is None
    assert rtu_frame_length(frame + b"\x01\x03", is_request) == len(frame)


# -- the MBAP stream ---------------------------------------------------------------------

STREAM = READ_REQ + READ_ANS + bytes.fromhex("000300000003058302")


def _split(pieces: list[bytes]) -> list[bytes]:
    splitter = MbapSplitter()
    frames = [f for piece in pieces for f in splitter.feed(piece, 0.0)]
    assert splitter.pending == 0
    return [f.data for f in frames]


@pytest.mark.parametrize("cut", ["whole", "halves", "bytewise"])
def test_mbap_stream_gives_the_same_frames_however_it_is_cut(cut):
    pieces = {"whole": [STREAM], "halves": [STREAM[:17], STREAM[17:]],
              "bytewise": [bytes([b]) for b in STREAM]}[cut]
    assert _split(pieces) == [READ_REQ, READ_ANS, bytes.fromhex("000300000003058302")]


def test_a_capture_starting_mid_frame_loses_only_that_segment():
    splitter = MbapSplitter()
    first = splitter.feed(READ_ANS[5:], 1.0)  # the tail of a frame whose start was missed
    assert len(first) == 1 and first[0].problem.startswith("invalid MBAP header")
    assert [f.data for f in splitter.feed(READ_REQ, 2.0)] == [READ_REQ]


def test_stray_bytes_after_a_frame_do_not_swallow_the_next_segment():
    splitter = MbapSplitter()
    assert [f.data for f in splitter.feed(READ_REQ + b"\x01\x01\x23", 1.0)] == [READ_REQ]
    frames = splitter.feed(READ_REQ, 2.0)
    assert [(f.data, f.t, f.problem) for f in frames] == [
        (b"\x01\x01\x23", 1.0, "3 stray bytes, not a frame"), (READ_REQ, 2.0, None)]


def test_an_unfinished_frame_is_kept_when_the_stream_breaks():
    splitter = MbapSplitter()
    assert splitter.feed(READ_ANS[:9], 1.0) == []
    [frame] = splitter.interrupt(3.0, "connection closed")
    assert frame.data == READ_ANS[:9] and "connection closed" in frame.problem


# -- TCP reassembly ----------------------------------------------------------------------


def _stream(pieces: list[Chunk | Gap]) -> list[bytes | int]:
    return [p.data if isinstance(p, Chunk) else -p.missing for p in pieces]


def test_retransmitted_segments_are_delivered_once():
    r = Reassembler()
    r.syn(99)
    out = r.segment(1, 100, b"abc") + r.segment(2, 100, b"abc") + r.segment(3, 103, b"de")
    assert _stream(out) == [b"abc", b"de"] and r.duplicates == 1


def test_an_overlapping_retransmission_keeps_only_the_new_bytes():
    r = Reassembler()
    out = r.segment(1, 100, b"abc") + r.segment(2, 101, b"bcdef")
    assert _stream(out) == [b"abc", b"def"]


def test_out_of_order_segments_are_put_back_in_order():
    r = Reassembler()
    out = r.segment(1, 100, b"ab") + r.segment(2, 104, b"ef") + r.segment(3, 102, b"cd")
    assert _stream(out) == [b"ab", b"cd", b"ef"]


def test_a_hole_that_never_fills_becomes_a_gap_at_the_end():
    r = Reassembler()
    out = r.segment(1, 100, b"ab") + r.segment(2, 110, b"kl")
    assert _stream(out) == [b"ab"]
    assert _stream(r.finish()) == [-8, b"kl"]


def test_sequence_numbers_wrap_around():
    r = Reassembler()
    start = 2 ** 32 - 2
    out = r.segment(1, start, b"ab") + r.segment(2, 0, b"cd") + r.segment(3, start, b"ab")
    assert _stream(out) == [b"ab", b"cd"] and r.duplicates == 1


def test_write_request_fixture_is_what_it_says():
    assert decode_tcp(WRITE_REQ, True) == FrameInfo(unit_id=5, function_code=6, tid=2,
                                                     address=7, count=1)
    assert encode_tcp(2, 5, WRITE_REQ[7:]) == WRITE_REQ
