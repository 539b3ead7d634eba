"""Log lines name their uplink (issue 12 loose end): with several uplinks a technician
must tell from "connected to broker ..." or "broker connection lost" which one it is.
The ``default`` uplink (a station with only ``mqtt:``) keeps the unprefixed wording.

A real Mosquitto and a real outbox; waits are for observable states, never a clock."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from support.waiting import wait_until

from edge_agent.config.schema import BrokerAddress, MqttConfig, Retention
from edge_agent.forward import brokers
from edge_agent.forward.brokers import BrokerRotation
from edge_agent.forward.forwarder import Forwarder
from edge_agent.forward.uplinklog import uplink_log
from edge_agent.retry import Backoff
from edge_agent.store.outbox import Outbox
from edge_agent.tools.sim.broker import Mosquitto

A, B = BrokerAddress("10.0.0.5", 8883), BrokerAddress("10.0.0.6", 8883)


def rotation(uplink: str) -> BrokerRotation:
    return BrokerRotation((A, B), Backoff(1, 2), uplink_log(brokers.log, uplink))


def test_failover_lines_of_a_named_uplink_name_it(caplog):
    caplog.set_level(logging.INFO, logger="edge_agent.forward.brokers")
    moves = rotation("provincial")
    moves.log_connected(None)
    moves.log_leaving("connection lost")
    moves.moved(failed=False)
    moves.log_connected(A)
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "uplink provincial: connected to broker 10.0.0.5:8883 (node 1 of 2)",
        "uplink provincial: failover: leaving broker node 10.0.0.5:8883 (connection lost); "
        "connecting to 10.0.0.6:8883 next",
        "uplink provincial: failover: connected to broker 10.0.0.6:8883 (node 2 of 2), "
        "was on 10.0.0.5:8883",
    ]


def test_the_default_uplink_keeps_todays_wording(caplog):
    caplog.set_level(logging.INFO, logger="edge_agent.forward.brokers")
    rotation("default").log_connected(None)
    assert [r.getMessage() for r in caplog.records] == [
        "connected to broker 10.0.0.5:8883 (node 1 of 2)"]


@pytest.mark.real_parts
def test_connected_and_lost_lines_of_a_named_uplink_name_it(tmp_path: Path, caplog):
    caplog.set_level(logging.INFO, logger="edge_agent.forward")
    broker = Mosquitto(tmp_path / "broker").start()
    outbox = Outbox(tmp_path / "o.sqlite3", Retention(None, None, None))
    outbox.set_uplinks({"provincial": None})
    forwarder = Forwarder("st", MqttConfig("127.0.0.1", broker.port, client_id="prov"),
                          outbox, "provincial")
    forwarder.start()
    try:
        wait_until(lambda: forwarder.stats.connected, 30, "the uplink to connect")
        broker.stop()
        wait_until(lambda: "broker connection lost" in caplog.text, 30, "the loss")
    finally:
        forwarder.stop(1)
        outbox.close()
        broker.stop()
    lines = [r.getMessage() for r in caplog.records]
    assert f"uplink provincial: connected to broker 127.0.0.1:{broker.port}" in lines
    lost = [line for line in lines if "broker connection lost" in line]
    assert lost and all(line.startswith("uplink provincial: ") for line in lost)
