"""The HJ 212 uplink end to end (issue 13): ``edge-agent run`` as a child process, a real
pymodbus-backed simulator, a real Mosquitto for the ``mqtt:`` uplink and the platform
simulator (edge_agent/tools/hj212platform) behind a relay that can black-hole it.

Proves: every sample reaches the platform as a 2011 packet with the mapped codes and
flags and a valid CRC; while the platform hangs up on every connection, then while it
is black-holed, the MQTT uplink keeps delivering; a SIGKILL of the agent in the outage
loses nothing; after it every sample arrives at least once, the late ones marked
``RF=1`` (HJ 212-2025), and the outbox holds none of them any more. A history pull is
answered "no data" (9011, 9012 ``ExeRtn=100``). Every wait is for an observable state.
"""

from __future__ import annotations

import io
import sqlite3
import threading
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from support.blackhole import BlackHoleProxy
from support.collector import Collector
from support.hj212platforms import platform_events
from support.station import AgentProcess, accepted_seqs, samples_left
from support.uplinks_station import write_uplinks_station
from support.waiting import wait_until

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.forward.hj212uplink import Hj212Uplink
from edge_agent.hj212.cp import parse_region
from edge_agent.tools.hj212platform.log import PlatformLog
from edge_agent.tools.hj212platform.requests import Command
from edge_agent.tools.hj212platform.server import Behaviour, Platform
from edge_agent.tools.sim.broker import Mosquitto
from edge_agent.tools.sim.simserver import SimServer, SimUnit

pytestmark = pytest.mark.real_parts

MN = "010000A8900016F000169DC0"
CODES = {"dev-1": "a21028", "dev-2": "a21022"}  # H2S, Cl2
STATION_TZ = "Asia/Shanghai"  # the agent runs in China's local time (UTC+8)


def data_time(acquired_at: str) -> str:
    """The DataTime the platform must see for an MQTT sample's ``acquired_at``."""
    moment = datetime.fromisoformat(acquired_at.replace("Z", "+00:00"))
    return moment.astimezone(ZoneInfo(STATION_TZ)).strftime("%Y%m%d%H%M%S")


class PlatformUnderTest:
    """The simulator in this process, its JSON-lines log read back as packets."""

    def __init__(self, folder: Path) -> None:
        self.jsonl = folder / "platform.jsonl"
        self.log = PlatformLog(io.StringIO(), self.jsonl)
        # a history pull after each connection's first packet: no data stored yet
        self.platform = Platform("127.0.0.1", 0, Behaviour(commands=(Command("2051", None),)),
                                 self.log)
        self.thread = threading.Thread(target=self.platform.server.serve_forever,
                                       daemon=True)

    def start(self) -> PlatformUnderTest:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.platform.server.shutdown()
        self.platform.server.server_close()
        self.log.close()

    def events(self, kind: str) -> list[dict]:
        return platform_events(self.jsonl, kind)

    def realtime(self) -> list[tuple[str, str, bool, str]]:
        """(code, DataTime, RF, flag) of every factor of every 2011 packet received."""
        found = []
        for packet in self.events("packet"):
            if packet["cn"] != "2011":
                continue
            assert packet["mn"] == MN and packet["version"] == "2025"
            assert packet["ack_requested"]
            region = parse_region(packet["cp"])
            for factor in region.factors():
                found.append((factor.code, region.get("DataTime") or "",
                              bool(packet["rf"]), factor.get("Flag") or ""))
        return found


def station(tmp_path: Path, server: SimServer, mqtt_port: int | None,
            platform_port: int) -> Path:
    """Two devices polled every second, ``mqtt:`` and one HJ 212 platform ``prov``."""
    prov = {"kind": "hj212", "host": "127.0.0.1", "port": platform_port, "mn": MN,
            "st": "22", "password_env": "PROV_PW", "version": 2025, "encrypt": False,
            "timeout_s": 1, "retries": 1, "heartbeat_s": 2,
            "channels": [{"device": device, "channel": "value", "code": code}
                         for device, code in CODES.items()]}
    path = write_uplinks_station(tmp_path / "station.yaml", server, {"prov": prov},
                                 mqtt_port=mqtt_port, interval_s=1.0)
    return path


def test_every_sample_reaches_the_platform_through_a_black_hole_and_a_sigkill(tmp_path):
    devices = SimServer([SimUnit(1, holding={0: 11}), SimUnit(2, holding={0: 22})]).start()
    broker = Mosquitto(tmp_path / "broker").start()
    platform = PlatformUnderTest(tmp_path).start()
    relay = BlackHoleProxy(platform.platform.port).start()
    collector = Collector(broker.port, session_name="home").start()
    path = station(tmp_path, devices, broker.port, relay.port)
    outbox = tmp_path / "outbox.sqlite3"
    env = {"PROV_PW": "123456", "TZ": STATION_TZ}
    agent = AgentProcess(path, tmp_path / "agent.log", env).start().wait_running()
    try:
        wait_until(lambda: {code for code, *_ in platform.realtime()} == set(CODES.values())
                   and len(platform.realtime()) >= 6, 60, "2011 packets of both devices")
        behaviour = platform.platform.behaviour
        # the platform hangs up on every connection after its first packet, for a while
        platform.platform.behaviour = replace(behaviour, close_after=1)
        seen = len(collector.seqs("dev-1"))
        wait_until(lambda: sum(e["reason"] == "--close-after 1"
                               for e in platform.events("closed")) >= 2, 60,
                   "the platform to close the agent's connection twice")
        collector.wait_for(lambda c: len(c.seqs("dev-1")) >= seen + 4, 60,
                           "MQTT to keep delivering while the platform hangs up")
        platform.platform.behaviour = behaviour
        fed = len(platform.realtime())
        wait_until(lambda: len(platform.realtime()) > fed + 4, 60,
                   "the platform to be fed again once it keeps the connection")
        relay.freeze()  # the platform's link black-holes: no data, no FIN, no RST
        frozen = len(platform.events("packet"))
        seen = len(collector.seqs("dev-1"))
        collector.wait_for(lambda c: len(c.seqs("dev-1")) >= seen + 6, 60,
                           "MQTT to keep delivering while the platform is silent")
        agent.kill()  # SIGKILL in the middle of the outage
        assert len(platform.events("packet")) == frozen, "the black hole let data through"
        agent = AgentProcess(path, tmp_path / "agent.log", env).start().wait_running()
        seen = len(collector.seqs("dev-1"))
        collector.wait_for(lambda c: len(c.seqs("dev-1")) >= seen + 3, 60,
                           "MQTT delivering after the restart, platform still silent")
        thawed_at = accepted_seqs(outbox)
        relay.thaw()

        for device, last in thawed_at.items():
            collector.wait_for(lambda c, d=device, n=last: set(c.seqs(d))
                               >= set(range(1, n + 1)), 60, f"MQTT {device} 1..{last}")
            wanted = {(CODES[device], data_time(r.sample["acquired_at"]))
                      for r in collector.first_deliveries(device) if r.sample["seq"] <= last}
            wait_until(lambda w=wanted: w <= {(c, t) for c, t, *_ in platform.realtime()},
                       120, f"the platform to hold every {device} sample up to {last}")
            wait_until(lambda d=device, n=last: samples_left(outbox, d, n) == 0, 60,
                       f"the outbox to let go of {device} 1..{last}")
    finally:
        agent.terminate()
        relay.stop()
        collector.stop()
        platform.stop()
        broker.stop()
        devices.stop()
    received = platform.realtime()
    assert {flag for *_, flag in received} == {"N"}
    assert any(rf for _, _, rf, _ in received), "nothing was marked re-sent (RF=1)"
    live = [(code, stamp) for code, stamp, rf, _ in received if not rf]
    assert live, "live data never went out unmarked"
    assert not platform.events("rejected"), platform.events("rejected")[:1]
    answers = {(p["cn"], p["cp"]) for p in platform.events("packet")}
    assert {("9011", "QnRtn=1"), ("9012", "ExeRtn=100")} <= answers, answers
    assert any(cn == "2081" for cn, _ in answers), "no restart notice (2081)"
    log = (tmp_path / "agent.log").read_text()
    assert "Traceback" not in log


def gap_rows(outbox: Path) -> int:
    conn = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM outbox WHERE kind = 'gap'").fetchone()[0]
    finally:
        conn.close()


def test_gap_events_are_acknowledged_unsent_and_counted(tmp_path):
    """HJ 212 has no gap packet: a gap (retention dropped samples while the platform was
    silent) leaves the outbox for the platform without a packet, and is counted."""
    devices = SimServer([SimUnit(1, holding={0: 11}), SimUnit(2, holding={0: 22})]).start()
    platform = PlatformUnderTest(tmp_path).start()
    relay = BlackHoleProxy(platform.platform.port).start()
    relay.freeze()
    path = station(tmp_path, devices, None, relay.port)
    doc = yaml.safe_load(path.read_text())
    doc["store"]["retention"] = {"max_rows": 4}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    outbox = tmp_path / "outbox.sqlite3"
    agent = Agent(load_config(path, env={"PROV_PW": "123456"}))
    agent.start()
    uplink = agent.uplinks["prov"]
    assert isinstance(uplink, Hj212Uplink)
    try:
        wait_until(lambda: outbox.exists() and gap_rows(outbox) > 0, 60,
                   "retention to drop samples and announce a gap")
        relay.thaw()
        wait_until(lambda: uplink.counts()["gaps_skipped"] > 0, 60, "the gap to be skipped")
        wait_until(lambda: gap_rows(outbox) == 0, 60, "the gap rows to leave the outbox")
        wait_until(lambda: len(platform.realtime()) > 0, 60, "real-time data after the gap")
    finally:
        agent.stop()
        relay.stop()
        platform.stop()
        devices.stop()
    sent = {packet["cn"] for packet in platform.events("packet")}
    assert sent <= {"2011", "2081", "9015", "9011", "9012"}, sent
    assert uplink.health().acknowledged > 0
