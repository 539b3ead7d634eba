"""An RS-485 adapter unplugged and plugged back: BAD readings naming the missing port,
then normal data, without restarting the agent."""

from __future__ import annotations

import logging

import pytest
from edge_agent_drivers.modbus.protocol import pymodbus_client
from edge_agent_drivers.modbus.protocol.transport import DeviceTimeout, ModbusLinkClient
from edge_agent_drivers.modbus.settings import RegisterKind
from support.drainclock import LateAnswerInTheDrain
from support.rawrtu import RawRtuSlave
from support.station import write_station

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.config.schema import SerialLink
from edge_agent.tools.sim.ptypair import PtyPair
from edge_agent.tools.sim.simserver import SimServer, SimUnit


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


def test_late_rtu_answer_is_discarded_not_taken_for_the_next_request(monkeypatch):
    """A slow analyzer or a busy gateway answers the first read after the 300 ms timeout:
    the answer lands while the client waits for a quiet line (the drain's clock releases
    it there, tests/support/drainclock.py) and is discarded, so the next reads, of
    another table and of the first one again, get their own answers."""
    with PtyPair() as pty, \
            RawRtuSlave(pty.device_path, iter(["late", "good", "good"])) as slave, \
            LateAnswerInTheDrain(slave.release_late, pty.agent_path) as clock:
        monkeypatch.setattr(pymodbus_client, "drain_clock", clock)
        client = ModbusLinkClient(SerialLink("rs485", pty.agent_path, timeout_ms=300))
        try:
            with pytest.raises(DeviceTimeout):
                client.read_registers(1, RegisterKind.HOLDING, 0, 10)
            assert clock.released == 1
            assert client.read_registers(1, RegisterKind.INPUT, 50, 2) == [7050, 7051]
            assert client.read_registers(1, RegisterKind.HOLDING, 0, 3) == [100, 101, 102]
        finally:
            client.close()
