"""The running agent (``edge-agent run``, a real process) decides alarms: a pymodbus
detector crosses its limit -> one journal line and the beacon coil on the detector bus
set; high-high -> escalated and the siren on its own link set; back below the deadband
-> cleared and both reset. An alarm during calibration is logged unconfirmed with the
reason, and a detector that stops answering raises its communication alarm."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from edge_agent_drivers.modbus.settings import RegisterKind
from support.station import AgentProcess, write_station
from support.waiting import wait_until

from edge_agent.tools.sim.broker import Mosquitto
from edge_agent.tools.sim.simserver import SimServer, SimUnit

COIL, HOLDING = RegisterKind.COIL, RegisterKind.HOLDING
H2S, CL2, BEACON_UNIT = 1, 2, 9  # unit ids on the detector bus
CALIBRATING = 3  # toxic-gas-detector's state value (drivers/gas_detector/profiles)


def detector(unit_id: int) -> SimUnit:
    return SimUnit(unit_id, holding={0: 0, 1: 2, 2: 0})  # state ok, 0.2 ppm, no alarm


@pytest.fixture
def bus() -> Iterator[SimServer]:
    server = SimServer([detector(H2S), detector(CL2),
                        SimUnit(BEACON_UNIT, coils={0: False})], tcp_port=0).start()
    yield server
    server.stop()


@pytest.fixture
def io_module() -> Iterator[SimServer]:
    server = SimServer([SimUnit(1, coils={0: False})], tcp_port=0).start()
    yield server
    server.stop()


def start_agent(tmp_path: Path, broker: Mosquitto, bus: SimServer,
                io_module: SimServer) -> AgentProcess:
    path = write_station(
        tmp_path / "station.yaml", broker_port=broker.port,
        links={"bus": {"type": "tcp", "host": "127.0.0.1", "port": bus.tcp_port},
               "io": {"type": "tcp", "host": "127.0.0.1", "port": io_module.tcp_port}},
        devices=[
            {"id": "h2s-1", "link": "bus", "unit_id": H2S, "interval_s": 0.2,
             "profile": "toxic-gas-detector",
             "alarms": {"gas": {"high": {"limit": 10, "deadband": 1, "on_delay": 2},
                                "high_high": 20}}},
            {"id": "cl2-1", "link": "bus", "unit_id": CL2, "interval_s": 0.2,
             "profile": "toxic-gas-detector",
             "alarms": {"gas": {"high": 1, "high_high": 3}}}])
    text = path.read_text()[:-2] + """,
  "alarms": {"actions": [
    {"name": "beacon", "link": "bus", "unit_id": 9, "coil": 0},
    {"name": "siren", "link": "io", "unit_id": 1, "coil": 0, "min_level": 2,
     "unconfirmed": false}]}
}
"""
    path.write_text(text)
    return AgentProcess(path, tmp_path / "agent.log").start().wait_running()


def lines(agent: AgentProcess, pattern: str) -> list[str]:
    return [line for line in agent.log().splitlines() if re.search(pattern, line)]


def test_threshold_crossing_logs_the_alarm_and_switches_the_coils(
        tmp_path: Path, broker: Mosquitto, bus: SimServer, io_module: SimServer) -> None:
    agent = start_agent(tmp_path, broker, bus, io_module)
    beacon = lambda: bus.get_bits(BEACON_UNIT, COIL, 0)[0]  # noqa: E731
    siren = lambda: io_module.get_bits(1, COIL, 0)[0]  # noqa: E731
    try:
        bus.set_words(H2S, HOLDING, 1, [150])  # 15.0 ppm: above high (10)
        wait_until(beacon, 20, "the beacon coil ON")
        raised = lines(agent, r"alarm raised: h2s-1/gas/high ")
        assert len(raised) == 1 and "high level 1, 15.0 ppm (limit 10), confirmed" in raised[0]
        assert not siren()
        bus.set_words(H2S, HOLDING, 1, [250])  # 25.0 ppm: above high-high (20)
        wait_until(siren, 20, "the siren coil ON")
        assert lines(agent, r"alarm escalated: h2s-1/gas/high high_high level 2, 25.0 ppm")
        bus.set_words(H2S, HOLDING, 1, [85])  # 8.5 ppm: below 10 - deadband 1
        wait_until(lambda: not beacon() and not siren(), 20, "beacon and siren OFF")
        assert len(lines(agent, r"alarm cleared: h2s-1/gas/high ")) == 1
        assert lines(agent, r"alarm output beacon set OFF \(0 to coil 0 of unit 9 on link "
                            r"bus\) after 1 attempt")
    finally:
        assert agent.terminate() == 0


def test_calibration_alarm_is_unconfirmed_and_a_silent_detector_raises_its_own(
        tmp_path: Path, broker: Mosquitto, bus: SimServer, io_module: SimServer) -> None:
    agent = start_agent(tmp_path, broker, bus, io_module)
    try:
        bus.set_words(CL2, HOLDING, 0, [CALIBRATING, 50])  # span gas, 5.0 ppm
        wait_until(lambda: lines(agent, r"alarm raised: cl2-1/gas/high "), 20,
                   "the cl2 alarm")
        (raised,) = lines(agent, r"alarm raised: cl2-1/gas/high ")
        assert "UNCONFIRMED: calibrating" in raised and "level 2" in raised
        wait_until(lambda: bus.get_bits(BEACON_UNIT, COIL, 0)[0], 20, "the beacon ON")
        assert not io_module.get_bits(1, COIL, 0)[0]  # the siren ignores unconfirmed
        bus.mute(CL2)
        wait_until(lambda: lines(agent, r"alarm raised: cl2-1/communication/"), 20,
                   "the communication alarm")
        bus.mute(CL2, False)
        wait_until(lambda: lines(agent, r"alarm cleared: cl2-1/communication/"), 20,
                   "the communication alarm cleared")
        assert not lines(agent, r"alarm \w+: h2s-1/communication")
    finally:
        assert agent.terminate() == 0
