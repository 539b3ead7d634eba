"""An RS-485 adapter unplugged and plugged back: BAD readings naming the missing port,
then normal data, without restarting the agent."""

from __future__ import annotations

import logging

from support.station import write_station

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.modbus.transport import SimServer, SimUnit
from edge_agent.sim.ptypair import PtyPair


def test_unplugged_usb_adapter_reports_missing_port_then_recovers(
        tmp_path, broker, collector, caplog):
    caplog.set_level(logging.INFO, logger="edge_agent")
    port = tmp_path / "ttyUSB0"  # a symlink standing in for the udev device node
    path = write_station(
        tmp_path / "station.yaml", broker_port=broker.port,
        links={"rs485": {"type": "serial", "port": str(port), "timeout_ms": 200}},
        devices=[{"id": "det-1", "link": "rs485", "unit_id": 1, "interval_s": 0.1,
                  "channels": [{"name": "co", "address": 0, "unit": "ppm"}]}])
    agent = Agent(load_config(path))
    agent.start()
    with PtyPair() as pty:
        server = SimServer([SimUnit(1, holding={0: 17})], serial_port=pty.device_path).start()
        try:
            collector.wait_for(lambda c: any(
                r.sample["values"]["co"]["reason"] == "no_connection" for r in c.samples),
                30, "BAD no_connection readings while the adapter is missing")
            port.symlink_to(pty.agent_path)  # plugged in
            collector.wait_for(lambda c: any(
                r.sample["values"]["co"]["value"] == 17 for r in c.samples), 60,
                "data once the adapter is back")
        finally:
            agent.stop()
            server.stop()
    down = [r.getMessage() for r in caplog.records if "not answering" in r.getMessage()]
    assert len(down) == 1 and f"serial port {port} does not exist" in down[0]
    assert any("answering again" in r.getMessage() for r in caplog.records)
