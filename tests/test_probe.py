"""``edge-agent probe`` as a technician runs it: a real process against real pymodbus
servers over TCP and over RTU/ASCII on pseudo-terminal pairs, and the failures met in the
field (missing adapter, busy port, refused connection, silent device)."""

from __future__ import annotations

import fcntl
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from edge_agent_drivers.modbus.settings import RegisterKind

from edge_agent.config.schema import LinkProtocol
from edge_agent.tools.sim.ptypair import PtyPair
from edge_agent.tools.sim.simserver import SimServer, SimUnit

# Every test here starts the agent or a tool as a real process.
pytestmark = pytest.mark.real_parts


def probe(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent", "probe", *args],
                          capture_output=True, text=True, timeout=timeout)


def f32(value: float, order: str) -> list[int]:
    """Independent encoder: float32 bytes A..D laid out on the wire per order."""
    a, b, c, d = struct.pack(">f", value)
    layout = {"ABCD": (a, b, c, d), "CDAB": (c, d, a, b), "BADC": (b, a, d, c),
              "DCBA": (d, c, b, a)}[order]
    return [layout[0] << 8 | layout[1], layout[2] << 8 | layout[3]]


def words_at(address: int, words: list[int]) -> dict[int, int]:
    return {address + offset: word for offset, word in enumerate(words)}


def assert_one_clean_line(result: subprocess.CompletedProcess[str]) -> str:
    """A failure is one line on stderr, no traceback, nothing on stdout."""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0]


@pytest.fixture
def gc_over_tcp() -> Iterator[SimServer]:
    """A GC whose benzene is float32 12.5 word-swapped (CDAB) at 40011, toluene an int16
    in tenths (3.7 -> 37) at 40021, and its tag 'GC-1' at 40031."""
    holding = {**words_at(10, f32(12.5, "CDAB")), 20: 37,
               **words_at(30, [0x4743, 0x2D31])}
    with SimServer([SimUnit(1, holding=holding)]) as server:
        yield server


@pytest.fixture
def pty() -> Iterator[PtyPair]:
    with PtyPair() as pair:
        yield pair


def test_float32_cdab_is_found_from_the_display_value(gc_over_tcp):
    result = probe("read", f"127.0.0.1:{gc_over_tcp.tcp_port}", "--ref", "40011",
                   "--count", "4", "--find", "12.5", "--tables")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("unit 1 at 127.0.0.1:") and "40011-40014" in lines[0]
    best = next(index for index, line in enumerate(lines) if "float32 CDAB" in line)
    assert lines[best].split() == ["40011", "wire", "10", "float32", "CDAB", "=", "12.5"]
    assert lines[best + 1].strip() == \
        "station file: {address: 10, type: float32, word_order: CDAB}"
    float32_rows = lines[lines.index(next(x for x in lines if x.startswith("float32:"))) + 2:]
    assert float32_rows[0].split()[:2] == ["10", "40011"]
    assert float32_rows[0].split()[3] == "12.5*"  # columns: wire manual ABCD CDAB ...


def test_find_prints_only_the_matching_readings(gc_over_tcp):
    result = probe("read", f"127.0.0.1:{gc_over_tcp.tcp_port}", "--ref", "40011",
                   "--count", "4", "--find", "12.5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("unit 1 at 127.0.0.1:") and lines[1] == ""
    assert lines[2].startswith("display value 12.5 (±0.05): 2 readings match")
    assert lines[3].split() == ["40011", "wire", "10", "float32", "CDAB", "=", "12.5"]
    assert lines[4].strip() == "station file: {address: 10, type: float32, word_order: CDAB}"
    assert lines[5].split() == ["40012", "wire", "11", "float32", "ABCD", "=", "12.5"]
    assert len(lines) == 7  # no table, no profile (no shipped map has these)


def test_probe_speaks_chinese_with_lang_zh(gc_over_tcp):
    """--lang zh: the title, the match sentence and the station-file hint in Chinese; the
    numbers, types and the settings to copy stay as the station file wants them."""
    result = probe("read", f"127.0.0.1:{gc_over_tcp.tcp_port}", "--ref", "40011",
                   "--count", "4", "--find", "12.5", "--lang", "zh")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (f"127.0.0.1:{gc_over_tcp.tcp_port} (modbus-tcp) 上的单元 1："
                        "保持寄存器 40011-40014（线路地址 10-13，功能码 3）")
    assert lines[2].startswith("显示值 12.5（±0.05）： 有 2 个读法吻合")
    assert lines[3].split() == ["40011", "线路", "10", "float32", "CDAB", "=", "12.5"]
    assert lines[4].strip() == "站点配置文件：{address: 10, type: float32, word_order: CDAB}"


def test_a_match_where_a_shipped_profile_has_that_channel_names_the_profile():
    """generic-gc keeps benzene as a CDAB float32 at wire 12 (drivers/gc/profile.yaml)."""
    with SimServer([SimUnit(1, holding={0: 0, **words_at(12, f32(1.25, "CDAB"))})]) as server:
        result = probe("read", f"127.0.0.1:{server.tcp_port}", "--count", "20",
                       "--find", "1.25")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    best = next(index for index, line in enumerate(lines) if "float32 CDAB" in line)
    assert lines[best].split()[:3] == ["40013", "wire", "12"]
    assert lines[best + 2].strip() == \
        "looks like profile generic-gc, channel 'benzene' (profile: generic-gc)"
    assert result.stdout.count("looks like profile") == 1
    assert "16-bit values" not in result.stdout


def test_scaled_integer_is_found_with_its_scale(gc_over_tcp):
    result = probe("read", f"127.0.0.1:{gc_over_tcp.tcp_port}", "--address", "20",
                   "--count", "2", "--find", "3.7")
    assert result.returncode == 0, result.stderr
    assert "station file: {address: 20, type: int16, scale: 0.1}" in result.stdout


def test_every_interpretation_is_listed_in_json(gc_over_tcp):
    result = probe("read", f"127.0.0.1:{gc_over_tcp.tcp_port}", "--ref", "40031",
                   "--count", "2", "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    first = document["registers"][0]
    assert (first["address"], first["manual"], first["hex"]) == (30, "40031", "0x4743")
    assert (first["int16"], first["uint16"], first["text"], first["text_swapped"]) == \
        (0x4743, 0x4743, "GC", "CG")
    assert first["uint32"]["ABCD"] == 0x47432D31 and first["uint32"]["CDAB"] == 0x2D314743
    assert document["text"] == "GC-1" and document["text_swapped"] == "CG1-"
    assert "float32" not in document["registers"][1]  # the range ends after one register


def test_rtu_on_a_pty_reads_input_registers_in_every_width(pty):
    int16_minus_2 = [0xFFFE]
    float64_dcba = [int.from_bytes(struct.pack("<d", 1234.5678)[i:i + 2], "big")
                    for i in (0, 2, 4, 6)]
    image = {0: int16_minus_2[0], **words_at(1, float64_dcba)}
    with SimServer([SimUnit(4, input=image)], serial_port=pty.device_path):
        result = probe("read", pty.agent_path, "--unit", "4", "--table", "input",
                       "--count", "5", "--format", "json", "--find", "1234.5678")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["table"] == "input" and document["function_code"] == 4
    assert document["registers"][0]["int16"] == -2
    assert document["registers"][1]["float64"]["DCBA"] == 1234.5678
    assert [(m["manual"], m["type"], m["word_order"]) for m in document["find"]["matches"]] \
        == [("30002", "float64", "DCBA")]


def test_modbus_ascii_on_a_pty_and_rtu_over_tcp_through_a_gateway(pty):
    with (SimServer([SimUnit(2, holding={0: 4242})], serial_port=pty.device_path,
                    protocol=LinkProtocol.MODBUS_ASCII),
          SimServer([SimUnit(2, holding={0: 4343})],
                    protocol=LinkProtocol.MODBUS_RTU) as gateway):
        over_ascii = probe("read", pty.agent_path, "--protocol", "modbus-ascii", "--unit", "2",
                           "--count", "1", "--format", "json")
        over_gateway = probe("read", f"127.0.0.1:{gateway.tcp_port}", "--protocol",
                             "modbus-rtu-over-tcp", "--unit", "2", "--count", "1",
                             "--format", "json")
    assert over_ascii.returncode == 0, over_ascii.stderr
    assert json.loads(over_ascii.stdout)["registers"][0]["uint16"] == 4242
    assert over_gateway.returncode == 0, over_gateway.stderr
    document = json.loads(over_gateway.stdout)
    assert document["registers"][0]["uint16"] == 4343
    assert document["link"].endswith("(modbus-rtu-over-tcp)")


def test_coils_and_discrete_inputs_are_read_as_bits(pty):
    unit = SimUnit(1, coils={1: True, 8: True}, discrete={2: True})
    with SimServer([unit], serial_port=pty.device_path):
        coils = probe("read", pty.agent_path, "--table", "coil", "--count", "10")
        discrete = probe("read", pty.agent_path, "--ref", "10001", "--count", "4",
                         "--format", "json")
    assert coils.returncode == 0, coils.stderr
    rows = [line.split() for line in coils.stdout.splitlines()]
    assert ["0", "00001", "0", "1", "0", "0", "0", "0", "0", "0"] in rows
    assert ["8", "00009", "1", "0"] in rows
    assert discrete.returncode == 0, discrete.stderr
    bits = json.loads(discrete.stdout)["bits"]
    assert [(b["manual"], b["value"]) for b in bits] == [
        ("10001", False), ("10002", False), ("10003", True), ("10004", False)]


def test_exception_reply_is_named_and_exits_6(gc_over_tcp):
    result = probe("read", f"127.0.0.1:{gc_over_tcp.tcp_port}", "--ref", "41020",
                   "--count", "10")
    assert result.returncode == 6
    line = assert_one_clean_line(result)
    assert "exception 02 illegal data address" in line
    assert "holding 41020-41029 (wire 1019-1028)" in line


def test_scan_finds_exactly_the_units_on_a_pty_bus(pty):
    units = [SimUnit(3, holding={0: 17}), SimUnit(5, muted=True),
             SimUnit(7, holes={RegisterKind.HOLDING: [0]})]
    with SimServer(units, serial_port=pty.device_path):
        # timeouts long enough for a loaded test machine: a late answer would be silence
        table = probe("scan", pty.agent_path, "--units", "1-8", "--timeout-ms", "500")
        as_json = probe("scan", pty.agent_path, "--units", "3-7", "--timeout-ms", "500",
                        "--format", "json")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines() == [
        "unit   3: answered with value 17",
        "unit   7: answered with exception 02 illegal data address (a device is there)",
        "2 units answered: 3, 7 (8 unit ids tried)",
    ]
    assert "scanning 8 unit ids (1-8)" in table.stderr
    assert "tried 8 of 8 unit ids, 2 answered" in table.stderr
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert [u["unit_id"] for u in document["present"]] == [3, 7]
    assert document["tried"] == 5 and document["garbled"] == []


def test_scan_of_a_silent_bus_exits_5(pty):
    result = probe("scan", pty.agent_path, "--units", "1-3", "--timeout-ms", "50")
    assert result.returncode == 5
    assert "no unit answered (3 unit ids tried)" in result.stdout


def test_absent_serial_port_names_the_ports_present():
    result = probe("read", "/dev/ttyNOPE0")
    assert result.returncode == 4
    line = assert_one_clean_line(result)
    assert line.startswith("edge-agent probe: serial port /dev/ttyNOPE0 does not exist "
                           "(serial ports on this machine: ")
    scan = probe("scan", "/dev/ttyNOPE0", "--units", "1-3")
    assert scan.returncode == 4
    assert "serial port /dev/ttyNOPE0 does not exist" in scan.stderr


def test_busy_serial_port_says_another_program_has_it(pty):
    holder = os.open(pty.agent_path, os.O_RDWR | os.O_NOCTTY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # what a running agent's Modbus client holds
    try:
        result = probe("read", pty.agent_path)
    finally:
        os.close(holder)
    assert result.returncode == 4
    assert f"serial port {pty.agent_path} is busy" in assert_one_clean_line(result)


def test_refused_tcp_connection_exits_4():
    with socket.socket() as bound:  # holds a free port; nothing listens on it
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        result = probe("read", f"127.0.0.1:{port}")
    assert result.returncode == 4
    assert f"127.0.0.1:{port} refused the connection" in assert_one_clean_line(result)


def test_silent_device_exits_5_with_what_to_check(pty):
    with SimServer([SimUnit(1, muted=True)], serial_port=pty.device_path):
        result = probe("read", pty.agent_path, "--timeout-ms", "200")
    assert result.returncode == 5
    line = assert_one_clean_line(result)
    assert f"no answer from unit 1 at {pty.agent_path} (9600 8N1, modbus-rtu) within " \
           "200 ms" in line
    assert "baud rate and parity" in line


@pytest.mark.parametrize(("args", "message"), [
    (["read", "/dev/ttyS9", "--unit", "0"], "0 is broadcast"),
    (["read", "/dev/ttyS9", "--table", "coil", "--find", "1"], "single bits"),
    (["read", "/dev/ttyS9", "--ref", "4001"], "table digit"),
    (["read", "/dev/ttyS9", "--ref", "30001", "--table", "holding"], "contradicts"),
    (["read", "10.0.0.1", "--address", "65530", "--count", "10"], "65535"),
    (["scan", "/dev/ttyS9", "--protocol", "modbus-tcp"], "needs a network address"),
    (["read", "10.0.0.1", "--find", "twelve"], "expected a number"),
    (["read", "10.0.0.1", "--tables"], "--tables only makes sense with --find"),
])
def test_impossible_command_lines_exit_2_before_opening_anything(args, message):
    result = probe(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_help_documents_the_exit_statuses():
    result = probe("--help")
    assert result.returncode == 0
    for line in ("4  cannot use the link", "5  no answer within the timeout",
                 "6  the device answered with a Modbus exception"):
        assert line in result.stdout


def garbling_slave(path: str, stop: threading.Event) -> None:
    """A raw RTU slave that answers every request with a frame whose CRC is wrong (what a
    line at the wrong baud rate, or two units answering at once, looks like)."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        while not stop.is_set():
            if select.select([fd], [], [], 0.05)[0]:
                request = os.read(fd, 256)
                os.write(fd, bytes([request[0], 3, 2, 0x00, 0x11, 0xDE, 0xAD]))
    finally:
        os.close(fd)


def test_garbled_answers_exit_7_and_scan_reports_them_apart(pty):
    stop = threading.Event()
    slave = threading.Thread(target=garbling_slave, args=(pty.device_path, stop))
    slave.start()
    try:
        read = probe("read", pty.agent_path, "--unit", "3", "--count", "1")
        scan = probe("scan", pty.agent_path, "--units", "3", "--timeout-ms", "1000",
                     "--format", "json")
    finally:
        stop.set()
        slave.join(timeout=10)
    assert read.returncode == 7
    line = assert_one_clean_line(read)
    assert "unusable answer from unit 3" in line and "wrong baud rate or parity" in line
    assert scan.returncode == 5  # something answered, but no device can be named
    document = json.loads(scan.stdout)
    assert [u["unit_id"] for u in document["garbled"]] == [3] and document["present"] == []
