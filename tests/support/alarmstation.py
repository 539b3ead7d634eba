"""A station of two toxic-gas detectors with alarm rules, on one pymodbus server: what
the tests of active alarms (status, /metrics, the page) run an agent against."""

from __future__ import annotations

from pathlib import Path

from edge_agent.tools.sim.simserver import SimServer, SimUnit
from support.station import write_station

H2S, CL2 = 1, 2  # unit ids on the detector bus
CALIBRATING = 3  # toxic-gas-detector's state value (drivers/gas_detector/profiles)
GAS = 1  # holding register of the gas reading, 0.1 ppm per count (state is 0)


def detector_bus() -> SimServer:
    """Both detectors: state ok, 0.2 ppm, no alarm of their own. Started; stop it."""
    return SimServer([SimUnit(unit, holding={0: 0, 1: 2, 2: 0}) for unit in (H2S, CL2)],
                     tcp_port=0).start()


def alarm_station(tmp_path: Path, broker_port: int, bus_port: int,
                  health_port: int = 0) -> Path:
    """h2s-1: high 10 ppm (deadband 1), high-high 20; cl2-1: high 1, high-high 3.
    ``health_port``: a fixed one when ``edge-agent status`` must find the agent from the
    station file (0: any free port, logged)."""
    return write_station(
        tmp_path / "station.yaml", broker_port=broker_port, station_id="cp-east-03",
        health={"port": health_port},
        links={"bus": {"type": "tcp", "host": "127.0.0.1", "port": bus_port}},
        devices=[
            {"id": "h2s-1", "link": "bus", "unit_id": H2S, "interval_s": 0.2,
             "profile": "toxic-gas-detector",
             "alarms": {"gas": {"high": {"limit": 10, "deadband": 1}, "high_high": 20}}},
            {"id": "cl2-1", "link": "bus", "unit_id": CL2, "interval_s": 0.2,
             "profile": "toxic-gas-detector",
             "alarms": {"gas": {"high": 1, "high_high": 3}}}])
