"""Messages that can never be delivered, against a real Mosquitto and a real pymodbus
server: the MQTT network thread survives them, they are set aside and announced as gap
events (reason ``unpublishable``), and every other device keeps delivering. And if the
network thread dies anyway, the agent says so and is restarted.

The station is loaded from a valid file and then given an id or a topic template that
``check`` refuses (a 70,000-character device id, a wildcard in a topic), built as
config objects directly: the agent must hold up even when such a value reaches it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from pathlib import Path

import pytest
from support.collector import Collector
from support.health import get, scrape, status
from support.notify import NotifyListener
from support.station import accepted_seqs, write_station
from support.waiting import wait_until

from edge_agent.agent import Agent, run_until_signalled
from edge_agent.config.loader import load_config
from edge_agent.config.schema import MqttProtocol, StationConfig
from edge_agent.forward.mqtt import _Outgoing
from edge_agent.forward.poison import MAX_REJECTIONS
from edge_agent.sdnotify import Notifier
from edge_agent.tools.ops.status import live_lines
from edge_agent.tools.sim.broker import Mosquitto
from edge_agent.tools.sim.simserver import SimServer, SimUnit
from edge_agent.watchdog import ServiceSupervisor

# Every test here starts real processes (builds, installers, the agent).
pytestmark = pytest.mark.real_parts

LONG_ID = "x" * 70_000  # paho: "Publish topic is too long" (over 65,535 bytes)


@pytest.fixture
def devices():
    server = SimServer([SimUnit(1, holding={0: 11}), SimUnit(2, holding={0: 22})]).start()
    yield server
    server.stop()


def station(tmp_path: Path, broker_port: int, server: SimServer,
            mqtt: dict | None = None) -> StationConfig:
    """Two detectors on one gateway, ``dev-ok`` and ``dev-bad``, valid as written."""
    channels = [{"name": "gas", "address": 0, "unit": "ppm"}]
    path = write_station(
        tmp_path / "station.yaml", broker_port=broker_port, mqtt=mqtt,
        links={"gw": {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port,
                      "timeout_ms": 300}},
        devices=[{"id": "dev-ok", "link": "gw", "unit_id": 1, "interval_s": 0.1,
                  "channels": channels},
                 {"id": "dev-bad", "link": "gw", "unit_id": 2, "interval_s": 0.1,
                  "channels": channels}])
    return load_config(path)


def with_device_id(config: StationConfig, old: str, new: str) -> StationConfig:
    devices = tuple(dataclasses.replace(d, id=new) if d.id == old else d
                    for d in config.devices)
    return dataclasses.replace(config, devices=devices)


def with_data_topic(config: StationConfig, template: str) -> StationConfig:
    topics = dataclasses.replace(config.mqtt.topics, data=template)
    return dataclasses.replace(config, mqtt=dataclasses.replace(config.mqtt, topics=topics))


def drain_and_stop(agent: Agent) -> None:
    agent.stop_polling()
    try:
        wait_until(lambda: agent.outbox.stats().rows == 0, 60, "the outbox to drain")
    finally:
        agent.stop()


def set_aside_logs(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if "can never be published" in r.getMessage() and r.levelno == level]


def test_a_topic_too_long_for_mqtt_is_set_aside_and_every_other_device_keeps_delivering(
        tmp_path, broker, collector, devices, caplog):
    """The seen failure: paho raised ValueError in the network thread, the thread ended,
    and nothing was delivered again while /status said connected."""
    caplog.set_level(logging.DEBUG, logger="edge_agent")
    config = with_device_id(station(tmp_path, broker.port, devices), "dev-bad", LONG_ID)
    agent = Agent(config)
    agent.start()
    try:
        wait_until(lambda: agent.forwarder.stats.unpublishable_messages >= 3, 60,
                   "three messages of the long id set aside")
        delivered = len(collector.seqs("dev-ok"))
        collector.wait_for(lambda c: len(c.seqs("dev-ok")) >= delivered + 20, 60,
                           "dev-ok delivering after the refusals")
        assert agent.dead_threads() == []
        assert agent.health.snapshot().healthy
        metrics = scrape(agent.health.port)
        document = status(agent.health.port)
    finally:
        drain_and_stop(agent)
    accepted = accepted_seqs(config.store.path)
    collector.wait_for(lambda c: c.has_seqs("dev-ok", accepted["dev-ok"]), 60,
                       "every accepted dev-ok sample")
    stats = agent.forwarder.stats
    assert metrics.value("edge_agent_mqtt_messages_unpublishable_total") >= 3
    assert metrics.value("edge_agent_mqtt_samples_unpublishable_total") >= 3
    assert document["broker"]["unpublishable_messages"] >= 3
    assert any(line.startswith("Set aside: ") and "never be published" in line
               for line in live_lines(document, "http://test", time.time()))
    # Every sample of the long id left the outbox as poison, none was delivered; its
    # gap events (same topic problem) were refused too and removed, not looped on.
    assert stats.unpublishable_samples == accepted[LONG_ID]
    assert not [s for s in collector.samples if s.device != "dev-ok"]
    errors = set_aside_logs(caplog, logging.ERROR)
    assert len([m for m in errors if "samples (seq" in m]) == 1, "logged once per device"
    assert "Publish topic is too long" in errors[0]
    assert len(errors[0]) < 1000, "a 70,000-character id is not logged whole"


def test_samples_behind_a_refused_topic_are_announced_as_a_gap_event(
        tmp_path, broker, collector, devices):
    """A data topic paho refuses (a wildcard), a gap topic it takes: every accepted
    sample of the device is covered by a gap event with the reason unpublishable."""
    config = with_data_topic(station(tmp_path, broker.port, devices),
                             "edge/{station}/{device}/+/data")
    agent = Agent(config)
    agent.start()
    try:
        collector.wait_for(lambda c: len(c.gaps) >= 3, 60, "gap events of the refused data")
    finally:
        drain_and_stop(agent)
    accepted = accepted_seqs(config.store.path)
    covered: dict[str, set[int]] = {"dev-ok": set(), "dev-bad": set()}

    def all_covered(c: Collector) -> bool:
        for device in covered:
            covered[device] = {seq for gap in c.gaps if gap["device"] == device
                               for seq in range(gap["first_seq"], gap["last_seq"] + 1)}
        return all(covered[d] == set(range(1, accepted[d] + 1)) for d in covered)

    collector.wait_for(all_covered, 60, "gap events covering every accepted sample")
    assert {reason for gap in collector.gaps for reason in gap["reasons"]} == \
        {"unpublishable"}
    unique = {gap["id"]: gap for gap in collector.gaps}
    assert sum(gap["count"] for gap in unique.values()) == sum(accepted.values())
    assert agent.forwarder.stats.unpublishable_samples == sum(accepted.values())


def test_a_message_the_broker_keeps_rejecting_is_set_aside_after_five_rejections(
        tmp_path, devices, caplog):
    """MQTT 5: Mosquitto answers PUBACK 0x87 (not authorized) for a topic its ACL
    denies. Each rejection ends the session and the message is re-sent with backoff;
    the fifth sets it aside and announces its samples; the other device is delivered."""
    caplog.set_level(logging.WARNING, logger="edge_agent")
    acl = tmp_path / "acl"
    acl.write_text("topic read edge/#\n"
                   "topic write edge/test-station/dev-ok/data\n"
                   "topic write edge/test-station/+/gap\n"
                   "topic write edge/test-station/status\n")
    server = Mosquitto(tmp_path / "broker", persistence=True,
                       listener_options=f"acl_file {acl}").start()
    collector = Collector(server.port).start()
    try:
        config = station(tmp_path, server.port, devices, {"protocol": "5"})
        assert config.mqtt.protocol is MqttProtocol.V5
        agent = Agent(config)
        agent.start()
        try:
            wait_until(lambda: agent.forwarder.stats.unpublishable_messages >= 1, 60,
                       "a rejected message set aside")
            stats = agent.forwarder.stats
            assert stats.rejected >= MAX_REJECTIONS
        finally:
            drain_and_stop(agent)
        accepted = accepted_seqs(config.store.path)
        collector.wait_for(lambda c: c.has_seqs("dev-ok", accepted["dev-ok"]), 60,
                           "every accepted dev-ok sample")

        def bad_announced(c: Collector) -> int:  # a gap event re-sent counts once
            unique = {gap["id"]: gap for gap in c.gaps if gap["device"] == "dev-bad"}
            return sum(gap["count"] for gap in unique.values())

        collector.wait_for(lambda c: bad_announced(c) == accepted["dev-bad"], 60,
                           "every dev-bad sample announced as unpublishable")
    finally:
        collector.stop()
        server.stop()
    assert not collector.seqs("dev-bad")
    assert stats.unpublishable_samples == accepted["dev-bad"]
    rejections = [m for m in caplog.messages if "broker rejected message" in m]
    first = rejections[0].split()[3]
    tries = [m for m in rejections if f"message {first} " in m]
    assert [m.split("rejection ")[1][:6] for m in tries] == \
        [f"{n} of {MAX_REJECTIONS}" for n in range(1, MAX_REJECTIONS)]
    assert any(first in m and f"rejected by the broker {MAX_REJECTIONS} times" in m
               for m in caplog.messages)


class _DeadlyTopic(str):
    """A topic whose encoding raises a BaseException: gets past every ``except
    Exception`` in the network thread, as a bug could. paho itself is not touched."""

    __slots__ = ()

    def encode(self, *_args: object, **_kwargs: object) -> bytes:  # type: ignore[override]
        raise SystemExit("network thread killed by the test")


def kill_network_thread(agent: Agent) -> None:
    session = agent.forwarder._session
    assert session is not None
    session._outgoing.put(_Outgoing(_DeadlyTopic("edge/x"), b"", "", False))
    session._wake()


def connected_agent(tmp_path: Path, broker: Mosquitto, server: SimServer) -> Agent:
    agent = Agent(station(tmp_path, broker.port, server))
    agent.start()
    wait_until(lambda: agent.forwarder.stats.connected and agent.health.port is not None,
               30, "the forwarder to connect")
    return agent


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_network_thread_makes_the_agent_unhealthy_and_withholds_keepalives(
        tmp_path, broker, collector, devices):
    listener = NotifyListener(tmp_path / "notify.sock")
    agent = connected_agent(tmp_path, broker, devices)
    try:
        supervisor = ServiceSupervisor(agent, Notifier(listener.address), 1_000_000)
        supervisor.tick()
        assert listener.wait_for("WATCHDOG", 10)["WATCHDOG"] == "1"
        assert get(agent.health.port, "/healthz") == (200, "ok\n")
        kill_network_thread(agent)
        wait_until(lambda: agent.dead_threads() == ["mqtt-net"], 30,
                   "mqtt-net reported dead")
        health = get(agent.health.port, "/healthz")
        stuck = supervisor.tick()
        report = listener.next(10)
    finally:
        agent.stop()
        listener.close()
    assert health == (503, "unhealthy: worker thread mqtt-net has ended\n")
    assert [s.name for s in stuck] == ["mqtt-net"] and stuck[0].ended
    assert "WATCHDOG" not in report and "mqtt-net has ended" in report["STATUS"]
    # No final status could be sent: the broker's last will says offline instead.
    collector.wait_for(lambda c: bool(c.status) and c.status[-1]["state"] == "offline", 30,
                       "the station shown offline")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_run_exits_1_when_the_network_thread_dies_so_systemd_restarts_it(
        tmp_path, broker, devices):
    agent = Agent(station(tmp_path, broker.port, devices))
    stop = threading.Event()
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(run_until_signalled(agent, stop)))
    runner.start()
    try:
        wait_until(lambda: agent.forwarder.stats.connected, 30, "the forwarder to connect")
        kill_network_thread(agent)
        runner.join(timeout=60)
    finally:
        stop.set()
        runner.join(timeout=60)
    assert result == [1]


def test_setting_aside_removes_the_rows_and_announces_them_with_exact_counts(tmp_path):
    """The outbox side alone: a claimed message of three samples is set aside; its
    samples become one unsent gap event (seq range, count, reason unpublishable), the
    kept counters agree with a full count, and a second set-aside finds nothing."""
    from datetime import UTC, datetime, timedelta

    from edge_agent.config.schema import Retention
    from edge_agent.model import Quality, Reading, Sample
    from edge_agent.store.outbox import Outbox

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    box = Outbox(tmp_path / "outbox.sqlite3",
                 Retention(max_rows=None, max_bytes=None, max_age_s=None))
    try:
        for i in range(5):
            at = t0 + timedelta(seconds=i)
            box.append(Sample("d", at, (Reading("d", "ch", i, "ppm", Quality.GOOD, at),)))
        message = box.claim(10**9, 3, 10**6)
        assert message is not None and len(message.entries) == 3
        result = box.set_aside_unpublishable(message.msg_id)
        assert (result.samples, result.first_seq, result.last_seq, result.gap_rows_added) \
            == (3, 1, 3, 1)
        depth, stats = box.depth(), box.stats()
        assert (depth.rows, depth.samples) == (stats.rows, stats.samples) == (3, 2)
        assert stats.in_flight_messages == 0
        bodies = box._submit(lambda conn: conn.execute(
            "SELECT body FROM outbox WHERE kind = 'gap'").fetchall(), reads_only=True)
        assert len(bodies) == 1
        body = json.loads(bodies[0][0])
        assert (body["count"], body["first_seq"], body["last_seq"], body["reasons"]) == \
            (3, 1, 3, ["unpublishable"])
        assert box.set_aside_unpublishable(message.msg_id).kind is None
    finally:
        box.close()
