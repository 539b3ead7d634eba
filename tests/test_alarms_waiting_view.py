"""Alarm events waiting in the outbox show in /status, /metrics and ``edge-agent status``
(issue 17 loose end): with the broker unreachable, a raised alarm's event waits, and the
station must say so. A real agent process, a real pymodbus detector bus; no broker
listens on the station's broker port. Waits are for observable states, never a clock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from edge_agent_drivers.modbus.settings import RegisterKind
from support.alarmstation import H2S, alarm_station, detector_bus
from support.health import scrape, status, status_when_up
from support.station import AgentProcess
from support.waiting import wait_until

from edge_agent.tools.ops.status import live_lines
from edge_agent.tools.sim.broker import free_port


@pytest.mark.real_parts
def test_an_alarm_waiting_for_the_broker_is_counted_in_status_and_metrics(tmp_path: Path):
    bus = detector_bus()
    port = free_port()
    config = alarm_station(tmp_path, free_port(), bus.tcp_port, port)
    agent = AgentProcess(config, tmp_path / "agent.log").start().wait_running()
    try:
        wait_until(lambda: status_when_up(port).get("devices"), 30, "the endpoint")
        bus.set_words(H2S, RegisterKind.HOLDING, 1, [150])  # 15.0 ppm: above high (10)
        wait_until(lambda: (status(port)["outbox"]["alarms"] or 0) >= 1, 30,
                   "the alarm event waiting in the outbox")
        doc = status(port)
        scraped = scrape(port)
        text = subprocess.run([sys.executable, "-m", "edge_agent", "status", str(config)],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "LANG": "C.UTF-8"}).stdout
    finally:
        assert agent.terminate() == 0
        bus.stop()
    assert scraped.value("edge_agent_outbox_alarms") == doc["outbox"]["alarms"] >= 1
    assert scraped.value("edge_agent_alarm_events_not_stored_total") == 0
    assert doc["outbox"]["alarm_events_not_stored_total"] == 0
    backlog = [line for line in text.splitlines() if line.startswith("Backlog:")]
    assert backlog and "alarm event" in backlog[0], text


def test_status_says_how_many_alarm_events_could_not_be_stored():
    """The status lines for a document whose outbox refused alarm events (disk full):
    the count and what still waits in memory."""
    doc = {"v": 1, "source": "agent", "station": "st", "version": "0", "healthy": False,
           "started_at": "2026-01-01T00:00:00.000Z", "taken_at": "2026-01-01T00:01:00.000Z",
           "problems": [], "alarms": [], "devices": [], "store_failures": {"bus": 1},
           "broker": {"host": "b", "port": 1883, "connected": False, "since": None,
                      "last_error": None, "sessions": 0, "connect_failures": 0,
                      "published": 0, "acknowledged": 0, "rejected": 0, "in_flight": 0,
                      "unpublishable_messages": 0, "unpublishable_samples": 0,
                      "overloaded": False, "overload_moved": 0,
                      "ack_latency_median_le_s": None, "last_puback_at": None,
                      "nodes": ["b:1883"], "failovers": 0},
           "outbox": {"path": "o", "error": None, "rows": 0, "samples": 0,
                      "oldest_acquired_at": None, "dropped_total": 0,
                      "dropped_since_start": 0, "bytes_in_use": 0, "set_aside": [],
                      "corrupt_lost_total": 0, "gap_events": 0, "alarms": 0,
                      "alarm_events_not_stored_total": 2,
                      "alarm_events_waiting_to_store": 2},
           "uplinks": []}
    lines = live_lines(doc, "http://127.0.0.1:1", 1767225660.0)
    drops = [line for line in lines if line.startswith("Drops:")]
    assert drops and "alarm events not stored: 2 alarm events (2 still waiting in memory " \
        "to be stored)" in drops[0], lines
