"""The capture file format: what is written reads back the same, appending keeps a file
whole, and every kind of broken file is refused with its file, line and reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.tools.capture.files import CaptureError, CaptureWriter, read_capture, write_capture
from edge_agent.tools.capture.format import Event, Frame, Header, LinkInfo, header_line, record_line
from edge_agent.tools.capture.modbus_frames import FrameInfo, encode_rtu

HEADER = Header(datetime(2026, 3, 1, 8, 30, tzinfo=UTC), "proxy",
                (LinkInfo("gc", "modbus-tcp", "192.168.10.21:502", listen="0.0.0.0:1502"),
                 LinkInfo("bus", "modbus-rtu", "/dev/ttyUSB0", baudrate=9600, parity="E")),
                unit_ids=(5,))
REQUEST = Frame(0.25, "tx", "gc", bytes.fromhex("000100000006050300000003"),
                FrameInfo(5, 3, tid=1, address=0, count=3), conn=1, xid=1)
ANSWER = Frame(0.5, "rx", "gc", bytes.fromhex("000100000009050306000b000c000d"),
               FrameInfo(5, 3, tid=1, address=0, count=3), conn=1, xid=1)
RTU_ANSWER = encode_rtu(1, bytes.fromhex("03020001"))
RECORDS = (Event(0.0, "open", "gc", 1, peer="127.0.0.1:40000"), REQUEST, ANSWER)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "broken.capture.jsonl"
    path.write_text(text, encoding="utf-8")
    return path


def _good_text() -> str:
    return "\n".join([header_line(HEADER), *(record_line(r) for r in RECORDS)]) + "\n"


def test_a_written_capture_reads_back_record_for_record(tmp_path):
    path = tmp_path / "gc.capture.jsonl"
    write_capture(path, HEADER, RECORDS)
    capture = read_capture(path)
    assert capture.header == HEADER
    assert capture.records == RECORDS


def test_each_record_is_one_readable_line_with_the_bytes_last(tmp_path):
    line = record_line(ANSWER)
    assert "\n" not in line
    assert list(json.loads(line)) == ["t", "dir", "link", "conn", "xid", "unit", "fc", "addr",
                                      "count", "tid", "hex"]


def test_appending_continues_the_file_and_keeps_its_header(tmp_path):
    path = tmp_path / "gc.capture.jsonl"
    writer = CaptureWriter.create(path, HEADER)
    writer.write(RECORDS[:2])
    writer.close()
    writer = CaptureWriter.append_to(path)
    writer.write(RECORDS[2:])
    writer.close()
    assert read_capture(path).records == RECORDS


def test_appending_after_a_last_line_without_newline_keeps_both_lines(tmp_path):
    path = _write(tmp_path, _good_text().rstrip("\n"))
    writer = CaptureWriter.append_to(path)
    writer.write([Event(2.0, "close", "gc", 1, note="closed by the master")])
    writer.close()
    assert read_capture(path).records[-2:] == (ANSWER, Event(2.0, "close", "gc", 1,
                                                             note="closed by the master"))


def test_create_refuses_to_overwrite_a_capture(tmp_path):
    path = _write(tmp_path, _good_text())
    with pytest.raises(CaptureError, match="exists already"):
        CaptureWriter.create(path, HEADER)


BROKEN = [
    ("empty file", lambda text: "", None, "the file is empty: not a capture"),
    ("not a capture", lambda text: '{"hello": 1}\n', 1, "not a capture file"),
    ("garbage line", lambda text: text.replace('{"t": 0.25', 'xx{"t": 0.25'), 3,
     "a record is not valid JSON"),
    ("truncated last record", lambda text: text[:-20], 4,
     "the file ends in the middle of this record (the recording was interrupted?); delete "
     "this last line to use the records before it"),
    ("newer version", lambda text: text.replace('"version": 1', '"version": 7'), 1,
     "capture format version 7 is newer than this edge-agent reads (up to 2): upgrade"),
    ("unknown direction", lambda text: text.replace('"dir": "tx"', '"dir": "up"'), 3,
     "dir: 'up' is not one of tx, rx"),
    ("unknown link", lambda text: text.replace('"link": "gc", "conn": 1, "xid": 1, "unit": 5, '
                                               '"fc": 3, "addr": 0, "count": 3, "tid": 1, '
                                               '"hex": "0001000000090',
                                               '"link": "gx", "conn": 1, "xid": 1, "unit": 5, '
                                               '"fc": 3, "addr": 0, "count": 3, "tid": 1, '
                                               '"hex": "0001000000090'), 4,
     "link 'gx' is not in the header (known: gc, bus)"),
    ("odd hex", lambda text: text.replace('0300000003"', '030000003"'), 3,
     "hex: not hexadecimal bytes"),
    ("fields disagree with bytes", lambda text: text.replace('"count": 3, "tid": 1, "hex": '
                                                             '"000100000006',
                                                             '"count": 4, "tid": 1, "hex": '
                                                             '"000100000006'), 3,
     "count 4 does not match the frame's bytes (3): hex is what is replayed"),
    ("missing time", lambda text: text.replace('{"t": 0.25, ', '{'), 3,
     "t: required field is missing"),
]


@pytest.mark.parametrize(("damage", "line", "message"),
                         [case[1:] for case in BROKEN], ids=[c[0] for c in BROKEN])
def test_a_broken_capture_is_refused_naming_file_line_and_reason(tmp_path, damage, line,
                                                                  message):
    path = _write(tmp_path, damage(_good_text()))
    with pytest.raises(CaptureError) as caught:
        read_capture(path)
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    assert str(caught.value).startswith(where + message), str(caught.value)


def test_bytes_that_are_not_text_are_refused_naming_the_line(tmp_path):
    path = tmp_path / "binary.capture.jsonl"
    path.write_bytes(_good_text().encode() + b"\xff\xfe\x00\n")
    with pytest.raises(CaptureError, match=rf"^{path}:5: not UTF-8 text"):
        read_capture(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(CaptureError, match=r"nothing\.capture\.jsonl: cannot read the capture"):
        read_capture(tmp_path / "nothing.capture.jsonl")


def test_a_malformed_frame_is_kept_and_flagged(tmp_path):
    bad_crc = RTU_ANSWER[:-2] + b"\x00\x00"
    bad = Frame(1.0, "rx", "bus", bad_crc, FrameInfo(1, 3, malformed="bad CRC 0000 (computed "
                                                                      f"{RTU_ANSWER[-1]:02x}"
                                                                      f"{RTU_ANSWER[-2]:02x})"))
    path = tmp_path / "bus.capture.jsonl"
    write_capture(path, HEADER, (bad,))
    [record] = read_capture(path).records
    assert record == bad
    assert '"malformed": "bad CRC 0000' in path.read_text()


def test_a_record_claiming_a_good_frame_for_bad_bytes_is_refused(tmp_path):
    good = Frame(1.0, "rx", "bus", RTU_ANSWER, FrameInfo(1, 3))
    line = record_line(good).replace(RTU_ANSWER.hex(), RTU_ANSWER[:-2].hex() + "0000")
    path = _write(tmp_path, _good_text() + line + "\n")
    with pytest.raises(CaptureError, match=r":5: the record says the frame is well formed"):
        read_capture(path)


TEXT_HEADER = Header(datetime(2026, 3, 1, 8, 30, tzinfo=UTC), "agent",
                     (LinkInfo("line", "text", "/dev/ttyUSB1", baudrate=19200),))
TEXT_FRAMES = (Frame(0.1, "tx", "line", b"\x02DA07\x03", xid=1),
               Frame(0.2, "rx", "line", b"\x02MD07,+0012.3,A\x03C4\r\n", xid=1),
               Frame(0.21, "rx", "line", b"\x00\xffnoise", xid=1))


def test_a_modbus_capture_is_written_as_version_1_and_a_text_one_as_version_2(tmp_path):
    modbus, text = tmp_path / "modbus.capture.jsonl", tmp_path / "text.capture.jsonl"
    write_capture(modbus, HEADER, RECORDS)
    write_capture(text, TEXT_HEADER, TEXT_FRAMES)
    assert json.loads(modbus.read_text().splitlines()[0])["version"] == 1
    lines = [json.loads(line) for line in text.read_text().splitlines()]
    assert lines[0]["version"] == 2
    assert [line["text"] for line in lines[1:]] == [
        "<STX>DA07<ETX>", "<STX>MD07,+0012.3,A<ETX>C4<CR><LF>", "<NUL>\\xFFnoise"]
    assert read_capture(text).records == TEXT_FRAMES


def test_a_text_link_in_a_version_1_header_is_refused_and_the_text_field_is_ignored(tmp_path):
    path = tmp_path / "text.capture.jsonl"
    write_capture(path, TEXT_HEADER, TEXT_FRAMES)
    lines = path.read_text().splitlines()
    edited = _write(tmp_path, "\n".join([lines[0], lines[1].replace("DA07", "anything")])
                    + "\n")
    assert read_capture(edited).records == TEXT_FRAMES[:1]  # hex is the truth
    old = _write(tmp_path, lines[0].replace('"version": 2', '"version": 1') + "\n")
    with pytest.raises(CaptureError) as refused:
        read_capture(old)
    assert str(refused.value) == (f"{old}:1: links.line.protocol: text links need capture "
                                  "format version 2 (the header says 1)")
