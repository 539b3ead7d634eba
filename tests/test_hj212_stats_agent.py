"""HJ 212 minute statistics end to end (issue 13 items 2 and 4): ``edge-agent run`` as a
child process with a pymodbus-backed simulator and the platform simulator,
``minute_interval_min: 1``.

Proves: a minute record is closed and stored while the platform is down (closed: every
connection refused) and the agent was SIGKILLed in between; once the platform is back
it receives every stored minute record exactly once (by DataTime and code), marked
re-sent (``RF=1``: it missed its first upload), with the
simulated value as Min/Avg/Max and flag N; the records are marked delivered; a history
pull (2051 with BeginTime/EndTime) is answered 9011, the stored records, 9012
``ExeRtn=1``. One real minute boundary is waited for (40 to 90 s in all); every wait is
for an observable state.
"""

from __future__ import annotations

import io
import json
import socket
import sqlite3
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from support.station import AgentProcess
from support.uplinks_station import write_uplinks_station
from support.waiting import wait_until

from edge_agent.hj212.cp import parse_region
from edge_agent.tools.hj212platform.log import PlatformLog
from edge_agent.tools.hj212platform.requests import Command
from edge_agent.tools.hj212platform.server import Behaviour, Platform
from edge_agent.tools.sim.simserver import SimServer, SimUnit

pytestmark = pytest.mark.real_parts

MN = "010000A8900016F000169DC0"
CODES = {"dev-1": "a21028", "dev-2": "a21022"}
VALUES = {"a21028": "11", "a21022": "22"}


def station(tmp_path: Path, server: SimServer, platform_port: int) -> Path:
    prov = {"kind": "hj212", "host": "127.0.0.1", "port": platform_port, "mn": MN,
            "st": "22", "password_env": "PROV_PW", "version": 2025, "encrypt": False,
            "timeout_s": 1, "retries": 1, "heartbeat_s": 2, "minute_interval_min": 1,
            "hourly": False, "daily": False,
            "channels": [{"device": device, "channel": "value", "code": code}
                         for device, code in CODES.items()]}
    path = write_uplinks_station(tmp_path / "station.yaml", server, {"prov": prov})
    doc = yaml.safe_load(path.read_text())
    for device in doc["devices"]:
        device["interval_s"] = 1.0
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def stored(outbox: Path) -> list[tuple[str, str, float, bool]]:
    """(DataTime, CP, closed at, delivered) of the stored minute records."""
    if not outbox.exists():
        return []
    conn = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    try:
        return [(start, cp, closed, delivered is not None) for start, cp, closed, delivered
                in conn.execute("SELECT period_start, cp, closed_at, delivered_at FROM "
                                "hj212_stats WHERE cn = '2051' ORDER BY period_start")]
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        conn.close()


class PlatformUnderTest:
    """The simulator in this process on ``port`` (0: a free one), its JSON-lines log
    (appended to across restarts) read back as packets."""

    def __init__(self, folder: Path, port: int = 0) -> None:
        self.jsonl = folder / "platform.jsonl"
        self.log = PlatformLog(io.StringIO(), self.jsonl)
        self.platform = Platform("127.0.0.1", port, Behaviour(), self.log)
        self.thread = threading.Thread(target=self.platform.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Down: no listener, and the stations' connections closed (they see EOF)."""
        self.platform.server.shutdown()
        self.platform.server.server_close()
        for connection in list(self.platform._connections.values()):
            connection.sock.shutdown(socket.SHUT_RDWR)
        self.log.close()

    def packets(self) -> list[dict]:
        if not self.jsonl.exists():
            return []
        lines = self.jsonl.read_text(encoding="utf-8").splitlines()
        return [event for line in lines if line.endswith("}")
                and (event := json.loads(line))["event"] == "packet"]


def minute_factors(packets: list[dict]) -> list[tuple[str, str, bool, dict[str, str]]]:
    """(DataTime, code, RF, items) of every factor of every 2051 packet."""
    found = []
    for packet in packets:
        if packet["cn"] == "2051":
            region = parse_region(packet["cp"])
            for factor in region.factors():
                found.append((region.get("DataTime") or "", factor.code or "",
                              bool(packet["rf"]), dict(factor.values)))
    return found


def test_minute_records_reach_the_platform_once_across_an_outage_and_a_sigkill(tmp_path):
    devices = SimServer([SimUnit(1, holding={0: 11}), SimUnit(2, holding={0: 22})]).start()
    platform = PlatformUnderTest(tmp_path)
    port = platform.platform.port
    path = station(tmp_path, devices, port)
    outbox = tmp_path / "outbox.sqlite3"
    env = {"PROV_PW": "123456", "TZ": "Asia/Shanghai"}
    agent = AgentProcess(path, tmp_path / "agent.log", env).start().wait_running()
    try:
        wait_until(lambda: any(p["cn"] == "2011" for p in platform.packets()), 60,
                   "the first 2011 packet")
        # down shortly before a minute ends, so the agent's reconnect backoff stays short
        wait_until(lambda: datetime.now().second >= 48, 70, "the end of a minute")
        platform.stop()  # the platform is down from here
        before = len(platform.packets())
        agent.kill()
        agent = AgentProcess(path, tmp_path / "agent.log", env).start().wait_running()
        wait_until(lambda: stored(outbox), 100, "a minute record closed while the platform "
                   "is down")
        # older than its first upload could take (1 s x 2): it goes out marked re-sent
        wait_until(lambda: time.time() - stored(outbox)[0][2] > 3, 10, "the record to age")
        assert len(platform.packets()) == before
        platform = PlatformUnderTest(tmp_path, port)
        wait_until(lambda: (records := stored(outbox)) and all(d for *_, d in records), 60,
                   "every stored minute record delivered")
        records = stored(outbox)
        received = minute_factors(platform.packets())
        keys = [(stamp, code) for stamp, code, *_ in received]
        assert sorted(keys) == sorted({(start, code) for start, *_ in records
                                       for code in CODES.values()}), (keys, records)
        assert len(keys) == len(set(keys)), "a minute record arrived twice"
        for _, code, rf, items in received:
            assert rf, "a minute record that missed its upload is not marked RF=1"
            assert items["Flag"] == "N"
            assert items["Min"] == items["Avg"] == items["Max"] == VALUES[code], items

        pulled_from = len(platform.packets())
        begin, end = records[0][0], records[-1][0]
        assert platform.platform.send_to_all(
            Command("2051", f"BeginTime={begin},EndTime={end}")) == 1
        wait_until(lambda: any(p["cn"] == "9012" for p in platform.packets()[pulled_from:]),
                   30, "the answer to the history pull")
        answer = platform.packets()[pulled_from:]
        cns = [p["cn"] for p in answer if p["cn"] in ("9011", "2051", "9012")]
        assert cns == ["9011"] + ["2051"] * len(records) + ["9012"], cns
        assert [p["cp"] for p in answer if p["cn"] == "2051"] == [r[1] for r in records]
        assert [p["cp"] for p in answer if p["cn"] == "9012"] == ["ExeRtn=1"]
    finally:
        agent.terminate()
        platform.stop()
        devices.stop()
    log = (tmp_path / "agent.log").read_text()
    assert "Traceback" not in log
    assert "statistics closed" in log
