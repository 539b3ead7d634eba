"""Two HJ 212 platforms through an outage and a SIGKILL (issue 13 item 6): ``edge-agent
run`` as a child process, two simulated devices (pymodbus), a real Mosquitto for the
``mqtt:`` uplink, an HJ 212-2017 platform and an HJ 212-2025 platform (SM4, heartbeat)
behind a relay, both asking for acknowledgements, ``minute_interval_min: 1``.

The outage: the 2017 platform goes down (listener closed: connections refused) and the
2025 link black-holes (the relay reads and discards both directions, connections stay
open) at the same moment, across a minute boundary; the agent is SIGKILLed and restarted
in the middle of it. Then both come back.

Proves, from one agent run: MQTT kept delivering while both platforms were down (the MQTT
uplink never waits for them); each platform then holds every minute record the station
closed (by code and DataTime), every copy of a record identical and equal to the stored
record, with the simulated value as Min/Avg/Max; duplicates of a minute record are
counted and shown (HJ 212 is at-least-once on the wire: a record whose 9014 was lost is
sent again, and platforms deduplicate by MN + CN + DataTime, docs/hj212.md "What
delivered means"); every real-time sample reached both platforms at least once; re-sent
data is marked ``RF=1`` under 2025 and never under 2017. About 1.5 to 2.5 real minutes;
every wait is for an observable state.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from support.collector import Collector
from support.discardrelay import DiscardingRelay
from support.hj212platforms import PlatformUnderTest
from support.station import AgentProcess, accepted_seqs
from support.uplinks_station import write_uplinks_station
from support.waiting import wait_until

from edge_agent.tools.sim.broker import Mosquitto
from edge_agent.tools.sim.simserver import SimServer, SimUnit

pytestmark = pytest.mark.real_parts

CODES = {"dev-1": "a21028", "dev-2": "a21022"}  # H2S, Cl2
VALUES = {"a21028": "11", "a21022": "22"}  # the simulators' constant registers
KEY = b"0" * 16
STATION_TZ = "Asia/Shanghai"
ENV = {"P17_PW": "123456", "P25_PW": "654321", "P25_SM4": KEY.hex(), "TZ": STATION_TZ}
MN = {"p2017": "LD130133000015", "p2025": "010000A8900016F000169DC0"}


def station(tmp_path: Path, server: SimServer, mqtt_port: int, port_2017: int,
            port_2025: int) -> Path:
    """Two devices polled every second, ``mqtt:`` and the platforms ``p2017``, ``p2025``."""
    common = {"kind": "hj212", "host": "127.0.0.1", "st": "22", "timeout_s": 1,
              "retries": 1, "minute_interval_min": 1, "hourly": False, "daily": False,
              "channels": [{"device": device, "channel": "value", "code": code}
                           for device, code in CODES.items()]}
    uplinks = {
        "p2017": {**common, "port": port_2017, "mn": MN["p2017"], "password_env": "P17_PW",
                  "version": 2017},
        "p2025": {**common, "port": port_2025, "mn": MN["p2025"], "password_env": "P25_PW",
                  "version": 2025, "sm4_key_env": "P25_SM4", "heartbeat_s": 2},
    }
    path = write_uplinks_station(tmp_path / "station.yaml", server, uplinks,
                                 mqtt_port=mqtt_port, interval_s=1.0)
    return path


def data_time(acquired_at: str) -> str:
    """The DataTime a platform must see for an MQTT sample's ``acquired_at``."""
    moment = datetime.fromisoformat(acquired_at.replace("Z", "+00:00"))
    return moment.astimezone(ZoneInfo(STATION_TZ)).strftime("%Y%m%d%H%M%S")


def minute_records(outbox: Path) -> dict[str, list[tuple[str, str, float, bool]]]:
    """Per uplink: (DataTime, CP, closed at, delivered) of its stored minute records."""
    found: dict[str, list[tuple[str, str, float, bool]]] = defaultdict(list)
    if not outbox.exists():
        return found
    conn = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT uplink, period_start, cp, closed_at, delivered_at "
                            "FROM hj212_stats WHERE cn = '2051' ORDER BY period_start")
        for uplink, start, cp, closed, delivered in rows:
            found[uplink].append((start, cp, closed, delivered is not None))
    except sqlite3.OperationalError:  # not created yet
        pass
    finally:
        conn.close()
    return found


def test_two_platforms_closed_and_black_holed_across_a_sigkill_get_everything(tmp_path):
    devices = SimServer([SimUnit(1, holding={0: 11}), SimUnit(2, holding={0: 22})]).start()
    broker = Mosquitto(tmp_path / "broker").start()
    collector = Collector(broker.port, session_name="home").start()
    platforms = {"p2017": PlatformUnderTest(tmp_path / "p2017.jsonl"),
                 "p2025": PlatformUnderTest(tmp_path / "p2025.jsonl", sm4_key=KEY)}
    relay = DiscardingRelay(platforms["p2025"].port).start()
    path = station(tmp_path, devices, broker.port, platforms["p2017"].port, relay.port)
    outbox = tmp_path / "outbox.sqlite3"
    agent = AgentProcess(path, tmp_path / "agent.log", ENV).start().wait_running()
    try:
        for name, platform in platforms.items():
            wait_until(lambda p=platform: {c for _, c, *_ in p.factors("2011")}
                       == set(CODES.values()), 60, f"2011 packets of both devices at {name}")
        # down in the second half of a minute: that minute's record closes in the outage
        wait_until(lambda: 35 <= datetime.now().second < 50, 70, "the middle of a minute")
        outage_start = datetime.now().timestamp()
        platforms["p2017"].stop()
        relay.discard()
        seen = len(collector.seqs("dev-1"))
        collector.wait_for(lambda c: len(c.seqs("dev-1")) >= seen + 4, 60,
                           "MQTT to keep delivering while both platforms are down")
        agent.kill()  # SIGKILL in the middle of the outage
        agent = AgentProcess(path, tmp_path / "agent.log", ENV).start().wait_running()
        seen = len(collector.seqs("dev-1"))
        collector.wait_for(lambda c: len(c.seqs("dev-1")) >= seen + 3, 60,
                           "MQTT delivering after the restart, both platforms still down")
        wait_until(lambda: all(any(closed > outage_start for _, _, closed, _ in
                                   minute_records(outbox)[name]) for name in platforms),
                   90, "a minute record of each platform closed during the outage")
        # older than its first upload could take (1 s x 2): it missed its upload (RF=1)
        wait_until(lambda: time.time() - max(closed for _, _, closed, _ in
                                             minute_records(outbox)["p2025"]) > 3, 10,
                   "the closed record to age past its first upload")
        received_in_outage = {name: len(p.events("packet")) for name, p in platforms.items()}
        thawed_at = accepted_seqs(outbox)
        stopped = platforms["p2017"]
        platforms["p2017"] = stopped.restarted()
        stopped.close_log()
        relay.restore()

        for name, platform in platforms.items():
            for device, last in thawed_at.items():
                wanted = {(CODES[device], data_time(r.sample["acquired_at"]))
                          for r in collector.first_deliveries(device)
                          if r.sample["seq"] <= last}
                assert len(wanted) >= 10
                wait_until(lambda w=wanted, p=platform: w <= {(c, t) for t, c, *_ in
                                                             p.factors("2011")},
                           120, f"{name} to hold every {device} sample up to {last}")
            wait_until(lambda n=name: all(d for *_, d in minute_records(outbox)[n]), 60,
                       f"every minute record of {name} delivered")
    finally:
        agent.terminate()
        relay.stop()
        collector.stop()
        for platform in platforms.values():
            platform.stop()
            platform.close_log()
        broker.stop()
        devices.stop()

    duplicates = {}
    stored = minute_records(outbox)
    for name, platform in platforms.items():
        assert received_in_outage[name] <= len(platform.events("packet"))
        records = stored[name]
        assert any(closed > outage_start for _, _, closed, _ in records)
        minute = platform.factors("2051")
        copies = Counter((stamp, code) for stamp, code, *_ in minute)
        assert set(copies) == {(start, code) for start, *_ in records
                               for code in CODES.values()}, (name, sorted(copies), records)
        duplicates[name] = sum(count - 1 for count in copies.values())
        for stamp, code, _, items in minute:
            assert items == {"Min": VALUES[code], "Avg": VALUES[code], "Max": VALUES[code],
                             "Flag": "N"}, (name, stamp, code, items)
        # every copy of a record is the stored record, byte for byte
        by_stamp = {start: cp for start, cp, *_ in records}
        for packet in platform.packets("2051"):
            stamp = packet["cp"].split(";", 1)[0].removeprefix("DataTime=")
            assert packet["cp"] == by_stamp[stamp], (name, packet["cp"])
        assert not platform.events("rejected"), platform.events("rejected")[:1]
        for packet in platform.events("packet"):
            assert packet["mn"] == MN[name] and packet["version"] == name[1:]
    rf_2025 = [packet for packet in platforms["p2025"].events("packet") if packet["rf"]]
    assert {packet["cn"] for packet in rf_2025} >= {"2011", "2051"}, "no RF=1 under 2025"
    assert not [p for p in platforms["p2017"].events("packet") if p["rf"]], "RF=1 under 2017"
    assert all(p["encrypted"] for p in platforms["p2025"].packets("2011"))
    print(f"minute records received twice or more: {duplicates}; bytes discarded by the "
          f"black hole: {relay.discarded_bytes}")
    log = (tmp_path / "agent.log").read_text()
    assert "Traceback" not in log
