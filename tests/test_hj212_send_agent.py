"""The real-time interval end to end: ``edge-agent run`` as a child process polling a
real pymodbus-backed simulator every second, a real Mosquitto for the ``mqtt:`` uplink,
and the platform simulator for an HJ 212 platform with ``realtime_interval_s: 30``.

Proves: the MQTT uplink gets every sample while the platform gets one 2011 per device
per 30 s interval, each the first sample of its interval (after the first one of the
run), and the samples not sent leave the outbox all the same. Every wait is for an
observable state; the test takes 30 to 60 s of wall time (one whole interval and parts
of two).
"""

from __future__ import annotations

import io
import json
import threading
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from support.collector import Collector
from support.station import AgentProcess, accepted_seqs, samples_left
from support.uplinks_station import write_uplinks_station
from support.waiting import wait_until

from edge_agent.hj212.cp import parse_region
from edge_agent.hj212.rtd_schedule import slot_of
from edge_agent.tools.hj212platform.log import PlatformLog
from edge_agent.tools.hj212platform.server import Behaviour, Platform
from edge_agent.tools.sim.broker import Mosquitto
from edge_agent.tools.sim.simserver import SimServer, SimUnit

pytestmark = pytest.mark.real_parts

MN = "010000A8900016F000169DC0"
CODES = {"dev-1": "a21028", "dev-2": "a21022"}
STATION_TZ = "Asia/Shanghai"
INTERVAL_S = 30


def local(acquired_at: str) -> datetime:
    """The local (China) time of an MQTT sample's ``acquired_at``, naive, as HJ 212."""
    moment = datetime.fromisoformat(acquired_at.replace("Z", "+00:00"))
    return moment.astimezone(ZoneInfo(STATION_TZ)).replace(tzinfo=None)


def platform_times(jsonl: Path, code: str) -> list[datetime]:
    """The DataTime of every 2011 carrying ``code``, in arrival order."""
    if not jsonl.exists():
        return []
    found = []
    for line in jsonl.read_text("utf-8").splitlines():
        event = json.loads(line) if line.endswith("}") else {}
        if event.get("event") == "packet" and event["cn"] == "2011" \
                and f"{code}-Rtd=" in event["cp"]:
            stamp = parse_region(event["cp"]).get("DataTime") or ""
            found.append(datetime.strptime(stamp, "%Y%m%d%H%M%S"))
    return found


def test_one_2011_per_interval_while_mqtt_gets_every_sample(tmp_path):
    devices = SimServer([SimUnit(1, holding={0: 11}), SimUnit(2, holding={0: 22})]).start()
    broker = Mosquitto(tmp_path / "broker").start()
    jsonl = tmp_path / "platform.jsonl"
    log = PlatformLog(io.StringIO(), jsonl)
    platform = Platform("127.0.0.1", 0, Behaviour(), log)
    threading.Thread(target=platform.server.serve_forever, daemon=True).start()
    collector = Collector(broker.port, session_name="home").start()
    prov = {"kind": "hj212", "host": "127.0.0.1", "port": platform.port, "mn": MN,
            "st": "22", "password_env": "PROV_PW", "version": 2025, "encrypt": False,
            "timeout_s": 1, "retries": 1, "heartbeat_s": 0,
            "realtime_interval_s": INTERVAL_S,
            "channels": [{"device": device, "channel": "value", "code": code}
                         for device, code in CODES.items()]}
    path = write_uplinks_station(tmp_path / "station.yaml", devices, {"prov": prov},
                                 mqtt_port=broker.port, interval_s=1.0)
    agent = AgentProcess(path, tmp_path / "agent.log",
                         {"PROV_PW": "123456", "TZ": STATION_TZ}).start().wait_running()
    try:
        # the second packet opens an interval, the third the next: one whole interval
        wait_until(lambda: all(len(platform_times(jsonl, code)) >= 3
                               for code in CODES.values()), 120,
                   "three real-time packets of each device")
        outbox = tmp_path / "outbox.sqlite3"
        for device, last in accepted_seqs(outbox).items():
            wait_until(lambda d=device, n=last: samples_left(outbox, d, n) == 0, 60,
                       f"{device} 1..{last}, sent or not, to leave the outbox")
        agent.terminate()
        for device, code in CODES.items():
            sent = platform_times(jsonl, code)
            every = sorted(local(r.sample["acquired_at"])
                           for r in collector.first_deliveries(device))
            assert len(every) > len(sent) + 20, (device, len(every), len(sent))
            slots = [slot_of(moment, INTERVAL_S) for moment in sent]
            assert len(set(slots)) == len(slots), f"{device}: two 2011 in one interval"
            for moment in sent[1:]:  # the run's first sample goes whatever its place
                first = min(m for m in every
                            if slot_of(m, INTERVAL_S) == slot_of(moment, INTERVAL_S))
                assert moment == first.replace(microsecond=0), (device, moment, first)
    finally:
        agent.terminate()
        collector.stop()
        platform.server.shutdown()
        platform.server.server_close()
        log.close()
        broker.stop()
        devices.stop()
    assert "Traceback" not in (tmp_path / "agent.log").read_text()
