"""What the poller keeps for the people who look: each device's last sample and the wire
counts of its own exchanges, checked against what a real pymodbus simulator received, and
the reason a TCP connection failed in the OS's words.

The poller's ``_poll`` runs in the test's thread against a real simulator and a real
outbox, so the counts can be compared with the simulator's own log of requests."""

from __future__ import annotations

import socket

from support.health import detector_server, detectors
from support.station import write_station

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.health.snapshot import take_snapshot
from edge_agent.link_clients import open_link_client
from edge_agent.model import Quality
from edge_agent.tools.sim.broker import free_port


def test_each_device_keeps_its_last_sample_and_the_wire_counts_of_its_own_exchanges(
        tmp_path):
    server = detector_server()  # unit 1: 5, hole, 7; unit 2 muted
    links, devices = detectors(server.tcp_port)
    path = write_station(tmp_path / "station.yaml", broker_port=free_port(), links=links,
                         devices=devices)
    agent = Agent(load_config(path, env={}))
    try:
        poller = agent.pollers[0]
        client = open_link_client(poller.link)
        ok, mute = poller.devices
        for _ in range(2):
            poller._poll(client, ok)
            poller._poll(client, mute)
        client.close()
        snapshot = take_snapshot(agent.health_view(), 0.0, 0)
    finally:
        agent.stop()
        server.stop()

    served = [request.unit_id for request in server.requests]
    assert ok.exchanges.requests == ok.exchanges.answers == served.count(1)
    assert ok.exchanges.timeouts == 0
    # the merged read and then channel b alone answered exception 02, once per poll after
    assert ok.exchanges.exceptions >= 2
    assert mute.exchanges.requests == mute.exchanges.timeouts == served.count(2) == 2
    assert mute.exchanges.answers == mute.exchanges.exceptions == 0

    values = {r.channel: (r.value, r.quality, r.reason) for r in ok.last_sample.readings}
    assert values == {"a": (5, Quality.GOOD, None), "b": (None, Quality.BAD, "exception_02"),
                      "c": (7, Quality.GOOD, None)}
    assert [(r.value, r.quality, r.reason) for r in mute.last_sample.readings] == [
        (None, Quality.BAD, "timeout")]

    views = {device.id: device for device in snapshot.devices}
    assert views["det-ok"].counters["split_reads"] == ok.driver.split_reads >= 1
    assert views["det-mute"].counters == {"requests": 2, "answers": 0, "timeouts": 2,
                                          "exceptions": 0, "split_reads": 0}
    assert [(v.channel, v.value, v.quality) for v in views["det-ok"].values] == [
        ("a", 5, "GOOD"), ("b", None, "BAD"), ("c", 7, "GOOD")]


def test_a_refused_tcp_connection_says_connection_refused(tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: the kernel refuses
    links, devices = detectors(port)
    path = write_station(tmp_path / "station.yaml", broker_port=free_port(), links=links,
                         devices=devices[:1])
    agent = Agent(load_config(path, env={}))
    try:
        poller = agent.pollers[0]
        client = open_link_client(poller.link)
        state = poller.devices[0]
        poller._poll(client, state)
        client.close()
    finally:
        agent.stop()
    assert state.last_error == (f"no_connection: gw: cannot connect to 127.0.0.1:{port}: "
                                "connection refused")
    assert state.last_error_at is not None
    assert state.exchanges.requests == 0  # nothing was sent


def test_the_page_reads_a_polls_outcomes_as_it_reads_built_readings():
    """``last_values`` reads a Modbus poll's outcomes without building its readings (so
    the page does not make a device's last sample keep both): the same values."""
    from datetime import UTC, datetime

    from edge_agent.health.snapshot import last_values
    from edge_agent.model import PolledReadings, Sample

    at = datetime(2026, 12, 4, 16, 0, 0, 250000, tzinfo=UTC)
    outcomes = {"gas": (1.5, Quality.GOOD, None, 15),
                "flow": (None, Quality.BAD, "sentinel", -1),
                "temp": (61.0, Quality.SUSPECT, "out_of_range", 610)}
    polled = PolledReadings("det", at, (("gas", "ppm"), ("flow", "l/min"), ("temp", "C")),
                            outcomes)
    from_outcomes = last_values(Sample("det", at, polled))
    built = last_values(Sample("det", at, polled.readings()))
    assert from_outcomes == built
    assert [(v.channel, v.unit, v.quality, v.reason) for v in from_outcomes] == [
        ("gas", "ppm", "GOOD", None), ("flow", "l/min", "BAD", "sentinel"),
        ("temp", "C", "SUSPECT", "out_of_range")]
    fresh = PolledReadings("det", at, polled.channels, outcomes)
    last_values(Sample("det", at, fresh))
    assert fresh._built is None, "the page built the readings"
