"""``edge-agent hj212-platform`` as a real process on real TCP: stations send 2011
uploads with and without the ack bit and read the 9014s, bad packets are logged and
counted and never answered, commands from the command line and stdin arrive, and the
misbehaviour switches do what they say. Plus its stream framing, fed byte by byte."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import pytest
from support.waiting import wait_until

from edge_agent.hj212.cp import Factor, build_region, parse_region
from edge_agent.hj212.crc import CrcVariant
from edge_agent.hj212.framing import PacketStream
from edge_agent.hj212.packet import (
    Flag,
    Packet,
    ParsedPacket,
    ParseOptions,
    Version,
    encode,
    parse,
    qn_for,
)
from edge_agent.hj212.split import split_packet

MN = "010000A8900016F000169DC0"
KEY_HEX = "30" * 16
DEADLINE_S = 20


@dataclass
class PlatformProcess:
    process: subprocess.Popen[str]
    port: int
    jsonl: Path

    def events(self, kind: str | None = None) -> list[dict]:
        if not self.jsonl.exists():
            return []
        found = [json.loads(line) for line in self.jsonl.read_text("utf-8").splitlines()]
        return [e for e in found if kind is None or e["event"] == kind]

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=DEADLINE_S)
        return out


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    started: list[PlatformProcess] = []

    def run(*args: str, stdin: bool = False) -> PlatformProcess:
        jsonl = tmp_path / f"platform{len(started)}.jsonl"
        process = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "hj212-platform", "--jsonl", str(jsonl), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)
        line = process.stdout.readline()
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)$", line.strip())
        assert found, line
        platform = PlatformProcess(process, int(found.group(1)), jsonl)
        started.append(platform)
        return platform

    yield run
    for platform in started:
        if platform.process.poll() is None:
            platform.process.kill()
            platform.process.communicate()


class StationSocket:
    """A test station: sends packets, reads the platform's packets."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S)
        self.stream = PacketStream()
        self.pending: list[bytes] = []

    def send(self, raw: str) -> None:
        self.sock.sendall(raw.encode("utf-8"))

    def read(self) -> ParsedPacket:
        while not self.pending:
            data = self.sock.recv(65536)
            assert data, "the platform closed the connection"
            self.pending += self.stream.feed(data)
        return parse(self.pending.pop(0))

    def read_to_end(self) -> bytes:
        """Everything until the platform closes the connection."""
        received = b""
        while data := self.sock.recv(65536):
            received += data
        return received

    def close(self) -> None:
        self.sock.close()


def upload(second: int, ack: bool, version: Version = Version.HJ212_2017, **changes) -> Packet:
    region = build_region([("DataTime", f"20260315101{second:03d}"[:14])], [
        Factor("a25002", (("Rtd", "0.012"), ("Flag", "N"))),
        Factor("a21028", (("Rtd", "0.30"), ("Flag", "N")))])
    packet = Packet(st="27", cn="2011", pw="123456", mn=MN, cp=region,
                    qn=qn_for(datetime(2026, 3, 15, 10, 15, second % 60, 1000 * second)),
                    flag=Flag(version, ack=ack))
    return replace(packet, **changes)


@pytest.mark.real_parts
def test_uploads_with_the_ack_bit_get_9014_with_their_qn_and_others_none(start):
    platform = start()
    station = StationSocket(platform.port)
    no_ack, with_ack, again = upload(1, False), upload(2, True), upload(3, True)
    for packet in (no_ack, with_ack, again):
        station.send(encode(packet))
    first, second = station.read().packet, station.read().packet
    # TCP keeps order: had the Flag=4 upload been answered, its 9014 would come first
    assert [(p.cn, p.qn, p.st, p.flag) for p in (first, second)] == [
        ("9014", with_ack.qn, "91", Flag(Version.HJ212_2017)),
        ("9014", again.qn, "91", Flag(Version.HJ212_2017))]
    station.close()
    wait_until(lambda: platform.events("closed"), DEADLINE_S, "the platform to see the close")
    logged = platform.events("packet")
    assert [(e["qn"], e["ack_requested"], e["version"]) for e in logged] == [
        (no_ack.qn, False, "2017"), (with_ack.qn, True, "2017"), (again.qn, True, "2017")]
    assert logged[0]["raw"] == encode(no_ack)
    out = platform.stop()
    assert f"CN=2011 real-time data MN={MN} ST=27 QN={with_ack.qn} HJ212-2017 ack" in out
    assert "| DataTime=20260315101002; a25002-Rtd=0.012,a25002-Flag=N;" in out
    assert platform.events("summary")[0]["counts"]["sent_9014"] == 2


@pytest.mark.real_parts
def test_a_bad_crc_is_logged_and_counted_and_not_answered(start):
    platform = start()
    station = StationSocket(platform.port)
    bad = encode(upload(1, True))
    bad = bad[:-6] + ("0000" if bad[-6:-2] != "0000" else "1111") + "\r\n"
    good = upload(2, True)
    station.send(bad + "noise between packets" + encode(good))
    answer = station.read().packet
    assert (answer.cn, answer.qn) == ("9014", good.qn)  # the bad one got nothing, first
    rejected = platform.events("rejected")
    assert len(rejected) == 1
    assert rejected[0]["kind"] == "crc" and rejected[0]["rejected_total"] == 1
    assert re.fullmatch(r"CRC expected [0-9A-F]{4}, got (0000|1111)", rejected[0]["error"])
    assert rejected[0]["raw"] == bad
    station.close()
    wait_until(lambda: platform.events("closed"), DEADLINE_S, "the platform to see the close")
    out = platform.stop()
    assert "REJECTED (crc): CRC expected" in out
    counts = platform.events("summary")[0]["counts"]
    assert (counts["rejected"], counts["rejected_crc"], counts["packets"]) == (1, 1, 1)
    assert platform.events("discarded")[0]["bytes"] == len("noise between packets")


@pytest.mark.real_parts
def test_commands_from_the_command_line_reach_the_station_after_its_first_packet(start):
    platform = start("--send", "CN=1011", "--send", "CN=2051",
                     "--send", "CN=2061;BeginTime=20260101000000,EndTime=20260102000000")
    station = StationSocket(platform.port)
    station.send(encode(upload(1, True, Version.HJ212_2025)))
    packets = [station.read().packet for _ in range(4)]
    assert [p.cn for p in packets] == ["9014", "1011", "2051", "2061"]
    assert packets[0].flag == Flag(Version.HJ212_2025)  # 8: the 2025 answer, no ack asked
    for command in packets[1:]:
        assert (command.st, command.pw, command.mn) == ("27", "123456", MN)
        assert command.flag == Flag(Version.HJ212_2025, ack=True)  # 9: must be answered
    pull = parse_region(packets[2].cp)
    assert pull.time("EndTime") - pull.time("BeginTime") == (
        datetime(2026, 1, 1, 1) - datetime(2026, 1, 1))
    assert packets[3].cp == "BeginTime=20260101000000,EndTime=20260102000000"
    station.close()


@pytest.mark.real_parts
def test_a_command_typed_on_stdin_goes_to_every_connected_station(start):
    platform = start("--interactive", stdin=True)
    first, second = StationSocket(platform.port), StationSocket(platform.port)
    first.send(encode(upload(1, True)))
    second.send(encode(upload(2, True, mn="AQHJ0QP0100001000000000A")))
    assert first.read().packet.cn == second.read().packet.cn == "9014"
    platform.process.stdin.write("not a command\nCN=1012\n")
    platform.process.stdin.flush()
    set_times = [first.read().packet, second.read().packet]
    assert [(p.cn, p.mn) for p in set_times] == [
        ("1012", MN), ("1012", "AQHJ0QP0100001000000000A")]
    assert all(parse_region(p.cp).time("SystemTime") is not None for p in set_times)
    assert "expected CN=nnnn" in platform.events("bad_command")[0]["error"]
    first.close()
    second.close()


@pytest.mark.real_parts
def test_split_and_encrypted_uploads_are_checked_reassembled_and_acked(start):
    platform = start("--sm4-key", KEY_HEX)
    station = StationSocket(platform.port)
    long = upload(1, True, Version.HJ212_2025, cp=build_region(
        [("DataTime", "20260315101500")],
        [Factor(f"a{25000 + n}", (("Rtd", f"{n}.5"), ("Flag", "N"))) for n in range(60)]))
    pieces = split_packet(long)
    assert len(pieces) == 3
    for piece in pieces:
        station.send(encode(piece, sm4_key=bytes.fromhex(KEY_HEX)))
    answers = [station.read().packet for _ in pieces]
    assert [a.qn for a in answers] == [p.qn for p in pieces]
    assert all(e["encrypted"] for e in platform.events("packet"))
    wait_until(lambda: platform.events("reassembled"), DEADLINE_S, "the reassembled packet")
    assert platform.events("reassembled")[0]["cp"] == long.cp
    station.close()


@pytest.mark.real_parts
@pytest.mark.parametrize("switches", [["--blackhole"], ["--no-ack"]])
def test_a_platform_that_never_answers(start, switches):
    platform = start(*switches, "--close-after", "2", "--send", "CN=1011")
    station = StationSocket(platform.port)
    station.send(encode(upload(1, True)) + encode(upload(2, True)))
    received = station.read_to_end()  # the platform closes after 2 packets
    expected_cns = [] if switches == ["--blackhole"] else ["1011"]  # no-ack still commands
    assert [parse(raw).packet.cn for raw in PacketStream().feed(received)] == expected_cns
    assert len(platform.events("packet")) == 2
    wait_until(lambda: platform.events("closed"), DEADLINE_S, "the close to be logged")
    assert platform.events("closed")[0]["reason"] == "--close-after 2"
    station.close()


@pytest.mark.real_parts
def test_close_after_closes_each_connection_after_its_packets(start):
    platform = start("--close-after", "1")
    station = StationSocket(platform.port)
    station.send(encode(upload(1, True)))
    received = PacketStream().feed(station.read_to_end())
    assert [parse(raw).packet.cn for raw in received] == ["9014"]
    station.close()
    again = StationSocket(platform.port)  # the platform itself keeps listening
    again.send(encode(upload(2, True)))
    assert again.read().packet.cn == "9014"
    again.close()


def test_bad_command_line_values_exit_2_with_the_reason(capsys):
    from edge_agent import cli
    for argv, message in ((["--send", "1011"], "expected CN=nnnn"),
                          (["--sm4-key", "3030"], "--sm4-key: expected 32 hex digits, got 4")):
        assert cli.main(["hj212-platform", *argv]) == 2
        assert message in capsys.readouterr().err


def test_the_stream_is_cut_into_packets_whole_split_and_byte_by_byte():
    packets = [encode(upload(n, True)).encode() for n in range(3)]
    wire = b"\x00garbage" + packets[0] + b"#" + packets[1] + packets[2]
    for size in (len(wire), 7, 1):
        stream = PacketStream()
        found = []
        for start in range(0, len(wire), size):
            found += stream.feed(wire[start:start + size])
        assert found == packets
        assert stream.discarded_bytes == len(b"\x00garbage#")


def test_an_endless_line_is_discarded_not_kept():
    stream = PacketStream(max_packet=100)
    assert stream.feed(b"##" + b"9" * 500) == []
    assert stream.discarded_bytes == 502
    packet = encode(upload(1, True)).encode()
    assert stream.feed(packet) == [packet]


@pytest.mark.real_parts
def test_notices_get_9013_and_a_resent_2025_upload_is_logged_as_resent(start):
    platform = start()
    station = StationSocket(platform.port)
    heartbeat = Packet(st="27", cn="9015", pw="123456", mn=MN, qn="20260315101500001",
                       flag=Flag(Version.HJ212_2025, ack=True))
    calibration = replace(heartbeat, cn="1013", qn="20260315101500002", cp="PolId=a25002")
    resent = upload(3, True, Version.HJ212_2025, rf=True)
    for packet in (heartbeat, calibration, resent):
        station.send(encode(packet))
    answers = [station.read().packet for _ in range(3)]
    assert [(a.cn, a.qn, a.flag.value) for a in answers] == [
        ("9013", heartbeat.qn, 8), ("9013", calibration.qn, 8), ("9014", resent.qn, 8)]
    assert [e["rf"] for e in platform.events("packet")] == [False, False, True]
    station.close()
    wait_until(lambda: platform.events("closed"), DEADLINE_S, "the close to be logged")
    assert "RF=1 (re-sent)" in platform.stop()


@pytest.mark.real_parts
def test_an_upload_with_a_qn_we_cannot_echo_is_logged_unanswered(start):
    from edge_agent.hj212.crc import crc_text
    platform = start("--close-after", "1")
    station = StationSocket(platform.port)
    segment = upload(1, True).segment().replace("QN=20260315101501001", "QN=1617937097417")
    station.send(f"##{len(segment):04d}{segment}{crc_text(segment.encode())}\r\n")
    assert station.read_to_end() == b""
    wait_until(lambda: platform.events("closed"), DEADLINE_S, "the close to be logged")
    assert platform.events("packet")[0]["notes"] == ["13-digit millisecond QN"]
    assert platform.events("unanswered")[0]["cn"] == "9014"
    station.close()


@pytest.mark.real_parts
def test_crc_makes_a_platform_that_answers_and_accepts_the_modbus_crc_low_first(start):
    platform = start("--crc", "modbus-low-first")
    station = StationSocket(platform.port)
    low_first = upload(1, True)
    station.send(encode(low_first, crc=CrcVariant.MODBUS_LOW_FIRST))
    station.send(encode(upload(2, True)))  # Appendix A's is still accepted
    raw = b""
    while raw.count(b"\r\n") < 2:
        raw += station.sock.recv(65536)
    answers = [parse(line + b"\r\n", ParseOptions(accept_crc=frozenset(CrcVariant)))
               for line in raw.split(b"\r\n") if line]
    assert [(a.packet.cn, a.crc_variant) for a in answers] == \
        [("9014", CrcVariant.MODBUS_LOW_FIRST)] * 2
    assert answers[0].packet.qn == low_first.qn
    station.close()
    assert not platform.events("rejected")


@pytest.mark.real_parts
def test_unanswered_pno_leaves_that_piece_of_a_split_upload_unanswered(start):
    platform = start("--unanswered-pno", "2")
    station = StationSocket(platform.port)
    factors = [Factor(f"a{24000 + n}", (("Rtd", f"{n}.123"), ("Flag", "N"))) for n in range(60)]
    long_upload = replace(upload(1, True), cp=build_region(
        [("DataTime", "20260315101500")], factors))
    pieces = split_packet(long_upload)
    assert len(pieces) >= 3
    for piece in pieces:
        station.send(encode(piece))
    answered = [station.read().packet.qn for _ in range(len(pieces) - 1)]
    assert answered == [p.qn for p in pieces if p.pno != 2]
    wait_until(lambda: platform.events("unanswered"), DEADLINE_S, "the unanswered piece")
    assert platform.events("unanswered")[0]["pno"] == 2
    station.close()


def test_unanswered_pno_must_not_be_negative(capsys):
    from edge_agent import cli
    assert cli.main(["hj212-platform", "--unanswered-pno", "-1"]) == 2
    assert "--unanswered-pno: expected 0 or a piece number" in capsys.readouterr().err
