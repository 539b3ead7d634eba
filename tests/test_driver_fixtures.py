"""Every shipped instrument profile against its recorded fixtures (drivers/*/fixtures/):
the capture is replayed strictly as the device (over TCP, or as RTU on a pty for the
RS-485 detectors), the profile's driver polls it once, and the readings must equal the
expected ones. A request that differs from the recording fails the replay, so a change
in request planning shows up here as well as a change in decoding."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from edge_agent_drivers.modbus.protocol.transport import ModbusLinkClient
from edge_agent_drivers.modbus.settings import ReadLimits

from edge_agent.config.loader import load_config
from edge_agent.config.schema import Device, SerialLink, TcpLink
from edge_agent.driver import load_driver
from edge_agent.link import LinkError
from edge_agent.tools.capture.files import read_capture
from edge_agent.tools.capture.loopthread import InBackground
from edge_agent.tools.replay.rtu_server import RtuReplayServer
from edge_agent.tools.replay.script import load_script
from edge_agent.tools.replay.strict import StrictReplay
from edge_agent.tools.replay.tcp_server import TcpReplayServer
from edge_agent.tools.sim.ptypair import PtyPair

DRIVERS = Path(__file__).resolve().parent.parent / "drivers"
FIXTURES = sorted(DRIVERS.glob("*/fixtures/*.expected.json"))


def device_from(expected: dict, tmp_path: Path) -> Device:
    """The case's device exactly as a station file would write it, through the loader."""
    station = {"station": {"id": "fixtures"},
               "links": {"lan": {"type": "tcp", "host": "127.0.0.1"}},
               "devices": [{**expected["device"], "link": "lan"}],
               "mqtt": {"host": "127.0.0.1"}}
    path = tmp_path / "station.yaml"
    path.write_text(json.dumps(station))
    return load_config(path, env={}).devices[0]


def poll_replayed(capture: Path, device: Device, replay_as: str, polled_at: datetime):
    """One poll of ``device`` against a strict replay of ``capture``."""
    replay = StrictReplay(load_script(read_capture(capture)))
    driver = load_driver(device)
    if replay_as == "rtu":
        with PtyPair() as pty, InBackground(RtuReplayServer(replay, pty.device_path),
                                            "replay"):
            client = ModbusLinkClient(SerialLink("bus", pty.agent_path, timeout_ms=500))
            try:
                return driver.poll(client, polled_at), replay
            finally:
                client.close()
    with InBackground(TcpReplayServer(replay), "replay") as running:
        client = ModbusLinkClient(TcpLink("lan", "127.0.0.1", running.server.port,
                                          timeout_ms=500))
        try:
            return driver.poll(client, polled_at), replay
        finally:
            client.close()


def test_every_profile_has_fixtures():
    profiles = {path.parent.name for path in DRIVERS.glob("*/profile.yaml")}
    profiles.discard("serialtext")  # text protocols: tests/test_text_fixtures.py
    with_fixtures = {path.parent.parent.name for path in FIXTURES}
    assert profiles <= with_fixtures, f"no fixtures for {profiles - with_fixtures}"


def test_every_named_profile_has_fixtures():
    """A family's further profiles (drivers/<family>/profiles/NAME.yaml) too: at least
    one recorded case whose device uses NAME."""
    named = {path.stem for path in DRIVERS.glob("*/profiles/*.yaml")}
    recorded = {json.loads(path.read_text())["device"]["profile"] for path in FIXTURES}
    assert named <= recorded, f"no fixtures for {named - recorded}"


@pytest.mark.parametrize("expected_path", FIXTURES, ids=lambda p: p.name.split(".")[0])
def test_recorded_exchange_gives_the_expected_readings(expected_path, tmp_path):
    expected = json.loads(expected_path.read_text())
    capture = expected_path.with_name(expected_path.name.replace(".expected.json",
                                                                 ".capture.jsonl"))
    device = device_from(expected, tmp_path)
    sample, replay = poll_replayed(capture, device, expected["replay_as"],
                                   datetime.fromisoformat(expected["polled_at"]))
    assert replay.mismatches == [] and replay.done, "the requests differ from the recording"
    assert sample is not None
    got = {r.channel: [r.value, r.unit, r.quality.value, r.reason] for r in sample.readings}
    assert got == expected["values"]
    when = sample.instrument_time.isoformat() if sample.instrument_time else None
    assert when == expected["instrument_time"]
    assert sample.extra.get("stream") == expected["stream"]


def test_a_different_request_plan_fails_the_strict_replay(tmp_path):
    """Strictness is real: the same device read in smaller requests than recorded."""
    expected_path = DRIVERS / "gc" / "fixtures" / "generic-gc-analysis.expected.json"
    expected = json.loads(expected_path.read_text())
    device = device_from(expected, tmp_path)
    device = replace(device, settings=replace(device.settings, limits=ReadLimits(max_registers=10)))
    capture = expected_path.with_name("generic-gc-analysis.capture.jsonl")
    with pytest.raises(LinkError) as failed:  # the replay hangs up on the first request
        poll_replayed(capture, device, "tcp", datetime.fromisoformat(expected["polled_at"]))
    assert failed.value.reason in ("no_connection", "timeout"), failed.value
