"""The primary host simulator: its model of edge nodes and the rule breaks it flags (pure,
from messages our encoder builds), and the real ``edge-agent sparkplug-host`` process on a
real Mosquitto, fed by a test edge node that publishes through paho with our encoder."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from esio_spb_builder.core import sparkplug_b_pb2 as tahu
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from support.waiting import wait_until

from edge_agent.forward.mqtt import Subscriber
from edge_agent.model import Quality, Reading, Sample
from edge_agent.sparkplug.commands import decode_node_command
from edge_agent.sparkplug.model import ChannelSpec, DeviceSpec, EdgeNodeSpec
from edge_agent.sparkplug.session import EdgeNodeSession, Message
from edge_agent.sparkplug.state import parse_state
from edge_agent.tools.sim.broker import free_port
from edge_agent.tools.sparkplughost.hostmodel import HostModel
from edge_agent.tools.sparkplughost.render import line

T0 = datetime(2026, 11, 23, 18, 24, 30, 769000, tzinfo=UTC)
NODE = EdgeNodeSpec("plant", "cp-east-03", "edge-agent 0.1.0",
                    (DeviceSpec("gc-1", (ChannelSpec("benzene", "float32", "mg/m3"),
                                         ChannelSpec("toluene", "float32", "mg/m3"))),))


def sample(benzene: float | None, reason: str | None = None) -> Sample:
    quality = Quality.GOOD if reason is None else Quality.BAD
    return Sample("gc-1", T0, (Reading("gc-1", "benzene", benzene, "mg/m3", quality, T0, reason),
                               Reading("gc-1", "toluene", 1.5, "mg/m3", Quality.GOOD, T0)))


def feed(model: HostModel, *messages: Message) -> list:
    return [event for message in messages for event in model.receive(message.topic,
                                                                      message.payload)]


# -- the model (pure) ------------------------------------------------------------------------

def test_host_names_ddata_metrics_through_the_birth_aliases():
    session, model = EdgeNodeSession(NODE, 3), HostModel()
    feed(model, *session.births(T0))
    events = feed(model, session.device_data(sample(0.75), T0))
    assert [(e.verb, e.device, e.name, e.value, e.datatype) for e in events] == [
        ("DDATA", "gc-1", "benzene", 0.75, "Float"), ("DDATA", "gc-1", "toluene", 1.5, "Float")]
    assert events[0].properties["Quality"] == 192 and model.rule_breaks == 0
    assert line(events[0]) == ("DDATA plant/cp-east-03/gc-1 seq=2 benzene = 0.75 mg/m3 [Float] "
                               "quality=GOOD(192) t=2026-11-23T18:24:30.769Z")


def test_host_flags_a_seq_gap():
    session, model = EdgeNodeSession(NODE, 3), HostModel()
    feed(model, *session.births(T0))
    session.device_data(sample(1.0), T0)  # built, never delivered
    events = feed(model, session.device_data(sample(2.0), T0))
    rules = [e for e in events if e.kind == "rule"]
    assert [(r.rule, r.detail) for r in rules] == [("seq_gap", "DDATA: expected seq 2, got 3")]


def test_host_flags_data_before_birth_and_after_a_device_death():
    session, model = EdgeNodeSession(NODE, 3), HostModel()
    session.births(T0)  # the host never hears them
    assert feed(model, session.device_data(sample(1.0), T0))[0].rule == "data_before_birth"
    session, model = EdgeNodeSession(NODE, 3), HostModel()
    feed(model, *session.births(T0), session.device_death("gc-1", T0))
    session.device_birth("gc-1", T0)  # the host never hears this DBIRTH
    events = feed(model, session.device_data(sample(5.0), T0))
    assert [(e.rule, e.node) for e in events if e.kind == "rule"] == [
        ("seq_gap", "plant/cp-east-03"), ("data_before_birth", "plant/cp-east-03/gc-1")]


def test_host_flags_an_ndeath_of_another_connection_and_keeps_the_node_online():
    old, new, model = EdgeNodeSession(NODE, 3), EdgeNodeSession(NODE, 4), HostModel()
    feed(model, *new.births(T0))
    events = feed(model, old.will(T0))  # a late will of the previous connection
    assert [e.rule for e in events if e.kind == "rule"] == ["bdseq_mismatch"]
    assert model.nodes["plant/cp-east-03"].online
    assert feed(model, new.device_data(sample(1.0), T0))[0].kind == "metric"
    feed(model, new.will(T0))
    assert not model.nodes["plant/cp-east-03"].online


def test_host_flags_unknown_aliases_and_garbage_without_stopping():
    session, model = EdgeNodeSession(NODE, 3), HostModel()
    feed(model, session.births(T0)[0])  # NBIRTH only: gc-1's aliases unknown
    events = model.receive("spBv1.0/plant/NDATA/cp-east-03", b"\xff\xff\xff")
    assert events[0].rule == "undecodable"
    events = model.receive("spBv1.0/STATE/scada-1", b"ONLINE")
    assert events[0].rule == "undecodable" and "2.x" in events[0].detail
    payload = tahu.Payload(timestamp=1, seq=1)
    payload.metrics.add(alias=999, timestamp=1, float_value=1.0)
    events = model.receive("spBv1.0/plant/NDATA/cp-east-03", payload.SerializeToString())
    assert [e.rule for e in events] == ["unknown_alias"]


# -- the real process on a real broker -----------------------------------------------------

class EdgeNode:
    """A test edge node: paho with the session's NDEATH as its will, publishing what the
    session builds."""

    def __init__(self, port: int, session: EdgeNodeSession) -> None:
        self.session = session
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id="test-edge-node", protocol=MQTTProtocolVersion.MQTTv5)
        will = session.will(datetime.now(UTC))
        self.client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, *messages: Message | None) -> None:
        for message in messages:
            assert message is not None
            self.client.publish(message.topic, message.payload, qos=message.qos,
                                retain=message.retain).wait_for_publish(10)

    def die(self) -> None:
        """MQTT 5 'Disconnect with Will Message' (reason 0x04): the broker publishes the
        NDEATH registered at CONNECT (tck-id-payloads-ndeath-will-message-publisher-
        disconnect-mqtt50)."""
        self.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))
        self.client.loop_stop()


class Records:
    """The host's --jsonl file, read as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[dict]:
        if not self.path.exists():
            return []
        text = self.path.read_text()
        return [json.loads(row) for row in text.splitlines() if row.endswith("}")]

    def wait_for(self, predicate, what: str) -> list[dict]:
        wait_until(lambda: [r for r in self.all() if predicate(r)], 30, what)
        return [r for r in self.all() if predicate(r)]


class Watcher:
    """A plain subscriber collecting (topic, payload, retained)."""

    def __init__(self, port: int, topic: str) -> None:
        self.seen: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._sub = Subscriber("127.0.0.1", port, topic, self._on).start()

    def _on(self, topic: str, payload: bytes, retained: bool) -> None:
        with self._lock:
            self.seen.append((topic, payload, retained))

    def states(self) -> list[tuple[bool, bool]]:
        with self._lock:
            return [(parse_state(p).online, r) for _t, p, r in self.seen]

    def stop(self) -> None:
        self._sub.stop()


@contextmanager
def host_process(port: int, jsonl: Path, *extra: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "sparkplug-host", "--port", str(port),
         "--host-id", "scada-1", "--jsonl", str(jsonl), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


@pytest.mark.real_parts
def test_host_process_prints_births_data_and_deaths_and_flags_a_seq_gap(broker, tmp_path):
    records = Records(tmp_path / "host.jsonl")
    with host_process(broker.port, records.path) as host:
        records.wait_for(lambda r: r["kind"] == "ready", "the host to be online")
        node = EdgeNode(broker.port, EdgeNodeSession(NODE, 5))
        session = node.session
        node.send(*session.births(datetime.now(UTC), {"gc-1": sample(0.5)}))
        node.send(session.device_data(sample(0.6), T0))
        session.device_data(sample(0.7), T0)  # never sent: a gap the host must see
        node.send(session.device_data(sample(None, "timeout"), T0))
        node.send(session.device_death("gc-1", T0))
        node.die()
        records.wait_for(lambda r: r.get("verb") == "NDEATH", "the NDEATH")
        host.send_signal(signal.SIGTERM)
        out, _err = host.communicate(timeout=30)
        assert host.returncode == 0
    seen = [r for r in records.all() if r["kind"] in ("metric", "message", "rule")]
    assert [(r["verb"], r["name"]) for r in seen if r["kind"] != "rule"] == [
        ("NBIRTH", "bdSeq"), ("NBIRTH", "Node Control/Rebirth"),
        ("NBIRTH", "Properties/Agent Version"),
        ("DBIRTH", "benzene"), ("DBIRTH", "toluene"),
        ("DDATA", "benzene"), ("DDATA", "benzene"), ("DDEATH", None), ("NDEATH", "bdSeq")]
    births = [r for r in seen if r["verb"] == "DBIRTH"]
    assert births[0]["value"] == 0.5 and births[0]["properties"]["engUnit"] == "mg/m3"
    data = [r for r in seen if r["verb"] == "DDATA"]
    assert data[0]["value"] == pytest.approx(0.6)
    assert data[1]["value"] is None and data[1]["properties"]["reason"] == "timeout"
    assert [(r["rule"], r["detail"]) for r in seen if r["kind"] == "rule"] == [
        ("seq_gap", "DDATA: expected seq 3, got 4")]
    assert "DBIRTH plant/cp-east-03/gc-1 seq=1 benzene = 0.5 mg/m3 [Float]" in out
    assert "NDEATH plant/cp-east-03 bdSeq=5" in out
    assert records.all()[-1] == {"kind": "stopped", "rule_breaks": 1}


@pytest.mark.real_parts
def test_tck_id_payloads_state_birth_and_will_from_the_host_process(broker, tmp_path):
    """STATE online retained at QoS 1 once subscribed; offline on a clean stop; and the
    broker publishes the offline will when the host is killed."""
    states = Watcher(broker.port, "spBv1.0/STATE/scada-1")
    try:
        records = Records(tmp_path / "host.jsonl")
        with host_process(broker.port, records.path) as host:
            records.wait_for(lambda r: r["kind"] == "ready", "the host to be online")
            wait_until(lambda: states.states() == [(True, False)], 30, "STATE online")
            host.send_signal(signal.SIGTERM)
            host.communicate(timeout=30)
        wait_until(lambda: len(states.states()) == 2, 30, "STATE offline")
        assert states.states()[1] == (False, False)
        late = Watcher(broker.port, "spBv1.0/STATE/scada-1")  # what the broker retained
        wait_until(lambda: late.states() == [(False, True)], 30, "the retained STATE")
        late.stop()
        with host_process(broker.port, tmp_path / "again.jsonl") as host:
            Records(tmp_path / "again.jsonl").wait_for(lambda r: r["kind"] == "ready", "again")
            wait_until(lambda: len(states.states()) == 3, 30, "STATE online again")
            host.send_signal(signal.SIGKILL)
            host.wait(timeout=30)
            wait_until(lambda: len(states.states()) == 4, 30, "the offline will")
        assert states.states()[2:] == [(True, False), (False, False)]
    finally:
        states.stop()


@pytest.mark.real_parts
def test_host_process_sends_a_rebirth_the_edge_node_decodes(broker, tmp_path):
    commands = Watcher(broker.port, "spBv1.0/plant/NCMD/cp-east-03")
    try:
        records = Records(tmp_path / "host.jsonl")
        with host_process(broker.port, records.path, "--rebirth", "plant/cp-east-03") as host:
            records.wait_for(lambda r: r["kind"] == "rebirth_sent", "the rebirth")
            wait_until(lambda: commands.seen, 30, "the NCMD")
            host.send_signal(signal.SIGTERM)
            host.communicate(timeout=30)
        payload = commands.seen[0][1]
        assert decode_node_command(payload).rebirth
        metric = tahu.Payload.FromString(payload).metrics[0]
        assert (metric.name, metric.datatype, metric.boolean_value) == (
            "Node Control/Rebirth", tahu.Boolean, True)
    finally:
        commands.stop()


@pytest.mark.real_parts
def test_host_process_refuses_a_malformed_rebirth_node_or_password_file(tmp_path):
    done = subprocess.run([sys.executable, "-m", "edge_agent", "sparkplug-host",
                           "--rebirth", "plant"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--rebirth 'plant': expected GROUP/EDGE_NODE" in done.stderr
    missing = tmp_path / "no-such-file"
    done = subprocess.run([sys.executable, "-m", "edge_agent", "sparkplug-host",
                           "--password-file", str(missing)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"--password-file {missing}: cannot be read" in done.stderr


@pytest.mark.real_parts
def test_host_process_answers_an_offline_state_of_its_own_with_online(broker, tmp_path):
    """An offline STATE for this host as new as its run (its will sent while it still
    runs): it publishes online again. A STATE of an earlier run is left alone."""
    states = Watcher(broker.port, "spBv1.0/STATE/scada-1")
    writer = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    writer.connect("127.0.0.1", broker.port)
    writer.loop_start()
    try:
        records = Records(tmp_path / "host.jsonl")
        with host_process(broker.port, records.path) as host:
            records.wait_for(lambda r: r["kind"] == "ready", "the host to be online")
            wait_until(lambda: states.states() == [(True, False)], 30, "STATE online")
            old = json.dumps({"online": False, "timestamp": 1}).encode()
            writer.publish("spBv1.0/STATE/scada-1", old, qos=1, retain=True).wait_for_publish(10)
            now_ms = int(datetime.now(UTC).timestamp() * 1000) + 1000
            new = json.dumps({"online": False, "timestamp": now_ms}).encode()
            writer.publish("spBv1.0/STATE/scada-1", new, qos=1, retain=True).wait_for_publish(10)
            records.wait_for(lambda r: r["kind"] == "state_republished", "online again")
            wait_until(lambda: len(states.states()) == 4, 30, "the republished STATE")
            assert states.states() == [(True, False), (False, False), (False, False),
                                       (True, False)]
            assert len([r for r in records.all() if r["kind"] == "state_republished"]) == 1
            host.send_signal(signal.SIGTERM)
            host.communicate(timeout=30)
            assert host.returncode == 0
    finally:
        writer.disconnect()
        writer.loop_stop()
        states.stop()


@pytest.mark.real_parts
def test_host_process_without_a_broker_exits_1_naming_it(tmp_path):
    port = free_port()  # nothing listens there
    done = subprocess.run([sys.executable, "-m", "edge_agent", "sparkplug-host", "--port",
                           str(port), "--connect-timeout", "5"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"cannot connect to 127.0.0.1:{port}" in done.stderr
