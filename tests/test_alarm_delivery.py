"""Alarm events reach the platform like data and ahead of it (issue 17 item 3), with real
parts: a pymodbus instrument, a real Mosquitto and subscriber, the agent in process or
as a real process that is SIGKILLed.

* an alarm raised during a broker outage arrives before every sample queued with it;
* across SIGKILLs at arbitrary moments, an alarm row never exists without its sample
  nor a sample without the alarm rows it caused (replayed through a fresh engine);
* an active alarm is not raised twice after a SIGKILL, and its clear still comes.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from edge_agent_drivers.modbus.settings import RegisterKind
from support.collector import Collector
from support.station import AgentProcess, accepted_seqs, write_station
from support.waiting import wait_until

from edge_agent.agent import Agent
from edge_agent.alarms.engine import AlarmEngine
from edge_agent.alarms.events import AlarmEvent
from edge_agent.alarms.rules import ChannelAlarms, LimitRule, RuleKind
from edge_agent.config.loader import load_config
from edge_agent.model import Quality, Reading, Sample
from edge_agent.tools.sim.broker import Mosquitto, free_port
from edge_agent.tools.sim.simserver import SimServer, SimUnit

HOLDING = RegisterKind.HOLDING
LOW, HIGH = 50, 150  # raw values below and above the limit (100, deadband 10)
RULES = {"dev-1": (ChannelAlarms("value", (LimitRule(RuleKind.HIGH, 100, deadband=10),)),)}


@pytest.fixture
def instrument() -> Iterator[SimServer]:
    server = SimServer([SimUnit(1, holding={0: LOW})], tcp_port=0).start()
    yield server
    server.stop()


def station(tmp_path: Path, broker_port: int, server: SimServer) -> Path:
    return write_station(
        tmp_path / "station.yaml", broker_port=broker_port,
        links={"gw": {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port,
                      "timeout_ms": 300}},
        devices=[{"id": "dev-1", "link": "gw", "unit_id": 1, "interval_s": 0.05,
                  "channels": [{"name": "value", "address": 0, "type": "uint16"}],
                  "alarms": {"value": {"high": {"limit": 100, "deadband": 10}}}}])


def outbox_rows(path: Path, sql: str, args: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(path, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


@pytest.mark.real_parts
def test_alarm_reaches_the_platform_before_the_samples_queued_with_it(
        tmp_path: Path, broker: Mosquitto, collector: Collector,
        instrument: SimServer) -> None:
    config = load_config(station(tmp_path, broker.port, instrument))
    store = config.store.path
    agent = Agent(config)
    agent.start()
    try:
        collector.wait_for(lambda c: len(c.seqs("dev-1")) >= 3, 30, "live data")
        broker.stop()
        outage_first = accepted_seqs(store)["dev-1"] + 1
        wait_until(lambda: accepted_seqs(store)["dev-1"] >= outage_first + 20, 30,
                   "20 samples queued during the outage")
        instrument.set_words(1, HOLDING, 0, [HIGH])
        wait_until(lambda: outbox_rows(store, "SELECT id FROM outbox WHERE kind = 'alarm'"),
                   30, "the alarm committed")
        queued = accepted_seqs(store)["dev-1"]
        wait_until(lambda: accepted_seqs(store)["dev-1"] >= queued + 5, 30,
                   "live samples queued after the alarm")
        broker.start()
        collector.wait_for(lambda c: c.alarms, 60, "the alarm")
        last = accepted_seqs(store)["dev-1"]
        collector.wait_for(lambda c: c.has_seqs("dev-1", last), 60, "every sample")
    finally:
        agent.stop()
    (alarm,) = collector.alarms
    assert (alarm["event"], alarm["alarm"], alarm["value"]) == ("raised", "dev-1/value/high",
                                                                HIGH)
    assert alarm["topic"] == "edge/test-station/alarms/dev-1"
    assert alarm["msg_id"] == alarm["id"]
    alarm_at = collector.order.index(("alarm", "dev-1", ()))
    queued_with_it = [at for at, (kind, _, seqs) in enumerate(collector.order)
                      if kind == "data" and any(seq >= outage_first for seq in seqs)]
    assert queued_with_it and min(queued_with_it) > alarm_at


def replay(samples: list[tuple]) -> list[tuple[str, float]]:
    """The (event, acquired_at) a fresh engine gives for the stored samples, in order."""
    engine = AlarmEngine(RULES, _Discard())
    events = []
    for _, acquired_at, body in samples:
        value = json.loads(body)["values"]["value"]["value"]
        at = datetime.fromtimestamp(acquired_at, UTC)
        sample = Sample("dev-1", at, (Reading("dev-1", "value", value, "", Quality.GOOD, at),))
        events += [(e.kind.value, acquired_at) for e in engine.decide("dev-1", sample, True,
                                                                        False)]
    return events


class _Discard:
    def emit(self, events: list[AlarmEvent]) -> None:
        del events


@pytest.mark.real_parts
def test_alarm_rows_never_exist_without_their_sample_across_sigkills(
        tmp_path: Path, instrument: SimServer) -> None:
    """No broker (nothing is delivered, every row stays); the value crosses the limit
    every few polls; the agent is SIGKILLed six times at random points. Every alarm row
    follows its sample in the same commit, and a fresh engine fed the stored samples
    gives exactly the stored events: none missing, none extra."""
    path = station(tmp_path, free_port(), instrument)
    store = tmp_path / "outbox.sqlite3"
    flipping = threading.Event()

    def flip() -> None:
        high = False
        while not flipping.wait(0.03):
            high = not high
            instrument.set_words(1, HOLDING, 0, [HIGH if high else LOW])

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    rng = random.Random(17)
    try:
        for run in range(6):
            agent = AgentProcess(path, tmp_path / f"agent-{run}.log").start().wait_running()
            until = accepted_seqs(store).get("dev-1", 0) + rng.randint(2, 12)
            wait_until(lambda n=until: accepted_seqs(store).get("dev-1", 0) >= n, 30,
                       "samples")
            agent.kill()
    finally:
        flipping.set()
        flipper.join()
    rows = outbox_rows(store, "SELECT id, kind, acquired_at, body FROM outbox "
                              "WHERE device_id = 'dev-1' ORDER BY id")
    samples = [(row[0], row[2], row[3]) for row in rows if row[1] == "sample"]
    alarms = [(row[0], row[2], json.loads(row[3])) for row in rows if row[1] == "alarm"]
    by_id = {row[0]: row for row in rows}
    assert len(alarms) >= 4, "the value did not cross the limit often enough"
    for row_id, acquired_at, _ in alarms:
        before = by_id.get(row_id - 1)
        assert before is not None and before[1] == "sample" and before[2] == acquired_at
    assert [(event["event"], at) for _, at, event in alarms] == replay(samples)


@pytest.mark.real_parts
def test_active_alarm_is_not_raised_twice_after_sigkill_and_its_clear_still_comes(
        tmp_path: Path, broker: Mosquitto, collector: Collector,
        instrument: SimServer) -> None:
    path = station(tmp_path, broker.port, instrument)
    agent = AgentProcess(path, tmp_path / "agent-1.log").start().wait_running()
    try:
        instrument.set_words(1, HOLDING, 0, [HIGH])
        collector.wait_for(lambda c: c.alarms, 30, "the alarm raised")
        agent.kill()
        before_restart = accepted_seqs(tmp_path / "outbox.sqlite3")["dev-1"]
        agent = AgentProcess(path, tmp_path / "agent-2.log").start().wait_running()
        assert "1 alarm(s) active since before the restart" in agent.log()
        collector.wait_for(lambda c: c.has_seqs("dev-1", before_restart + 10), 30,
                           "samples of the second run above the limit")
        instrument.set_words(1, HOLDING, 0, [LOW])
        collector.wait_for(lambda c: any(a["event"] == "cleared" for a in c.alarms), 30,
                           "the clear")
    finally:
        assert agent.terminate() == 0
    events = {alarm["id"]: alarm for alarm in collector.alarms}  # the platform's dedup
    assert sorted((a["event"], a["alarm"]) for a in events.values()) == [
        ("cleared", "dev-1/value/high"), ("raised", "dev-1/value/high")]
    assert "alarm raised" not in agent.log()


@pytest.mark.real_parts
def test_each_uplink_gets_every_alarm_and_the_row_leaves_after_both(
        tmp_path: Path, broker: Mosquitto, collector: Collector,
        instrument: SimServer) -> None:
    """Two platforms (the ``mqtt:`` section and a named uplink, each its own Mosquitto):
    both receive the raise and the clear with the same ids; the rows leave the outbox
    once both brokers have acknowledged them."""
    path = station(tmp_path, broker.port, instrument)
    doc = json.loads(path.read_text())
    second = Mosquitto(tmp_path / "province").start()
    doc["uplinks"] = {"province": {
        "host": "127.0.0.1", "port": second.port, "client_id": "agent-province",
        "keepalive_s": 5, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}}
    path.write_text(json.dumps(doc))
    province = Collector(second.port, "province-collector").start()
    agent = Agent(load_config(path))
    agent.start()
    try:
        instrument.set_words(1, HOLDING, 0, [HIGH])
        for platform in (collector, province):
            platform.wait_for(lambda c: len(c.alarms) >= 1, 30, "the raise")
        instrument.set_words(1, HOLDING, 0, [LOW])
        for platform in (collector, province):
            platform.wait_for(lambda c: len(c.alarms) >= 2, 30, "the clear")
        wait_until(lambda: not outbox_rows(tmp_path / "outbox.sqlite3", "SELECT id FROM "
                                           "outbox WHERE kind = 'alarm'"), 30,
                   "alarm rows deleted after both acknowledgements")
    finally:
        agent.stop()
        province.stop()
        second.stop()
    assert [(a["id"], a["event"]) for a in collector.alarms] \
        == [(a["id"], a["event"]) for a in province.alarms]
    assert [a["event"] for a in collector.alarms] == ["raised", "cleared"]
