"""``edge-agent poll`` as a technician runs it: a real process against real pymodbus
servers over TCP and RTU on pseudo-terminal pairs, a text instrument on a pty, a GC with
its outbox, the running service holding a serial port, and a broker that must hear
nothing."""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.publish as mqtt_publish
import pytest
from edge_agent_drivers.modbus.settings import RegisterKind
from support.station import AgentProcess, accepted_seqs, outbox_rows, write_station
from support.waiting import wait_until

from edge_agent.config.schema import Retention
from edge_agent.forward.mqtt import Subscriber
from edge_agent.model import Quality, Reading, Sample
from edge_agent.store.lock import OutboxLock
from edge_agent.store.outbox import Outbox
from edge_agent.tools.sim.models import ENRON_RANGES
from edge_agent.tools.sim.ptypair import PtyPair
from edge_agent.tools.sim.simserver import SimServer, SimUnit
from edge_agent.tools.sim.textdevice import NoxAnalyzerSim, TextDeviceSim

# Every test here starts the tool (and some the agent) as a real process.
pytestmark = pytest.mark.real_parts

DETECTOR = {0: 0, 1: 0, 2: 209, 3: 3, 4: 8, 5: 0, 16: 0x4D47, 17: 0x4434}  # MGD4
NO_BROKER = 1  # nothing listens on port 1: a poll that tried to publish would fail


def poll(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent", "poll", str(config), *args],
                          capture_output=True, text=True, timeout=120)


def check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent", "check", str(config)],
                          capture_output=True, text=True, timeout=120)


def table_row(stdout: str, device: str, channel: str) -> list[str]:
    """The cells of ``channel``'s row in ``device``'s table."""
    block = stdout.split(f"\n{device}  ", 1)[1].split("\n\n", 1)[0]
    return next(line.split() for line in block.splitlines()
                if line.split() and line.split()[0] == channel)


def f32_cdab(value: float) -> list[int]:
    a, b, c, d = struct.pack(">f", value)
    return [c << 8 | d, a << 8 | b]


def closed_port() -> int:
    """A TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tcp_link(port: int, **extra: object) -> dict:
    return {"type": "tcp", "host": "127.0.0.1", "port": port, "timeout_ms": 500, **extra}


@pytest.fixture
def detectors() -> Iterator[SimServer]:
    server = SimServer([SimUnit(1, holding=dict(DETECTOR)),
                        SimUnit(2, holding={**DETECTOR, 3: 17})]).start()
    yield server
    server.stop()


def detector_station(tmp_path: Path, port: int, *, broker_port: int = NO_BROKER) -> Path:
    return write_station(tmp_path / "station.yaml", links={"lan": tcp_link(port)}, devices=[
        {"id": "det-1", "link": "lan", "unit_id": 1, "profile": "generic-gas-detector"},
        {"id": "det-2", "link": "lan", "unit_id": 2, "profile": "generic-gas-detector"}],
        broker_port=broker_port)


def test_modbus_tcp_devices_are_printed_one_table_each(tmp_path, detectors):
    config = detector_station(tmp_path, detectors.tcp_port)
    result = poll(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("station test-station: polling 2 devices on 1 link once")
    assert f"det-1  unit 1 on link lan (modbus-tcp 127.0.0.1:{detectors.tcp_port})  " \
        "answered in" in result.stdout
    assert table_row(result.stdout, "det-1", "channel") == \
        ["channel", "value", "unit", "quality", "reason"]
    assert table_row(result.stdout, "det-1", "o2") == ["o2", "20.9", "vol%", "GOOD"]
    assert table_row(result.stdout, "det-2", "co") == ["co", "17", "ppm", "GOOD"]
    assert table_row(result.stdout, "det-1", "model") == ["model", "MGD4", "-", "GOOD"]
    assert "2 of 2 devices answered; nothing was stored or published" in result.stdout


def test_a_silent_device_fails_the_poll_and_the_others_are_still_printed(tmp_path,
                                                                         detectors):
    dead = closed_port()
    config = write_station(tmp_path / "station.yaml", links={
        "dead": tcp_link(dead), "lan": tcp_link(detectors.tcp_port)}, devices=[
        {"id": "det-9", "link": "dead", "unit_id": 9, "profile": "generic-gas-detector"},
        {"id": "det-1", "link": "lan", "unit_id": 1, "profile": "generic-gas-detector"}],
        broker_port=NO_BROKER)
    result = poll(config)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"det-9  unit 9 on link dead (modbus-tcp 127.0.0.1:{dead})  NO ANSWER" \
        in result.stdout
    assert f"hint: 127.0.0.1:{dead} refused the connection" in result.stdout
    assert "accepts only one TCP connection refuses or ignores a second one" in result.stdout
    assert table_row(result.stdout, "det-9", "co") == ["co", "-", "ppm", "BAD",
                                                       "no_connection"]
    assert table_row(result.stdout, "det-1", "co") == ["co", "3", "ppm", "GOOD"]
    assert "1 of 2 devices answered" in result.stdout
    assert "Traceback" not in result.stderr


def test_raw_shows_the_register_words_in_hex_and_decimal(tmp_path):
    holding = {0: 0, 1: 1, 2: 1, 3: 2024, 4: 5, 5: 6, 6: 14, 7: 30, 8: 0}
    for address, value in ((12, 12.5), (14, 3.75), (16, 0.5), (18, 1.0)):
        holding.update(zip((address, address + 1), f32_cdab(value), strict=True))
    server = SimServer([SimUnit(1, holding=holding)]).start()
    try:
        config = write_station(tmp_path / "station.yaml", links={
            "lan": tcp_link(server.tcp_port)}, devices=[
            {"id": "gc-1", "link": "lan", "unit_id": 1, "profile": "generic-gc"}],
            broker_port=NO_BROKER)
        result = poll(config, "--raw")
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert table_row(result.stdout, "gc-1", "channel")[-1] == "raw"
    assert table_row(result.stdout, "gc-1", "benzene") == [
        "benzene", "12.5", "ppb", "GOOD", "holding", "12:", "0x0000", "0x4148",
        "(0", "16712)"]
    assert table_row(result.stdout, "gc-1", "year") == [
        "year", "2024", "-", "GOOD", "holding", "3:", "0x07E8", "(2024)"]


def test_device_option_polls_only_the_devices_named(tmp_path, detectors):
    config = detector_station(tmp_path, detectors.tcp_port)
    result = poll(config, "--device", "det-2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\ndet-2  unit 2" in result.stdout and "\ndet-1  " not in result.stdout
    assert {request.unit_id for request in detectors.requests} == {2}
    unknown = poll(config, "--device", "det-7")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == \
        f"{config}: no device with id 'det-7' (devices: det-1, det-2)"


def test_serial_text_instrument_on_a_pty_with_its_fields(tmp_path):
    model = NoxAnalyzerSim(address=7, clock=lambda: datetime(2024, 5, 6, 14, 30))
    with PtyPair() as pty:
        sim = TextDeviceSim(model, pty.device_path).start()
        try:
            config = write_station(tmp_path / "station.yaml", links={
                "rs485-ana": {"type": "serial", "port": pty.agent_path, "protocol": "text",
                              "baudrate": 19200, "timeout_ms": 500}}, devices=[
                {"id": "nox-7", "link": "rs485-ana", "profile": "generic-text-analyzer",
                 "unit_id": 7, "interval_s": 1}], broker_port=NO_BROKER)
            result = poll(config, "--raw")
        finally:
            sim.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"nox-7  unit 7 on link rs485-ana (text {pty.agent_path} 19200 8N1)" \
        in result.stdout
    assert "record: MD07,2024-05-06,14:30:00,+0012.3,+0004.5,+0016.8,+0003.1,A" \
        in result.stdout
    assert table_row(result.stdout, "nox-7", "no") == ["no", "12.3", "ppb", "GOOD",
                                                       "'+0012.3'"]
    assert table_row(result.stdout, "nox-7", "so2") == ["so2", "3.1", "ppb", "GOOD",
                                                        "'+0003.1'"]


def gc_image(cycle: int) -> dict[int, int]:
    holding = {0: 0, 1: cycle, 2: 1, 3: 2024, 4: 5, 5: 6, 6: 14, 7: 30, 8: 0}
    holding.update(zip((12, 13), f32_cdab(1.25), strict=True))
    return holding


def publish_once(outbox_path: Path, device: str, cycle: int) -> None:
    """What the service leaves after publishing analysis ``cycle``: a committed sample
    whose driver state names it (trigger.py)."""
    outbox = Outbox(outbox_path, Retention())
    now = datetime.now(UTC)
    outbox.append(Sample(device, now, (Reading(device, "cycle", cycle, "", Quality.GOOD,
                                               now),),
                         driver_state=json.dumps({"key": str(cycle)})))
    outbox.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_gc_result_is_new_only_when_the_service_has_not_published_it(tmp_path):
    server = SimServer([SimUnit(1, holding=gc_image(41))]).start()
    try:
        config = write_station(tmp_path / "station.yaml", links={
            "lan": tcp_link(server.tcp_port)}, devices=[
            {"id": "gc-1", "link": "lan", "unit_id": 1, "profile": "generic-gc"}],
            broker_port=NO_BROKER)
        outbox_path = tmp_path / "outbox.sqlite3"
        first = poll(config)  # no outbox yet: nothing to compare with
        assert not outbox_path.exists()
        publish_once(outbox_path, "gc-1", 41)
        before = digest(outbox_path)
        same = poll(config)
        server.set_words(1, RegisterKind.HOLDING, 1, [42])
        newer = poll(config)
    finally:
        server.stop()
    assert "new result: yes (counter 'cycle' = 41; no outbox here" in first.stdout
    assert "new result: no, the service published it already (counter 'cycle' = 41; " \
           "last published: 41)" in same.stdout
    assert table_row(same.stdout, "gc-1", "benzene") == ["benzene", "1.25", "ppb", "GOOD"]
    assert "new result: yes, the service has not published it yet (counter 'cycle' = 42; " \
           "last published: 41)" in newer.stdout
    assert (first.returncode, same.returncode, newer.returncode) == (0, 0, 0)
    assert digest(outbox_path) == before and outbox_rows(outbox_path) == 1


def test_a_set_new_result_flag_is_never_cleared_by_poll(tmp_path):
    """A GC whose profile clears its flag after publishing: poll reads the analysis and
    leaves the flag for the service (clearing it would take the analysis away)."""
    server = SimServer([SimUnit(2, holding={3001: 1, 3003: 1}, size=4000,
                                enron=ENRON_RANGES)]).start()
    try:
        config = write_station(tmp_path / "station.yaml", links={
            "lan": tcp_link(server.tcp_port)}, devices=[
            {"id": "ng-gc", "link": "lan", "unit_id": 2, "profile": "daniel-enron-gc",
             "trigger": {"kind": "flag", "channel": "new_data", "clear_flag": True}}],
            broker_port=NO_BROKER)
        result = poll(config)
        flag = server.get_words(2, RegisterKind.HOLDING, 3001, 1)
        writes = server.writes(2)
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "new result: yes (flag 'new_data' = 1;" in result.stdout
    assert (flag, writes) == ([1], [])


def test_config_error_exits_2_with_the_same_message_as_check(tmp_path):
    config = write_station(tmp_path / "station.yaml", links={"lan": tcp_link(502)}, devices=[
        {"id": "det-1", "link": "lann", "unit_id": 1, "profile": "generic-gas-detector"}],
        broker_port=NO_BROKER)
    result, checked = poll(config), check(config)
    assert result.returncode == checked.returncode == 2
    assert result.stderr == checked.stderr
    assert "devices[0].link" in result.stderr and "lann" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("protocol", ["modbus-rtu", "text"])
def test_a_serial_port_the_service_holds_is_named_not_waited_for(tmp_path, broker,
                                                                 protocol):
    """The real agent runs on the port; poll says so at once and opens nothing."""
    with PtyPair() as pty:
        if protocol == "text":
            sim = TextDeviceSim(NoxAnalyzerSim(address=7), pty.device_path).start()
            device = {"id": "ana-7", "link": "bus", "unit_id": 7,
                      "profile": "generic-text-analyzer", "interval_s": 0.2}
        else:
            sim = SimServer([SimUnit(1, holding=dict(DETECTOR))],
                            serial_port=pty.device_path, baudrate=19200).start()
            device = {"id": "ana-7", "link": "bus", "unit_id": 1,
                      "profile": "generic-gas-detector", "interval_s": 0.2}
        config = write_station(tmp_path / "station.yaml", links={"bus": {
            "type": "serial", "port": pty.agent_path, "protocol": protocol,
            "baudrate": 19200, "timeout_ms": 500}}, devices=[device],
            broker_port=broker.port)
        agent = AgentProcess(config, tmp_path / "agent.log").start()
        try:
            outbox = tmp_path / "outbox.sqlite3"
            wait_until(lambda: outbox.exists() and accepted_seqs(outbox).get("ana-7", 0) > 0,
                       60, "the service's first sample")
            result = poll(config)
        finally:
            agent.terminate()
            sim.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"serial port {pty.agent_path} is held by the running edge-agent service of " \
           "this station" in result.stdout
    assert "sudo systemctl stop edge-agent" in result.stdout


def test_poll_writes_no_outbox_and_publishes_nothing(tmp_path, broker, detectors):
    config = detector_station(tmp_path, detectors.tcp_port, broker_port=broker.port)
    heard: list[str] = []
    listener = Subscriber("127.0.0.1", broker.port, "#",
                          lambda topic, payload, retained: heard.append(topic)).start()
    try:
        result = poll(config)
        # Anything poll had published arrived before this marker, sent after it ended.
        mqtt_publish.single("test/marker", b"end", qos=1, hostname="127.0.0.1",
                            port=broker.port)
        wait_until(lambda: "test/marker" in heard, 30, "the marker")
    finally:
        listener.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert heard == ["test/marker"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["broker", "station.yaml"]


def test_a_tcp_device_taken_by_the_running_service_is_said_so(tmp_path):
    """A device with one connection slot, taken: the handshake completes (the kernel's
    backlog) but nothing ever answers. The service of this station runs (it holds the
    outbox's lock), so poll says the service may have the device's only connection."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        config = write_station(tmp_path / "station.yaml", links={
            "lan": tcp_link(taken.getsockname()[1], timeout_ms=200)}, devices=[
            {"id": "ftir-1", "link": "lan", "unit_id": 3, "profile": "generic-ftir"}],
            broker_port=NO_BROKER, polling={"retries": 0})
        service = OutboxLock(tmp_path / "outbox.sqlite3")
        try:
            result = poll(config)
        finally:
            service.release()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ftir-1  unit 3 on link lan" in result.stdout and "NO ANSWER" in result.stdout
    assert "hint: the edge-agent service of this station is running: a device that " \
           "accepts only one TCP connection gives it to the service" in result.stdout
