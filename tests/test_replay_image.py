"""Register-image replay: reads inside the recorded ranges get the values the recording
held at that moment of recording time, exceptions come back where the recording had them,
and recording time runs at the chosen speed. The clock is passed in, never slept on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from support.capture_session import (
    HOLDING,
    UNIT,
    gc_unit,
    recording_proxy,
    replayed_over_tcp,
    tcp_client,
)

from edge_agent.tools.capture.files import Capture, read_capture
from edge_agent.tools.capture.format import Frame, Header, LinkInfo, decode_frame
from edge_agent.tools.capture.modbus_frames import encode_tcp
from edge_agent.tools.replay.image import RegisterImage
from edge_agent.tools.replay.script import Exchange, Script, load_script
from edge_agent.tools.replay.serve import ImageReplay, RecordingClock
from edge_agent.tools.sim.simserver import SimServer


def _frame(t: float, direction: str, xid: int, pdu: str) -> Frame:
    data = encode_tcp(xid, UNIT, bytes.fromhex(pdu))
    return Frame(t, direction, "gc", data, decode_frame("modbus-tcp", data, direction == "tx"),
                 conn=1, xid=xid)


def _script(*exchanges: tuple[float, str, str | None]) -> Script:
    """Exchanges as (time, request PDU, answer PDU or None) in hex."""
    return Script("gc", "modbus-tcp", tuple(
        Exchange(_frame(t, "tx", xid, request),
                 _frame(t + 0.1, "rx", xid, answer) if answer else None)
        for xid, (t, request, answer) in enumerate(exchanges, start=1)))


GC = _script(
    (1.0, "0300000003", "0306000b000c000d"),          # holding 0..2 = 11, 12, 13
    (5.0, "0300000003", "03060015000c000d"),          # holding 0 became 21
    (6.0, "0300640002", "8306"),                       # holding 100+2: busy (06) ...
    (9.0, "0300640002", "030400010002"),               # ... then 1, 2
    (9.5, "0313890001", "030412345678"),               # Enron 5001: 0x12345678
    (9.8, "0100000003", "010105"),                     # coils 0..2 = 1, 0, 1
    (9.9, "1100", "1103aabbcc"),                       # report slave id
)


def test_reads_get_the_values_held_at_that_moment_of_the_recording():
    image = RegisterImage(GC)
    assert image.answer(UNIT, bytes.fromhex("0300000003"), 0.0) == bytes.fromhex(
        "0306000b000c000d")  # before the first record: the first value
    assert image.answer(UNIT, bytes.fromhex("0300000003"), 4.0) == bytes.fromhex(
        "0306000b000c000d")
    assert image.answer(UNIT, bytes.fromhex("0300000003"), 5.1) == bytes.fromhex(
        "03060015000c000d")


def test_any_read_inside_the_recorded_ranges_is_answered_and_outside_is_exception_02():
    image = RegisterImage(GC)
    assert image.answer(UNIT, bytes.fromhex("0300010002"), 9.0) == bytes.fromhex("0304000c000d")
    assert image.answer(UNIT, bytes.fromhex("0300020002"), 9.0) == bytes.fromhex("8302")
    assert image.answer(UNIT, bytes.fromhex("0400000001"), 9.0) == bytes.fromhex("8402")
    assert image.answer(UNIT, bytes.fromhex("0100010002"), 9.9) == bytes.fromhex("010102")


def test_exceptions_come_back_while_they_were_the_recorded_outcome():
    image = RegisterImage(GC)
    assert image.answer(UNIT, bytes.fromhex("0300640002"), 7.0) == bytes.fromhex("8306")
    assert image.answer(UNIT, bytes.fromhex("0300640002"), 9.2) == bytes.fromhex(
        "030400010002")


def test_enron_registers_keep_two_words_per_address():
    image = RegisterImage(GC)
    assert image.answer(UNIT, bytes.fromhex("0313890001"), 9.6) == bytes.fromhex(
        "030412345678")


def test_other_functions_answer_what_the_same_request_got_or_exception_01():
    image = RegisterImage(GC)
    assert image.answer(UNIT, bytes.fromhex("1100"), 9.9) == bytes.fromhex("1103aabbcc")
    assert image.answer(UNIT, bytes.fromhex("2b0e0100"), 9.9) == bytes.fromhex("ab01")


def test_writes_inside_recorded_ranges_are_acknowledged_and_a_stranger_unit_is_silent():
    image = RegisterImage(GC)
    assert image.answer(UNIT, bytes.fromhex("0600010063"), 9.0) == bytes.fromhex("0600010063")
    assert image.answer(UNIT, bytes.fromhex("0300010001"), 9.0) == bytes.fromhex("0302000c")
    assert image.answer(UNIT + 1, bytes.fromhex("0300000001"), 9.0) is None


def test_the_recording_clock_runs_at_its_speed_and_stops_or_loops_at_the_end():
    now = [100.0]
    clock = RecordingClock(1.0, 10.0, speed=10, monotonic=lambda: now[0])
    looping = RecordingClock(1.0, 10.0, speed=10, loop=True, monotonic=lambda: now[0])
    assert clock() == 1.0
    now[0] = 100.5
    assert clock() == 6.0 and looping() == 6.0
    now[0] = 101.2  # 12 s of recording time: 9 s long, so the loop is 3 s into round two
    assert clock() == 10.0 and looping() == pytest.approx(4.0)


def test_image_replay_over_tcp_follows_a_recorded_change_of_value(tmp_path):
    path = tmp_path / "changing.capture.jsonl"
    with (SimServer([gc_unit()], tcp_port=0) as server,
          recording_proxy(server.tcp_port, path) as port,
          tcp_client(port) as client):
        assert client.read_registers(UNIT, HOLDING, 0, 3) == [11, 12, 13]
        server.set_words(UNIT, HOLDING, 0, [21])
        assert client.read_registers(UNIT, HOLDING, 0, 3) == [21, 12, 13]
    capture = read_capture(path)
    change_t = _answer_times(capture)[1]
    moment = [0.0]
    replay = ImageReplay(RegisterImage(load_script(capture)), lambda: moment[0])
    with replayed_over_tcp(replay) as client:
        assert client.read_registers(UNIT, HOLDING, 1, 2) == [12, 13]
        assert client.read_registers(UNIT, HOLDING, 0, 1) == [11]
        moment[0] = change_t
        assert client.read_registers(UNIT, HOLDING, 0, 1) == [21]


def _answer_times(capture: Capture) -> list[float]:
    return [f.t for f in capture.frames() if f.dir == "rx"]


def test_a_script_holds_a_link_s_requests_with_their_answers():
    header = Header(datetime.now(UTC), "test", (LinkInfo("gc", "modbus-tcp", "x:502"),))
    frames = [frame for exchange in GC.exchanges
              for frame in (exchange.request, exchange.answer) if frame is not None]
    script = load_script(Capture(header, tuple(frames)))
    assert script.protocol == "modbus-tcp" and script.exchanges == GC.exchanges
