"""The sd_notify protocol, end to end: the real agent process (``python -m edge_agent run``)
against a pymodbus server and a private Mosquitto, with NOTIFY_SOCKET pointing at a
datagram socket this test binds, the way systemd runs a ``Type=notify`` service.

It must say READY=1 once started, send WATCHDOG=1 keep-alives while every worker makes
progress, withhold them while a poller thread is hung (frozen by ptrace inside the
process, as a thread blocked forever in the kernel is: nothing in the agent is patched),
send them again when the thread goes on, and say STOPPING=1 on SIGTERM.
"""

from __future__ import annotations

import pytest
from support.health import get, logged_port
from support.notify import NotifyListener
from support.station import AgentProcess, accepted_seqs, write_station
from support.threadfreeze import FrozenThread, thread_named
from support.waiting import wait_until

from edge_agent.config.schema import MqttConfig
from edge_agent.tools.sim.simserver import SimServer, SimUnit
from edge_agent.watchdog import stop_budget_s

WATCHDOG_USEC = 1_000_000  # keep-alives every 0.5 s, checks every 0.25 s
# The hung poller's promise: 0.2 s until its device is due, plus the longest poll of a
# one-channel device with a 200 ms timeout and no retries (poll_bound_s: 5.4 s).
DETECTED_WITHIN_S = 30  # far above that; a freeze that lands in a commit wait is retried
CHECKS_WITHOUT_KEEPALIVE = 6  # consecutive status reports proving the silence


def device(device_id: str, link: str, unit_id: int) -> dict:
    return {"id": device_id, "link": link, "unit_id": unit_id, "interval_s": 0.2,
            "channels": [{"name": "gas", "address": 0, "unit": "ppm"}]}


@pytest.fixture
def listener():
    sock = NotifyListener()  # abstract namespace: NOTIFY_SOCKET=@...
    yield sock
    sock.close()


def freeze_until_reported(agent: AgentProcess, listener: NotifyListener,
                          tid: int) -> tuple[FrozenThread, dict[str, str]]:
    """Freeze the poller and read notifications until the agent reports it stuck.

    A thread frozen while it waits for the outbox writer is not late on its own account
    (the writer's heartbeat covers that wait), so such a freeze is never reported; the
    thread is then let go and frozen again, at another moment.
    """
    assert agent.process is not None
    for _ in range(5):
        frozen = FrozenThread(agent.process.pid, tid)
        frozen.freeze()
        try:
            return frozen, listener.wait_for("STATUS", DETECTED_WITHIN_S,
                                             contains="poll-hang stuck")
        except AssertionError:
            frozen.thaw()
    raise AssertionError("the frozen poller was never reported stuck")


def test_keepalives_stop_while_a_poller_is_hung_and_resume_when_it_goes_on(
        tmp_path, broker, listener):
    server = SimServer([SimUnit(1, holding={0: 11}), SimUnit(2, holding={0: 22})]).start()
    endpoint = {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port,
                "timeout_ms": 200}
    config = write_station(
        tmp_path / "station.yaml", broker_port=broker.port,
        links={"hang": endpoint, "ok": dict(endpoint)},
        devices=[device("gas-hung", "hang", 1), device("gas-ok", "ok", 2)],
        store={"synchronous": "NORMAL"})  # short commits: fewer freezes inside one
    agent = AgentProcess(config, tmp_path / "agent.log",
                         env={"NOTIFY_SOCKET": listener.address,
                              "WATCHDOG_USEC": str(WATCHDOG_USEC)}).start()
    frozen: FrozenThread | None = None
    try:
        ready = listener.wait_for("READY", 30, value="1")
        assert "2 devices on 2 links" in ready["STATUS"], ready
        assert "edge-agent running" in agent.log(), "READY=1 before the agent started"
        for _ in range(3):
            listener.wait_for("WATCHDOG", 10, value="1")

        assert agent.process is not None
        wait_until(lambda: thread_named(agent.process.pid, "poll-hang") is not None, 10,
                   "the poller's thread to carry its name")
        tid = thread_named(agent.process.pid, "poll-hang")
        assert tid is not None
        frozen, report = freeze_until_reported(agent, listener, tid)
        assert "WATCHDOG" not in report, report
        assert "NOT RESPONDING" in report["STATUS"], report
        ok_before = accepted_seqs(tmp_path / "outbox.sqlite3")["gas-ok"]
        silent = [listener.wait_for("STATUS", 10) for _ in range(CHECKS_WITHOUT_KEEPALIVE)]
        assert all("WATCHDOG" not in fields for fields in silent), silent
        assert all("poll-hang stuck" in fields["STATUS"] for fields in silent), silent
        # Only that thread is stuck: the other link's poller keeps committing samples.
        wait_until(lambda: accepted_seqs(tmp_path / "outbox.sqlite3")["gas-ok"]
                   > ok_before + 3, 30, "the other poller to go on")
        log = agent.log()
        assert "CRITICAL edge_agent.watchdog: worker poll-hang stuck" in log, log[-3000:]
        port = logged_port(log)
        assert port is not None, "the health endpoint's port is logged"
        code, body = get(port, "/healthz")  # the endpoint judges hung workers the same way
        assert code == 503 and "poll-hang stuck" in body, (code, body)
        assert "edge_agent/poller.py" in log.split("worker poll-hang stuck", 1)[1], \
            "the report shows where the thread is stuck"

        frozen.thaw()
        frozen = None
        listener.wait_for("WATCHDOG", 30, value="1")
        wait_until(lambda: "worker poll-hang is making progress again" in agent.log(), 10,
                   "the recovery to be logged")

        assert agent.terminate() == 0, agent.log()[-3000:]
        stopping = listener.wait_for("STOPPING", 10, value="1")
        # the station file keeps the default shutdown_grace_s: the unit's TimeoutStopSec
        assert int(stopping["EXTEND_TIMEOUT_USEC"]) == stop_budget_s(MqttConfig(host="x")) * 1e6
    finally:
        if frozen is not None:
            frozen.thaw()  # a traced thread would keep the killed process from being reaped
        if agent.alive():
            agent.kill()
        server.stop()
