"""Cutting received bytes into frames for recording on the agent's own links: the same
frames whether the bytes arrive whole, in halves or byte by byte; what is left when the
master moves on is kept as one frame."""

from __future__ import annotations

import pytest
from support.splits import SPLITS, pieces

from edge_agent.tools.capture.cutting import AnswerCutter
from edge_agent.tools.capture.modbus_frames import encode_ascii, encode_rtu, encode_tcp

RTU = [encode_rtu(7, bytes.fromhex("030c00000000000c002300040000")),
       encode_rtu(7, bytes.fromhex("8302")), encode_rtu(7, bytes.fromhex("0600010063"))]
TCP = [encode_tcp(1, 1, bytes.fromhex("0304000b000c")), encode_tcp(2, 1, bytes.fromhex("8402"))]
ASCII = [encode_ascii(1, bytes.fromhex("0302000c")), encode_ascii(1, bytes.fromhex("8302"))]
TEXT = [b"\x02MD07,+0012.3,A\x03C4\r\n", b"$H2S,0.012,ppm,OK*41\r", b"line two\n"]
CASES = {"modbus-rtu": RTU, "modbus-tcp": TCP, "modbus-ascii": ASCII, "text": TEXT}


@pytest.mark.parametrize("how", SPLITS)
@pytest.mark.parametrize("protocol", sorted(CASES))
def test_answers_are_cut_into_the_same_frames_however_they_arrive(protocol, how):
    cutter = AnswerCutter(protocol)
    frames = []
    for t, piece in enumerate(pieces(b"".join(CASES[protocol]), how)):
        frames += cutter.feed(piece, float(t))
    frames += cutter.cut(999.0, "the master sent its next request")
    assert [f.data for f in frames] == CASES[protocol]
    assert all(f.problem is None for f in frames)


def test_a_frame_s_time_is_when_its_last_byte_came():
    cutter = AnswerCutter("text")
    assert cutter.feed(b"first\r", 1.0) == []  # a CR at the end: an LF may follow
    first, = cutter.feed(b"second", 2.0)
    assert (first.data, first.t) == (b"first\r", 1.0)
    second, = cutter.cut(3.0, "next request")
    assert (second.data, second.t) == (b"second", 2.0)


@pytest.mark.parametrize(("protocol", "leftover", "problem"), [
    ("modbus-rtu", RTU[0][:5], "5 bytes of an unfinished frame (next request)"),
    ("modbus-tcp", TCP[0][:9], "9 bytes of an unfinished frame (next request)"),
    ("modbus-ascii", b":0103", "5 bytes of an unfinished frame (next request)"),
    ("text", b"\x02MD07,+12\x03", None),  # text frames are not judged here
])
def test_what_waits_when_the_master_moves_on_becomes_one_frame(protocol, leftover, problem):
    cutter = AnswerCutter(protocol)
    assert cutter.feed(leftover, 1.0) == []
    frame, = cutter.cut(2.0, "next request")
    assert (frame.data, frame.problem) == (leftover, problem)
    assert cutter.cut(3.0, "next request") == []
