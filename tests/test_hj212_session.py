"""The station's HJ 212 session against the real platform simulator (its server class on a
free port, real TCP): delivery by 9014 with the upload's QN, re-sends after the timeout
marked RF=1 under 2025 and not under 2017, the 9015 heartbeat answered by 9013, a
platform that closes the connection or is black-holed, garbage from the platform counted
and survived, split and SM4-encrypted uploads, and the platform's commands answered."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from support.blackhole import BlackHoleProxy
from support.hj212 import KEY, public
from support.hj212platforms import RunningPlatform, running_platforms
from support.waiting import wait_until

from edge_agent.hj212.framing import PacketStream
from edge_agent.hj212.packet import Flag, Packet, ParseOptions, Version, encode, parse
from edge_agent.hj212.platform_state import PlatformStateFile
from edge_agent.hj212.responder import Responder
from edge_agent.hj212.session import Session, SessionSettings, Upload
from edge_agent.tools.hj212platform.requests import Command
from edge_agent.tools.hj212platform.server import Behaviour

MN = "010000A8900016F000169DC0"
DEADLINE_S = 20
REGION = "DataTime=20260315101500;a25002-Rtd=0.012,a25002-Flag=N"


@pytest.fixture
def platform(tmp_path: Path) -> Iterator:
    """Starts a platform simulator with the given ``Behaviour`` fields (support)."""
    yield from running_platforms(tmp_path)


@pytest.fixture
def session() -> Iterator:
    started: list[Session] = []

    def start(port: int, responder: Responder | None = None, **changes) -> Session:
        settings = replace(SessionSettings("127.0.0.1", port, st="27", pw="123456", mn=MN,
                                           version=Version.HJ212_2017, timeout_s=5,
                                           reconnect_min_s=0.05, reconnect_max_s=0.2),
                           **changes)
        one = Session(settings, responder).start()
        started.append(one)
        return one

    yield start
    for one in started:
        one.stop()


def connected(one: Session) -> Session:
    assert one.wait_connected(DEADLINE_S), "the session did not connect"
    return one


def test_an_upload_is_delivered_when_the_9014_with_its_qn_arrives(platform, session):
    running = platform()
    one = connected(session(running.port))
    result = one.send(Upload("2011", REGION))
    assert result.delivered and result.attempts == 1
    [received] = running.packets("2011")
    assert (received["qn"], received["flag"], received["rf"]) == (result.qns[0], 5, False)
    # the simulator logs its 9014 after writing it: the station may read it first
    wait_until(lambda: running.sent("9014"), DEADLINE_S, "the 9014 in the platform's log")
    assert [e["qn"] for e in running.sent("9014")] == [result.qns[0]]
    counts = one.counts()
    assert (counts["sent"], counts["acknowledged"], counts["timeouts"]) == (1, 1, 0)


def test_unanswered_uploads_are_resent_marked_rf_under_2025_then_reported_undelivered(
        platform, session):
    running = platform(ack=False)
    one = connected(session(running.port, version=Version.HJ212_2025, timeout_s=0.2,
                            retries=2))
    result = one.send(Upload("2011", REGION))
    assert not result.delivered and result.attempts == 3
    assert "after 3 sends" in result.reason
    wait_until(lambda: len(running.packets("2011")) == 3, DEADLINE_S, "three copies")
    copies = running.packets("2011")
    assert {c["qn"] for c in copies} == {result.qns[0]}  # one QN: the platform pairs by it
    assert [c["rf"] for c in copies] == [False, True, True]
    counts = one.counts()
    assert (counts["sent"], counts["resent"], counts["timeouts"],
            counts["not_delivered"]) == (3, 2, 3, 1)


def test_resends_under_2017_carry_no_rf_field(platform, session):
    running = platform(ack=False)
    one = connected(session(running.port, timeout_s=0.2, retries=1))
    assert not one.send(Upload("2011", REGION)).delivered
    wait_until(lambda: len(running.packets("2011")) == 2, DEADLINE_S, "two copies")
    assert [c["rf"] for c in running.packets("2011")] == [False, False]
    assert all("RF=" not in c["raw"] for c in running.packets("2011"))


def test_data_kept_from_a_failed_upload_goes_out_marked_rf_under_2025(platform, session):
    running = platform()
    one = connected(session(running.port, version=Version.HJ212_2025))
    assert one.send(Upload("2011", REGION, resent=True)).delivered
    [received] = running.packets("2011")
    assert received["rf"] and received["flag"] == 9 and ";RF=1;" in received["raw"]


def test_the_2025_heartbeat_is_sent_and_answered_by_9013(platform, session):
    running = platform()
    one = connected(session(running.port, version=Version.HJ212_2025, heartbeat_s=0.1))
    wait_until(lambda: len(running.sent("9013")) >= 2, DEADLINE_S, "two heartbeats answered")
    answered = {e["qn"] for e in running.sent("9013")}  # read first: beats go on
    beats = running.packets("9015")
    assert beats[0]["cp"] == "" and beats[0]["flag"] == 9
    assert answered <= {b["qn"] for b in beats}
    wait_until(lambda: one.counts()["heartbeats"] >= 2, DEADLINE_S, "heartbeats counted")
    assert one.counts()["disconnects"] == 0


def test_no_heartbeat_under_2017(platform, session):
    running = platform()
    one = connected(session(running.port, heartbeat_s=0.05))
    assert one.send(Upload("2011", REGION)).delivered  # a round trip: time has passed
    assert running.packets("9015") == [] and one.counts()["heartbeats"] == 0


def test_a_platform_closing_the_connection_is_reconnected_and_sending_goes_on(
        platform, session):
    running = platform(close_after=1)
    one = connected(session(running.port))
    assert one.send(Upload("2011", REGION)).delivered  # answered, then closed
    wait_until(lambda: one.counts()["connects"] == 2, DEADLINE_S, "the reconnect")
    connected(one)
    assert one.send(Upload("2011", REGION)).delivered
    assert one.counts()["disconnects"] >= 1
    assert len({e["peer"] for e in running.events("connected")}) >= 2


def test_a_black_holed_platform_times_out_and_the_session_recovers_when_it_thaws(
        platform, session):
    running = platform()
    proxy = BlackHoleProxy(running.port).start()
    try:
        one = connected(session(proxy.port, version=Version.HJ212_2025, timeout_s=0.2,
                                retries=1, heartbeat_s=0.3))
        assert one.send(Upload("2011", REGION)).delivered
        proxy.freeze()
        # not delivered: by its own two timeouts, or because the heartbeat, unanswered
        # too, closed the connection first
        assert not one.send(Upload("2011", REGION)).delivered
        # the unanswered heartbeat closes the silent connection and a new one is tried
        wait_until(lambda: proxy.connections >= 2, DEADLINE_S, "a reconnect through the proxy")
        proxy.thaw()
        wait_until(lambda: one.send(Upload("2011", REGION, resent=True)).delivered,
                   DEADLINE_S, "delivery after the thaw")
        assert one.counts()["timeouts"] >= 2
    finally:
        proxy.stop()


def test_sending_while_not_connected_returns_at_once_undelivered(session):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    one = session(port)
    result = one.send(Upload("2011", REGION))
    assert not result.delivered and "not connected" in result.reason
    assert one.counts()["sent"] == 0


def test_without_ack_delivered_means_the_platforms_tcp_took_every_byte(platform, session):
    running = platform(ack=False)
    one = connected(session(running.port, ack=False, timeout_s=5))
    result = one.send(Upload("2011", REGION))
    assert result.delivered and result.attempts == 1
    wait_until(lambda: len(running.packets("2011")) == 1, DEADLINE_S, "the upload")
    assert running.packets("2011")[0]["flag"] == 4
    assert one.counts()["acknowledged"] == 0


def test_a_long_upload_is_split_and_every_piece_acknowledged(platform, session):
    running = platform()
    one = connected(session(running.port, version=Version.HJ212_2025))
    factors = ";".join(f"a{24000 + n}-Rtd={n}.123,a{24000 + n}-Flag=N" for n in range(60))
    result = one.send(Upload("2011", "DataTime=20260315101500;" + factors))
    assert result.delivered and len(result.qns) >= 2
    wait_until(lambda: running.events("reassembled"), DEADLINE_S, "the reassembled upload")
    assert running.events("reassembled")[0]["cp"].count("-Rtd=") == 60
    assert one.send(Upload("2011", REGION)).delivered  # no QN reused after the pieces


def test_a_2025_upload_is_sm4_encrypted_with_the_key(tmp_path, session):
    running = RunningPlatform(tmp_path, Behaviour(options=ParseOptions(sm4_key=KEY)))
    try:
        one = connected(session(running.port, version=Version.HJ212_2025, sm4_key=KEY))
        assert one.send(Upload("2051", REGION)).delivered
        [received] = running.packets("2051")
        assert received["encrypted"] and received["cp"] == REGION
        assert "{0x" in received["raw"]
    finally:
        running.close()


class FakePlatform:
    """A platform written by hand, to send what the simulator never would."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]

    def answer_with(self, junk: bytes, answer: Callable[[Packet], str]) -> threading.Thread:
        def run() -> None:
            conn, _ = self.listener.accept()
            with conn:
                stream, packets = PacketStream(), []
                while not packets:
                    packets = stream.feed(conn.recv(65536))
                upload = parse(packets[0]).packet
                conn.sendall(junk + answer(upload).encode())
                conn.recv(1)  # hold the connection until the station closes it
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread


def test_garbage_from_the_platform_is_counted_and_a_lenient_9014_still_delivers(session):
    fake = FakePlatform()

    def lenient_9014(upload: Packet) -> str:  # Flag=5 on an answer, lowercase CRC hex
        answer = Packet(st="91", cn="9014", pw="123456", mn=MN, qn=upload.qn,
                        flag=Flag(Version.HJ212_2017, ack=True))
        raw = encode(answer)
        return raw[:-6] + raw[-6:-2].lower() + "\r\n"

    bad_crc = encode(Packet(st="91", cn="9014", pw="1", mn=MN, qn="20260101000000000",
                            flag=Flag(Version.HJ212_2017))).replace("\r\n", "")[:-4] + "0000\r\n"
    junk = b"\x00\xffnoise\r\n##12ab\r\n" + bad_crc.encode()
    fake.answer_with(junk, lenient_9014)
    one = connected(session(fake.port))
    assert one.send(Upload("2011", REGION)).delivered
    counts = one.counts()
    assert counts["bad_packets"] >= 2 and counts["garbage_bytes"] > 0
    assert one.connected and counts["disconnects"] == 0
    fake.listener.close()


def test_platform_commands_reach_the_responder_and_its_replies_go_back(
        tmp_path, platform, session):
    pull = Command("2051", "BeginTime=20260315100000,EndTime=20260315110000")
    running = platform(commands=(Command("1011", None), pull, Command("1062", "RtdInterval=60")))
    records = [f"DataTime=20260315{hour}00;a25002-Avg=0.01,a25002-Flag=N"
               for hour in ("1000", "1010")]
    pulled: list[tuple] = []

    def history(cn: str, begin: datetime, end: datetime) -> list[str]:
        pulled.append((cn, begin, end))
        return records

    store = PlatformStateFile(tmp_path / "hj212-city.json")
    responder = Responder("123456", store, history, started_at=datetime(2026, 3, 15, 9, 0))
    one = connected(session(running.port, responder))
    wait_until(lambda: len(running.packets("9012")) == 3, DEADLINE_S, "three 9012 answers")
    assert [p["cp"] for p in running.packets("2081")][0].endswith("RestartTime=20260315090000")
    assert running.packets("1011")[0]["cp"].startswith("SystemTime=")
    assert [p["cp"] for p in running.packets("2051")] == records
    assert pulled == [("2051", datetime(2026, 3, 15, 10), datetime(2026, 3, 15, 11))]
    assert [p["cp"] for p in running.packets("9012")] == ["ExeRtn=1"] * 3
    assert store.get().rtd_interval_s == 60 and responder.intervals().rtd_interval_s == 60
    command_qns = {e["qn"] for e in running.sent("1011") + running.sent("2051")}
    assert {p["qn"] for p in running.packets("9011")} >= command_qns
    assert one.counts()["commands"] == 3



def test_a_real_platforms_13_digit_qn_command_is_answered_with_that_qn(tmp_path, session):
    """Public packet 9: a platform's 1012 with a 13-digit millisecond QN and Flag=5."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[Packet] = []

    def platform() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall((public(9) + "\r\n").encode())
            stream = PacketStream()
            while len(received) < 2 and (data := conn.recv(65536)):
                received.extend(parse(raw).packet for raw in stream.feed(data))

    thread = threading.Thread(target=platform, daemon=True)
    thread.start()
    responder = Responder("123456", PlatformStateFile(tmp_path / "hj212-p.json"),
                          lambda *_: [])
    one = connected(session(listener.getsockname()[1], responder, mn="DXCBZ000000005",
                            st="21"))
    thread.join(DEADLINE_S)
    assert [(p.cn, p.qn, p.cp) for p in received] == [
        ("9011", "1617937097417", "QnRtn=1"), ("9012", "1617937097417", "ExeRtn=3")]
    assert one.counts()["commands"] == 1
    listener.close()
