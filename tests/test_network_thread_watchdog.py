"""The MQTT network thread under the service watchdog, end to end: the real agent process
with NOTIFY_SOCKET pointing at a datagram socket this test binds (as systemd runs a
``Type=notify`` service), a pymodbus device and a private Mosquitto. The thread
``mqtt-net`` is frozen by ptrace inside a system call, as a thread blocked forever in
the kernel is; nothing in the agent is patched."""

from __future__ import annotations

import pytest
from support.health import get, logged_port
from support.notify import NotifyListener
from support.station import AgentProcess, write_station
from support.threadfreeze import FrozenThread, thread_named
from support.waiting import wait_until

from edge_agent.tools.sim.simserver import SimServer, SimUnit
from edge_agent.watchdog import MQTT_NET_PASS_S

WATCHDOG_USEC = 1_000_000  # keep-alives every 0.5 s, checks every 0.25 s
DETECTED_WITHIN_S = 3 * MQTT_NET_PASS_S  # its promise, with room for a loaded machine


@pytest.fixture
def listener():
    sock = NotifyListener()
    yield sock
    sock.close()


def test_keepalives_stop_while_the_mqtt_network_thread_is_hung_and_resume_after(
        tmp_path, broker, listener):
    server = SimServer([SimUnit(1, holding={0: 11})]).start()
    config = write_station(
        tmp_path / "station.yaml", broker_port=broker.port,
        links={"gw": {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port}},
        devices=[{"id": "gas-1", "link": "gw", "unit_id": 1, "interval_s": 0.2,
                  "channels": [{"name": "gas", "address": 0, "unit": "ppm"}]}])
    agent = AgentProcess(config, tmp_path / "agent.log",
                         env={"NOTIFY_SOCKET": listener.address,
                              "WATCHDOG_USEC": str(WATCHDOG_USEC)}).start()
    frozen: FrozenThread | None = None
    try:
        listener.wait_for("READY", 30, value="1")
        listener.wait_for("WATCHDOG", 10, value="1")
        assert agent.process is not None
        wait_until(lambda: thread_named(agent.process.pid, "mqtt-net") is not None, 30,
                   "the network thread to carry its name")
        tid = thread_named(agent.process.pid, "mqtt-net")
        assert tid is not None
        frozen = FrozenThread(agent.process.pid, tid)
        frozen.freeze()
        report = listener.wait_for("STATUS", DETECTED_WITHIN_S, contains="mqtt-net stuck")
        assert "WATCHDOG" not in report and "NOT RESPONDING" in report["STATUS"], report
        port = logged_port(agent.log())
        assert port is not None
        code, body = get(port, "/healthz")
        assert code == 503 and "worker thread mqtt-net stuck" in body, (code, body)
        assert "CRITICAL edge_agent.watchdog: worker mqtt-net stuck" in agent.log()

        frozen.thaw()
        frozen = None
        listener.wait_for("WATCHDOG", 60, value="1")
        assert agent.terminate() == 0, agent.log()[-3000:]
    finally:
        if frozen is not None:
            frozen.thaw()
        if agent.alive():
            agent.kill()
        server.stop()
