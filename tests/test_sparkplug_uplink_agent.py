"""The Sparkplug B uplink end to end (issue 16): ``edge-agent run`` as a child process, a
real pymodbus simulator whose registers change on every read (so every sample is a
change a report-by-exception DDATA must carry), a Mosquitto for the MQTT JSON uplink and
another for Sparkplug, and a primary host (tests/support/sparkplug_recorder.py) that
decodes every message with Eclipse Tahu's generated classes, not the agent's.

The contract run: the agent's link to the Sparkplug broker black-holed (QoS 0 DDATA go
into the void until keepalive notices: what a PUBACK-less uplink would lose), the agent
SIGKILLed, the Sparkplug broker stopped and started, the primary host taken offline and
back; then every sample the JSON uplink delivered up to
a cut-off must have reached the host at least once, with the same value (live or
historical), and the outbox must hold none of them. The JSON uplink keeps delivering
through each outage. The tests named ``test_tck_id_...`` read the same recording and
each proves one assertion of the Sparkplug 3.0 specification. Every wait is for an
observable state; nothing is timed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from esio_spb_builder.core import sparkplug_b_pb2 as tahu
from paho.mqtt.enums import CallbackAPIVersion
from support.blackhole import BlackHoleProxy
from support.collector import Collector
from support.sparkplug_recorder import Seen, SparkplugRecorder
from support.station import AgentProcess, accepted_seqs
from support.uplinks_station import FAST_MQTT, Ticking, write_uplinks_station
from support.waiting import wait_until

from edge_agent.tools.sim.broker import Mosquitto
from edge_agent.tools.sim.simserver import SimServer, SimUnit

pytestmark = pytest.mark.real_parts

GROUP, EDGE, HOST = "plant", "test-station", "scada-1"
DEVICES = ("dev-1", "dev-2")
TOPIC_LEVELS = {4: ("NBIRTH", "NDEATH", "NDATA", "NCMD"), 5: ("DBIRTH", "DDEATH", "DDATA")}


@dataclass
class Run:
    """What one agent run left behind: the host's view, the JSON uplink's, the log."""

    host: list[Seen]
    data: dict[str, dict[int, object]]  # device -> Sparkplug value by timestamp (ms)
    json: dict[str, dict[int, object]]  # device -> JSON value by acquired_at (ms), to cutoff
    json_growth: dict[str, int]  # JSON samples delivered during each outage
    left_in_outbox: int
    log: str
    undecodable: list[str]


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _json_values(collector: Collector, device: str, cutoff: int) -> dict[int, object]:
    return {_ms(r.sample["acquired_at"]): r.sample["values"]["value"]["value"]
            for r in collector.first_deliveries(device) if r.sample["seq"] <= cutoff}


def _left(outbox: Path, cutoffs: dict[str, int]) -> int:
    conn = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    try:
        return sum(conn.execute("SELECT COUNT(*) FROM outbox WHERE device_id = ? AND seq <= ?",
                                [device, last]).fetchone()[0]
                   for device, last in cutoffs.items())
    finally:
        conn.close()


def _kinds(host: SparkplugRecorder) -> list[str]:
    return [seen.kind for seen in host.messages()]


def _station(tmp_path: Path, sim: SimServer, json_port: int, sparkplug_port: int,
             primary: bool) -> Path:
    scada = {"kind": "sparkplug", "group_id": GROUP, "edge_node_id": EDGE,
             "host": "127.0.0.1", "port": sparkplug_port, **FAST_MQTT}
    if primary:
        scada["primary_host_id"] = HOST
    return write_uplinks_station(tmp_path / "station.yaml", sim, {"scada": scada},
                                 mqtt_port=json_port)


@pytest.fixture(scope="module")
def contract_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """SIGKILL, Sparkplug broker stopped, primary host offline; then count."""
    tmp = tmp_path_factory.mktemp("sparkplug-contract")
    sim = SimServer([SimUnit(1, holding=Ticking()), SimUnit(2, holding=Ticking())]).start()
    json_broker = Mosquitto(tmp / "json", persistence=True).start()
    sp_broker = Mosquitto(tmp / "sparkplug").start()  # no persistence: STATE not kept
    collector = Collector(json_broker.port, session_name="home").start()
    host = SparkplugRecorder(sp_broker.port, HOST).start()
    relay = BlackHoleProxy(sp_broker.port).start()  # the agent's way to the broker
    path = _station(tmp, sim, json_broker.port, relay.port, primary=True)
    outbox = tmp / "outbox.sqlite3"
    agent = AgentProcess(path, tmp / "agent.log").start().wait_running()
    growth: dict[str, int] = {}

    def json_grows(what: str, count: int = 10) -> None:
        before = len(collector.seqs("dev-1"))
        collector.wait_for(lambda c: len(c.seqs("dev-1")) >= before + count, 60,
                           f"the JSON uplink to keep delivering ({what})")
        growth[what] = len(collector.seqs("dev-1")) - before

    try:
        wait_until(lambda: {s.device for s in host.messages() if s.kind == "DDATA"}
                   >= set(DEVICES), 60, "DDATA of both devices")
        relay.freeze()  # DDATA sent now never arrive; the broker drops the connection
        json_grows("Sparkplug link black-holed")
        wait_until(lambda: "NDEATH" in _kinds(host), 60, "the broker to send the will")
        relay.thaw()
        wait_until(lambda: _kinds(host).count("NBIRTH") >= 2, 60, "births after the hole")
        agent.kill()  # SIGKILL: the broker sends the NDEATH will
        wait_until(lambda: _kinds(host).count("NDEATH") >= 2, 30, "the NDEATH will")
        agent = AgentProcess(path, tmp / "agent.log").start().wait_running()
        wait_until(lambda: _kinds(host).count("NBIRTH") >= 3, 60, "births after the restart")
        sp_broker.stop()
        json_grows("Sparkplug broker stopped")
        sp_broker.start()
        wait_until(lambda: _kinds(host).count("NBIRTH") >= 4, 60,
                   "births once the broker is back and the host online")
        host.set_online(False)
        wait_until(lambda: _kinds(host)[-1] == "NDEATH", 30,
                   "the edge node's NDEATH after the host went offline")
        json_grows("primary host offline")
        host.set_online(True)
        wait_until(lambda: _kinds(host).count("NBIRTH") >= 5, 60,
                   "births once the host is online again")
        cutoffs = accepted_seqs(outbox)
        for device, last in cutoffs.items():
            collector.wait_for(lambda c, d=device, n=last: set(c.seqs(d))
                               >= set(range(1, n + 1)), 60, f"JSON {device} 1..{last}")
            wanted = _json_values(collector, device, last)
            wait_until(lambda d=device, w=wanted: w.keys() <= host.data(d).keys(), 120,
                       f"the host to hold every {device} sample up to {last}")
        wait_until(lambda: _left(outbox, cutoffs) == 0, 60, "the outbox to let go of them")
        json = {device: _json_values(collector, device, last)
                for device, last in cutoffs.items()}
        left = _left(outbox, cutoffs)
    finally:
        if agent.alive():
            agent.terminate()
        host.stop()
        collector.stop()
        relay.stop()
        sp_broker.stop()
        json_broker.stop()
        sim.stop()
    yield Run(host.messages(), {d: host.data(d) for d in DEVICES}, json, growth, left,
              (tmp / "agent.log").read_text(errors="replace"), host.undecodable)


def _connections(seen: list[Seen]) -> list[list[Seen]]:
    """The edge node's messages split at each NBIRTH (one MQTT connection each, or a
    rebirth), the recorder's STATE marks left out."""
    parts: list[list[Seen]] = []
    for message in seen:
        if message.kind == "NBIRTH":
            parts.append([])
        if parts and message.kind != "STATE":
            parts[-1].append(message)
    return parts


# -- the delivery rule ----------------------------------------------------------------------

def test_every_sample_reaches_the_primary_host_through_sigkill_broker_stop_and_host_offline(
        contract_run: Run) -> None:
    for device in DEVICES:
        json, seen = contract_run.json[device], contract_run.data[device]
        assert json, f"no {device} samples"
        missing = sorted(json.keys() - seen.keys())
        assert not missing, f"{device}: {len(missing)} samples never reached the host"
        wrong = {t: (json[t], seen[t]) for t in json if seen[t] != json[t]}
        assert not wrong, f"{device}: values differ (JSON, Sparkplug): {list(wrong.items())[:3]}"
    assert contract_run.left_in_outbox == 0
    assert not contract_run.undecodable
    assert "Traceback" not in contract_run.log


def test_the_json_uplink_keeps_delivering_through_every_sparkplug_outage(
        contract_run: Run) -> None:
    assert contract_run.json_growth["Sparkplug link black-holed"] >= 10
    assert contract_run.json_growth["Sparkplug broker stopped"] >= 10
    assert contract_run.json_growth["primary host offline"] >= 10


def test_samples_kept_through_an_outage_arrive_as_historical_and_live_data_never_rewinds(
        contract_run: Run) -> None:
    metrics = [(m, s.device) for s in contract_run.host if s.kind == "DDATA" for m in s.metrics]
    assert any(m.historical for m, _ in metrics), "nothing came as historical"
    for device in DEVICES:
        for part in _connections(contract_run.host):
            live = [m.timestamp_ms for s in part if s.kind == "DDATA" and s.device == device
                    for m in s.metrics if not m.historical]
            assert live == sorted(live), f"{device}: live DDATA went back in time"


# -- Sparkplug 3.0 assertions, on the same recording -----------------------------------------

def test_tck_id_topic_structure_namespace_and_ids(contract_run: Run) -> None:
    for seen in contract_run.host:
        if seen.kind == "STATE":
            continue
        levels = seen.topic.split("/")
        assert levels[0] == "spBv1.0" and levels[1] == GROUP and levels[3] == EDGE, seen.topic
        assert levels[2] in TOPIC_LEVELS[len(levels)], seen.topic


def test_tck_id_payloads_nbirth_seq_and_sequence_num_incrementing(contract_run: Run) -> None:
    """NBIRTH has seq 0; every later message of the connection but NDEATH has the
    previous one's seq + 1 modulo 256 (tck-id-payloads-sequence-num-incrementing)."""
    for part in _connections(contract_run.host):
        numbered = [seen.seq for seen in part if seen.kind != "NDEATH"]
        assert numbered[0] == 0
        assert all(b == (a + 1) % 256 for a, b in zip(numbered, numbered[1:], strict=False)), \
            numbered[:20]
        assert all(seen.seq is None for seen in part if seen.kind == "NDEATH")


def test_tck_id_topics_nbirth_bdseq_increment_and_ndeath_bdseq_matching(
        contract_run: Run) -> None:
    """Each connection's NBIRTH carries a bdSeq above the last connection's (one per
    CONNECT sent: a CONNECT lost in the black hole takes a number the host never sees);
    each NDEATH carries the bdSeq of its connection's NBIRTH (tck-id-payloads-ndeath-bdseq)."""
    births = [s.bd_seq for s in contract_run.host if s.kind == "NBIRTH"]
    assert births == sorted(set(births)) and len(births) == 5, births
    current = None
    for seen in contract_run.host:
        if seen.kind == "NBIRTH":
            current = seen.bd_seq
        elif seen.kind == "NDEATH":
            assert seen.bd_seq == current


def test_tck_id_payloads_dbirth_order_and_ddata_order(contract_run: Run) -> None:
    """DBIRTHs follow their connection's NBIRTH; no DDATA of a device before its DBIRTH."""
    for part in _connections(contract_run.host):
        born: set[str] = set()
        for seen in part[1:]:
            if seen.kind == "DBIRTH":
                born.add(seen.device or "")
            elif seen.kind == "DDATA":
                assert seen.device in born, f"DDATA of {seen.device} before its DBIRTH"
            elif seen.kind == "DDEATH":
                born.discard(seen.device or "")


def test_tck_id_message_flow_edge_node_birth_publish_phid_wait(contract_run: Run) -> None:
    """After the host's offline STATE the edge node ends with NDEATH and sends nothing
    more until the host's online STATE."""
    seen = contract_run.host
    offline = next(i for i, s in enumerate(seen) if s.kind == "STATE" and s.online is False)
    death = next(i for i in range(offline, len(seen)) if seen[i].kind == "NDEATH")
    online = next(i for i in range(death, len(seen))
                  if seen[i].kind == "STATE" and seen[i].online)
    assert [s.kind for s in seen[death + 1:online]] == []


# -- commands and device deaths (no primary host) -------------------------------------------

@pytest.fixture(scope="module")
def command_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Seen]]:
    """A rebirth request by NCMD, a device unplugged and back, a reload naming another
    edge node id, then a clean stop."""
    tmp = tmp_path_factory.mktemp("sparkplug-commands")
    units = [SimUnit(1, holding=Ticking()), SimUnit(2, holding=Ticking())]
    sim = SimServer(units).start()
    json_broker = Mosquitto(tmp / "json").start()
    sp_broker = Mosquitto(tmp / "sparkplug").start()
    host = SparkplugRecorder(sp_broker.port).start()
    path = _station(tmp, sim, json_broker.port, sp_broker.port, primary=False)
    agent = AgentProcess(path, tmp / "agent.log").start().wait_running()
    try:
        wait_until(lambda: {s.device for s in host.messages() if s.kind == "DDATA"}
                   >= set(DEVICES), 60, "DDATA of both devices")
        _send_ncmd(sp_broker.port, b"\xff\x00 not a payload")  # logged, counted, ignored
        _send_ncmd(sp_broker.port, _rebirth())
        wait_until(lambda: _kinds(host).count("NBIRTH") >= 2, 30, "the rebirth")
        units[1].muted = True
        wait_until(lambda: "DDEATH" in _kinds(host), 60, "dev-2's DDEATH")
        units[1].muted = False
        wait_until(lambda: any(s.kind == "DBIRTH" and s.device == "dev-2"
                               for s in host.messages()[_kinds(host).index("DDEATH"):]),
                   60, "dev-2's DBIRTH once it answers again")
        path.write_text(path.read_text().replace(f"edge_node_id: {EDGE}",
                                                 f"edge_node_id: {EDGE}-2"))
        agent.reload()
        wait_until(lambda: any(s.topic == f"spBv1.0/{GROUP}/NBIRTH/{EDGE}-2"
                               for s in host.messages()), 60, "births as the new edge node")
        assert agent.terminate() == 0
        wait_until(lambda: _kinds(host)[-1] == "NDEATH", 30, "the NDEATH of a clean stop")
    finally:
        if agent.alive():
            agent.kill()
        host.stop()
        sp_broker.stop()
        json_broker.stop()
        sim.stop()
    log = (tmp / "agent.log").read_text(errors="replace")
    assert "Traceback" not in log
    assert "an NCMD that does not decode" in log
    yield host.messages()


def _rebirth() -> bytes:
    payload = tahu.Payload(timestamp=int(time.time() * 1000))
    payload.metrics.add(name="Node Control/Rebirth", timestamp=payload.timestamp,
                        datatype=tahu.Boolean, boolean_value=True)
    return payload.SerializeToString()


def _send_ncmd(port: int, payload: bytes) -> None:
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(f"spBv1.0/{GROUP}/NCMD/{EDGE}", payload, qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def test_tck_id_operational_behavior_data_commands_rebirth_action(
        command_run: list[Seen]) -> None:
    """An NCMD ``Node Control/Rebirth`` brings NBIRTH (same bdSeq, seq 0) and every
    DBIRTH again (tck-id-operational-behavior-data-commands-rebirth-action-1..3)."""
    births = [i for i, s in enumerate(command_run) if s.kind == "NBIRTH"]
    first, again = command_run[births[0]], command_run[births[1]]
    assert again.bd_seq == first.bd_seq and again.seq == 0
    assert not any(s.kind == "NDEATH" for s in command_run[births[0]:births[1]])
    following = [s.device for s in command_run[births[1] + 1:births[1] + 3]]
    assert following == list(DEVICES)


def test_tck_id_operational_behavior_device_ddeath_and_a_dbirth_on_return(
        command_run: list[Seen]) -> None:
    """A device the agent marks down gets a DDEATH and nothing more until a DBIRTH that
    carries its value again (tck-id-operational-behavior-device-ddeath)."""
    death = next(i for i, s in enumerate(command_run) if s.kind == "DDEATH")
    assert command_run[death].device == "dev-2"
    back = next(i for i in range(death, len(command_run))
                if command_run[i].kind == "DBIRTH" and command_run[i].device == "dev-2")
    between = [s for s in command_run[death + 1:back] if s.device == "dev-2"]
    assert between == []
    assert any(not m.is_null for m in command_run[back].metrics)


def test_tck_id_operational_behavior_edge_node_intentional_disconnect_ndeath(
        command_run: list[Seen]) -> None:
    """A clean stop publishes NDEATH with the bdSeq of the connection's NBIRTH."""
    last_birth = [s for s in command_run if s.kind == "NBIRTH"][-1]
    assert command_run[-1].kind == "NDEATH"
    assert command_run[-1].bd_seq == last_birth.bd_seq


def test_a_reload_with_new_settings_ends_the_old_edge_node_before_the_new_one_is_born(
        command_run: list[Seen]) -> None:
    new = next(i for i, s in enumerate(command_run) if s.topic.endswith(f"/{EDGE}-2"))
    assert command_run[new].kind == "NBIRTH"
    old_deaths = [s for s in command_run[:new] if s.kind == "NDEATH"]
    assert [s.topic for s in old_deaths] == [f"spBv1.0/{GROUP}/NDEATH/{EDGE}"]
    assert old_deaths[0].bd_seq == command_run[new].bd_seq - 1
