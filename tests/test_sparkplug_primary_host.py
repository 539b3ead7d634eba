"""The primary-host rule of the Sparkplug uplink (docs/sparkplug.md, "When a sample counts
as delivered", rule 3), proven alone: ``edge-agent run`` as a child process, a real
pymodbus simulator, a Mosquitto for the MQTT JSON uplink and one for Sparkplug, and a
primary host (tests/support/sparkplug_recorder.py) whose retained STATE says offline
before the agent starts.

While the host is offline the agent must take nothing off the Sparkplug uplink's queue:
its backlog in ``/status`` only grows, every sample the JSON uplink delivered stays in
the outbox, and the host sees no birth and no data. Once the host's STATE says online,
the births come and every kept sample arrives as historical DDATA, and the outbox lets
go of them. Every wait is for an observable state; nothing is timed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from support.collector import Collector
from support.health import logged_port, status
from support.sparkplug_recorder import Seen, SparkplugRecorder
from support.station import AgentProcess, accepted_seqs
from support.uplinks_station import FAST_MQTT, Ticking, write_uplinks_station
from support.waiting import wait_until

from edge_agent.tools.sim.broker import Mosquitto
from edge_agent.tools.sim.simserver import SimServer, SimUnit

pytestmark = pytest.mark.real_parts

GROUP, EDGE, HOST = "plant", "test-station", "scada-1"
DEVICES = ("dev-1", "dev-2")
ROUNDS = 3  # backlog readings taken while the host is offline


@dataclass
class OfflineRun:
    """What the host, the outbox and ``/status`` showed, offline and then online."""

    seen_offline: list[Seen]  # what the host saw up to its online STATE
    backlogs: list[int]  # the Sparkplug uplink's backlog_samples, offline, in order
    in_flight_offline: list[int]
    cutoffs: dict[str, int]  # per device, the last seq the JSON uplink delivered offline
    kept: dict[str, int]  # per device, rows seq <= cutoff still in the outbox, offline
    kept_at: dict[str, set[int]]  # per device, acquired_at (ms) of those samples
    seen: list[Seen]  # everything the host saw
    left_after: int  # rows seq <= cutoff in the outbox once the host was online
    log: str


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _rows_upto(outbox: Path, cutoffs: dict[str, int]) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    try:
        return {device: conn.execute("SELECT COUNT(*) FROM outbox WHERE device_id = ? "
                                     "AND kind = 'sample' AND seq <= ?",
                                     [device, last]).fetchone()[0]
                for device, last in cutoffs.items()}
    finally:
        conn.close()


def _scada(port: int) -> dict:
    return next(u for u in status(port)["uplinks"] if u["name"] == "scada")


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfflineRun]:
    tmp = tmp_path_factory.mktemp("sparkplug-primary-host")
    sim = SimServer([SimUnit(1, holding=Ticking()), SimUnit(2, holding=Ticking())]).start()
    json_broker = Mosquitto(tmp / "json").start()
    sp_broker = Mosquitto(tmp / "sparkplug").start()
    collector = Collector(json_broker.port, session_name="home").start()
    host = SparkplugRecorder(sp_broker.port, HOST, online=False).start()
    host.set_online(False)  # retained before the agent connects: it must wait
    scada = {"kind": "sparkplug", "group_id": GROUP, "edge_node_id": EDGE,
             "primary_host_id": HOST, "host": "127.0.0.1", "port": sp_broker.port,
             **FAST_MQTT}
    path = write_uplinks_station(tmp / "station.yaml", sim, {"scada": scada},
                                 mqtt_port=json_broker.port)
    outbox = tmp / "outbox.sqlite3"
    agent = AgentProcess(path, tmp / "agent.log").start().wait_running()
    try:
        wait_until(lambda: logged_port(agent.log()) is not None, 30, "the health endpoint")
        port = logged_port(agent.log()) or 0
        wait_until(lambda: _scada(port)["connected"], 60,
                   "the Sparkplug uplink connected (and so subscribed to the host's STATE)")
        backlogs, in_flight = [], []
        for _round in range(ROUNDS):
            before = len(collector.seqs("dev-1"))
            collector.wait_for(lambda c, n=before: len(c.seqs("dev-1")) >= n + 10, 60,
                               "the JSON uplink to deliver 10 more samples")
            uplink = _scada(port)
            backlogs.append(uplink["backlog_samples"])
            in_flight.append(uplink["in_flight"])
        cutoffs = {device: max(collector.seqs(device)) for device in DEVICES}
        for device, last in cutoffs.items():  # delivered by JSON: only Sparkplug holds them
            collector.wait_for(lambda c, d=device, n=last: set(c.seqs(d))
                               >= set(range(1, n + 1)), 60, f"JSON {device} 1..{last}")
        kept = _rows_upto(outbox, cutoffs)
        seen_offline = host.messages()
        host.set_online(True)
        wait_until(lambda: {s.device for s in host.messages() if s.kind == "DBIRTH"}
                   >= set(DEVICES), 60, "the births once the host is online")
        kept_at = {device: {_ms(r.sample["acquired_at"])
                            for r in collector.first_deliveries(device)
                            if r.sample["seq"] <= last} for device, last in cutoffs.items()}
        for device, stamps in kept_at.items():
            wait_until(lambda d=device, w=stamps: w <= host.data(d).keys(), 120,
                       f"the host to hold every {device} sample kept while it was offline")
        wait_until(lambda: sum(_rows_upto(outbox, cutoffs).values()) == 0, 60,
                   "the outbox to let go of the delivered samples")
        left = sum(_rows_upto(outbox, cutoffs).values())
        assert set(accepted_seqs(outbox)) == set(DEVICES)
    finally:
        if agent.alive():
            agent.terminate()
        host.stop()
        collector.stop()
        sp_broker.stop()
        json_broker.stop()
        sim.stop()
    yield OfflineRun(seen_offline, backlogs, in_flight, cutoffs, kept, kept_at,
                     host.messages(), left,
                     (tmp / "agent.log").read_text(errors="replace"))


def test_nothing_is_born_or_sent_while_the_primary_host_is_offline(
        offline_run: OfflineRun) -> None:
    """tck-id-message-flow-edge-node-birth-publish-phid-wait: no NBIRTH, DBIRTH or DDATA
    before the host's online STATE (only the recorder's own STATE marks)."""
    assert [s.kind for s in offline_run.seen_offline] == ["STATE"]


def test_the_uplink_takes_nothing_off_its_queue_while_the_primary_host_is_offline(
        offline_run: OfflineRun) -> None:
    """Its backlog only grows, nothing is in flight, and every sample the JSON uplink
    delivered is still in the outbox, held for the Sparkplug uplink alone."""
    backlogs = offline_run.backlogs
    assert all(b > a for a, b in zip(backlogs, backlogs[1:], strict=False)), backlogs
    assert offline_run.in_flight_offline == [0] * ROUNDS
    assert offline_run.kept == offline_run.cutoffs


def test_samples_kept_while_the_host_was_offline_arrive_as_historical_once_it_is_online(
        offline_run: OfflineRun) -> None:
    seen = offline_run.seen
    online = next(i for i, s in enumerate(seen) if s.kind == "STATE" and s.online)
    kinds = [s.kind for s in seen[online + 1:]]
    assert kinds[:3] == ["NBIRTH", "DBIRTH", "DBIRTH"], kinds[:5]
    for device, stamps in offline_run.kept_at.items():
        kept = [m for s in seen if s.kind == "DDATA" and s.device == device
                for m in s.metrics if m.name == "value" and m.timestamp_ms in stamps]
        assert {m.timestamp_ms for m in kept} == stamps
        assert all(m.historical for m in kept), f"{device}: a kept sample came as live"
    assert offline_run.left_after == 0
    assert "Traceback" not in offline_run.log
