"""A reload (SIGHUP, ``systemctl reload``) applies alarm settings without a restart
(issue 17; edge_agent/alarms/changes.py, docs/alarms.md "Changing alarms"), proven with
a real agent process, a pymodbus instrument, a real Mosquitto and its subscriber:

* a changed limit: an active alarm is judged by the new limit on its next sample, never
  raised twice, and its clear comes when the new limit says; a lowered limit raises;
* a removed rule: its active alarm is cleared at once with the reason "rule removed",
  on the alarm topic, the beacon it held goes off and ``alarm_state`` says cleared;
* a removed output (the rule stays): the coil it held is switched off, no alarm event.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from edge_agent_drivers.modbus.settings import RegisterKind
from support.collector import Collector
from support.station import AgentProcess, accepted_seqs, write_station
from support.waiting import wait_until

from edge_agent.tools.sim.broker import Mosquitto
from edge_agent.tools.sim.simserver import SimServer, SimUnit

HOLDING, COIL = RegisterKind.HOLDING, RegisterKind.COIL
BEACON_UNIT = 9  # an output module on the instrument's own link (the poller writes it)


@pytest.fixture
def instrument() -> Iterator[SimServer]:
    server = SimServer([SimUnit(1, holding={0: 50, 1: 0}),
                        SimUnit(BEACON_UNIT, coils={0: False})], tcp_port=0).start()
    yield server
    server.stop()


def station(tmp_path: Path, broker_port: int, server: SimServer, *,
            value_rules: dict | None, beacon: bool = True) -> Path:
    """dev-1 with channels ``value`` (rules ``value_rules``; None: none) and ``other``
    (high 100, kept throughout), and the beacon output when ``beacon``."""
    path = write_station(
        tmp_path / "station.yaml", broker_port=broker_port,
        links={"gw": {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port,
                      "timeout_ms": 300}},
        devices=[{"id": "dev-1", "link": "gw", "unit_id": 1, "interval_s": 0.05,
                  "channels": [{"name": "value", "address": 0, "type": "uint16"},
                               {"name": "other", "address": 1, "type": "uint16"}],
                  "alarms": {"other": {"high": 100},
                             **({"value": value_rules} if value_rules else {})}}])
    doc = json.loads(path.read_text())
    doc["alarms"] = {"actions": [{"name": "beacon", "link": "gw", "unit_id": BEACON_UNIT,
                                  "coil": 0}] if beacon else []}
    path.write_text(json.dumps(doc, indent=2))
    return path


def reload(agent: AgentProcess, path: Path) -> str:
    """SIGHUP, then wait for the agent's line saying what the reload applied."""
    before = agent.log().count(f"reload of {path}: ")
    agent.reload()
    wait_until(lambda: agent.log().count(f"reload of {path}: ") > before, 30,
               "the reload applied")
    return agent.log().split(f"reload of {path}: ")[-1].splitlines()[0]


def events(collector: Collector, alarm: str = "dev-1/value/high") -> list[str]:
    """The events of ``alarm`` the platform received, de-duplicated by id, in order."""
    seen: dict[str, str] = {}
    for event in collector.alarms:
        if event["alarm"] == alarm:
            seen.setdefault(event["id"], event["event"])
    return list(seen.values())


def saved_state(outbox: Path, alarm: str) -> dict:
    """The last event of ``alarm`` (device/channel/group) in the outbox's alarm_state."""
    conn = sqlite3.connect(outbox, timeout=10)
    try:
        (row,) = conn.execute("SELECT event FROM alarm_state WHERE device_id = ? AND "
                              "channel = ? AND alarm_group = ?", alarm.split("/")).fetchall()
    finally:
        conn.close()
    return json.loads(row[0])


@pytest.mark.real_parts
def test_sighup_with_a_changed_limit_clears_and_raises_as_the_new_limit_says(
        tmp_path: Path, broker: Mosquitto, collector: Collector,
        instrument: SimServer) -> None:
    rules = {"high": {"limit": 100, "deadband": 10}}
    path = station(tmp_path, broker.port, instrument, value_rules=rules)
    outbox = tmp_path / "outbox.sqlite3"
    agent = AgentProcess(path, tmp_path / "agent.log").start().wait_running()
    try:
        instrument.set_words(1, HOLDING, 0, [150])
        collector.wait_for(lambda c: events(c) == ["raised"], 30, "the alarm raised")
        station(tmp_path, broker.port, instrument,
                value_rules={"high": {"limit": 120, "deadband": 10}})
        assert "alarm rules changed on dev-1" in reload(agent, path)
        seq = accepted_seqs(outbox)["dev-1"]
        collector.wait_for(lambda c: c.has_seqs("dev-1", seq + 10), 30,
                           "samples judged by the new limit")
        assert events(collector) == ["raised"]  # 150 is above 120 too: not raised again
        instrument.set_words(1, HOLDING, 0, [105])  # above 100 - 10, below 120 - 10
        collector.wait_for(lambda c: events(c) == ["raised", "cleared"], 30,
                           "the clear the new limit calls for")
        station(tmp_path, broker.port, instrument,
                value_rules={"high": {"limit": 60, "deadband": 10}})
        reload(agent, path)
        collector.wait_for(lambda c: events(c) == ["raised", "cleared", "raised"], 30,
                           "the raise the lowered limit calls for")
    finally:
        assert agent.terminate() == 0
    raised = [e for e in collector.alarms if e["alarm"] == "dev-1/value/high"
              and e["event"] == "raised"]
    assert [e["threshold"] for e in raised] == [100, 60]
    assert saved_state(outbox, "dev-1/value/high")["event"] == "raised"
    assert "refused" not in agent.log()


@pytest.mark.real_parts
def test_sighup_removing_a_rule_clears_its_active_alarm_saying_why(
        tmp_path: Path, broker: Mosquitto, collector: Collector,
        instrument: SimServer) -> None:
    path = station(tmp_path, broker.port, instrument, value_rules={"high": 100})
    outbox = tmp_path / "outbox.sqlite3"
    beacon = lambda: instrument.get_bits(BEACON_UNIT, COIL, 0)[0]  # noqa: E731
    agent = AgentProcess(path, tmp_path / "agent.log").start().wait_running()
    try:
        instrument.set_words(1, HOLDING, 0, [150])
        collector.wait_for(lambda c: events(c) == ["raised"], 30, "the alarm raised")
        wait_until(beacon, 30, "the beacon ON")
        station(tmp_path, broker.port, instrument, value_rules=None)
        assert "alarm rules changed on dev-1" in reload(agent, path)
        collector.wait_for(lambda c: events(c) == ["raised", "cleared"], 30,
                           "the clear of the removed rule")
        wait_until(lambda: not beacon(), 30, "the beacon OFF")
        seq = accepted_seqs(outbox)["dev-1"]
        collector.wait_for(lambda c: c.has_seqs("dev-1", seq + 5), 30, "polling goes on")
    finally:
        assert agent.terminate() == 0
    (cleared,) = [e for e in collector.alarms if e["event"] == "cleared"]
    assert cleared["topic"] == "edge/test-station/alarms/dev-1"
    assert (cleared["reason"], cleared["level"], cleared["value"]) == ("rule removed", 0, None)
    assert saved_state(outbox, "dev-1/value/high")["id"] == cleared["id"]
    assert "alarm cleared: dev-1/value/high high level 0" in agent.log()
    assert events(collector) == ["raised", "cleared"]  # the 150s after it raise nothing


@pytest.mark.real_parts
def test_sighup_removing_an_output_switches_off_the_coil_it_held(
        tmp_path: Path, broker: Mosquitto, collector: Collector,
        instrument: SimServer) -> None:
    path = station(tmp_path, broker.port, instrument, value_rules={"high": 100})
    beacon = lambda: instrument.get_bits(BEACON_UNIT, COIL, 0)[0]  # noqa: E731
    agent = AgentProcess(path, tmp_path / "agent.log").start().wait_running()
    try:
        instrument.set_words(1, HOLDING, 0, [150])
        wait_until(beacon, 30, "the beacon ON")
        station(tmp_path, broker.port, instrument, value_rules={"high": 100}, beacon=False)
        assert "alarm outputs rebuilt: beacon" in reload(agent, path)
        wait_until(lambda: not beacon(), 30, "the removed beacon switched OFF")
        instrument.set_words(1, HOLDING, 0, [50])
        collector.wait_for(lambda c: events(c) == ["raised", "cleared"], 30, "the clear")
    finally:
        assert agent.terminate() == 0
    assert not beacon()
    assert events(collector) == ["raised", "cleared"]


@pytest.mark.real_parts
def test_sighup_adding_the_first_alarm_rules_starts_judging_at_once(
        tmp_path: Path, broker: Mosquitto, collector: Collector,
        instrument: SimServer) -> None:
    """A station without any alarm gets its first rule by a reload: the pollers are
    restarted with the engine's hook, and the value already above the limit raises."""
    path = station(tmp_path, broker.port, instrument, value_rules=None)
    doc = json.loads(path.read_text())
    del doc["alarms"], doc["devices"][0]["alarms"]
    path.write_text(json.dumps(doc))
    instrument.set_words(1, HOLDING, 0, [150])
    agent = AgentProcess(path, tmp_path / "agent.log").start().wait_running()
    try:
        # "running" is logged before the first poll has committed: wait for a sample.
        wait_until(lambda: "dev-1" in accepted_seqs(tmp_path / "outbox.sqlite3"), 30,
                   "the first sample stored")
        seq = accepted_seqs(tmp_path / "outbox.sqlite3")["dev-1"]
        collector.wait_for(lambda c: c.has_seqs("dev-1", seq + 3), 30, "samples, no alarm")
        station(tmp_path, broker.port, instrument, value_rules={"high": 100}, beacon=False)
        applied = reload(agent, path)
        assert "alarms switched on" in applied and "pollers restarted: gw" in applied
        collector.wait_for(lambda c: events(c) == ["raised"], 30, "the alarm raised")
    finally:
        assert agent.terminate() == 0
    assert events(collector) == ["raised"]
