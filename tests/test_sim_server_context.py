"""``with SimServer(...) as server:`` serves for the block and stops the server however the
block ends, so a failing test leaves no server thread or bound port behind. A real
pymodbus server, read by the agent's own Modbus client."""

from __future__ import annotations

import socket

import pytest
from edge_agent_drivers.modbus.protocol.transport import ModbusLinkClient
from edge_agent_drivers.modbus.settings import RegisterKind

from edge_agent.config.schema import TcpLink
from edge_agent.tools.sim.simserver import SimServer, SimUnit


def read_first_register(port: int) -> list[int]:
    client = ModbusLinkClient(TcpLink("lan", "127.0.0.1", port, timeout_ms=2000))
    try:
        return client.read_registers(1, RegisterKind.HOLDING, 0, 1)
    finally:
        client.close()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_the_block_is_served_and_the_server_stopped_after_it():
    with SimServer([SimUnit(1, holding={0: 42})], tcp_port=0) as server:
        port = server.tcp_port
        assert read_first_register(port) == [42]
    assert refused(port)


def test_a_failing_block_still_stops_the_server():
    with pytest.raises(RuntimeError, match="the test failed"), \
            SimServer([SimUnit(1)], tcp_port=0) as server:
        port = server.tcp_port
        raise RuntimeError("the test failed")
    assert refused(port)


def test_a_server_started_before_the_block_is_not_started_twice():
    with SimServer([SimUnit(1, holding={0: 7})], tcp_port=0).start() as server:
        assert read_first_register(server.tcp_port) == [7]
    assert refused(server.tcp_port)
