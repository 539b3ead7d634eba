"""Every documented setting at its lowest and at its highest passes ``check`` and runs.

An agent that exits with status 1 on a file ``check`` accepted is a ``check`` bug: systemd
restarts it forever and the station sends nothing. Each station file below sets every
setting of a Modbus TCP station (docs/configuration.md) to one end of its documented
range; ``edge-agent check`` must accept it (exit 0) and ``edge-agent run`` must connect,
keep running and stop cleanly against a real Mosquitto and a real Modbus server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.station import AgentProcess

from edge_agent.config.limits import (
    BACKOFF_INITIAL_S,
    BACKOFF_MAX_S,
    INTERVAL_S,
    LIVE_WINDOW_S,
    RECONNECT_MAX_S,
    RECONNECT_MIN_S,
)
from edge_agent.config.names import (
    CONNECT_TEXT_MAX,
    ID_MAX,
    LABEL_MAX,
    TOPIC_TEMPLATE_MAX,
    UNIT_MAX,
)
from edge_agent.tools.sim.simserver import SimServer, SimUnit


def _template(tail: str) -> str:
    """A topic template of exactly TOPIC_TEMPLATE_MAX characters, collected under edge/."""
    head = "edge/"
    return head + "t" * (TOPIC_TEMPLATE_MAX - len(head) - len(tail)) + tail


def lowest(server_port: int, broker_port: int, folder: Path) -> dict:
    """Every setting at the low end of its range (shortest ids, fastest timings)."""
    return {
        "station": {"id": "S"},
        "links": {"g": {"type": "tcp", "host": "127.0.0.1", "port": server_port,
                        "protocol": "modbus-tcp", "timeout_ms": 10, "connect_pause_ms": 0,
                        "request_gap_ms": 0}},
        "devices": [{"id": "d", "link": "g", "unit_id": 1, "interval_s": INTERVAL_S[0],
                     "timeout_ms": 10, "retries": 0,
                     "read": {"max_registers": 1, "max_bits": 1, "max_gap": 0},
                     "channels": [{"name": "a", "address": 0, "unit": ""}]}],
        "polling": {"retries": 0, "retry_wait_s": 0, "backoff_initial_s": BACKOFF_INITIAL_S[0],
                    "backoff_max_s": BACKOFF_MAX_S[0]},
        "store": {"path": str(folder / "outbox.sqlite3"), "synchronous": "NORMAL",
                  "retention": {"max_rows": 1, "max_bytes": "1MB", "max_age_s": 1}},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "client_id": "c",
                 "protocol": "3.1.1", "keepalive_s": 5, "qos": 1, "max_inflight": 1,
                 "max_samples_per_message": 1, "max_message_bytes": 1024,
                 "live_window_s": LIVE_WINDOW_S[0], "reconnect_min_s": RECONNECT_MIN_S[0],
                 "reconnect_max_s": RECONNECT_MAX_S[0], "shutdown_grace_s": 0,
                 "topics": {"data": "edge/{device}", "gap": "edge/{device}/g",
                            "status": "edge/{station}"}},
        "health": {"enabled": True, "host": "127.0.0.1", "port": 0},
    }


def highest(server_port: int, broker_port: int, folder: Path) -> dict:
    """Every setting at the high end of its range (longest ids and texts, slowest timings).

    ``max_rows`` and ``max_bytes`` have no documented upper end: the largest SQLite integer
    stands for it. The health port is 0 rather than 65535, which another test may hold.
    """
    link = "L" * ID_MAX
    return {
        "station": {"id": "S" * ID_MAX},
        "links": {link: {"type": "tcp", "host": "127.0.0.1", "port": server_port,
                         "protocol": "modbus-tcp", "timeout_ms": 60000,
                         "connect_pause_ms": 60000, "request_gap_ms": 10000}},
        "devices": [{"id": "D" * ID_MAX, "link": link, "unit_id": 1,
                     "interval_s": INTERVAL_S[1], "timeout_ms": 60000, "retries": 10,
                     "read": {"max_registers": 125, "max_bits": 2000, "max_gap": 124},
                     "channels": [{"name": "n" * LABEL_MAX, "address": 65535,
                                   "unit": "µg/m³" + "u" * (UNIT_MAX - 5)}]}],
        "polling": {"retries": 10, "retry_wait_s": 60, "backoff_initial_s": BACKOFF_INITIAL_S[1],
                    "backoff_max_s": BACKOFF_MAX_S[1]},
        "store": {"path": str(folder / "outbox.sqlite3"), "synchronous": "FULL",
                  "retention": {"max_rows": 2**63 - 1, "max_bytes": 2**63 - 1,
                                "max_age_s": "3650d"}},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "client_id": "c" * CONNECT_TEXT_MAX,
                 "username": "u" * CONNECT_TEXT_MAX, "protocol": "5", "keepalive_s": 3600,
                 "qos": 1, "max_inflight": 1000, "max_samples_per_message": 10000,
                 "max_message_bytes": 268435455, "live_window_s": LIVE_WINDOW_S[1],
                 "reconnect_min_s": RECONNECT_MIN_S[1], "reconnect_max_s": RECONNECT_MAX_S[1],
                 "shutdown_grace_s": 300,
                 "topics": {"data": _template("/{station}/{device}"),
                            "gap": _template("/{station}/{device}/g"),
                            "status": _template("/{station}")}},
        "health": {"enabled": True, "host": "0.0.0.0", "port": 0},
    }


def check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_agent", "check", str(path)],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))


@pytest.mark.parametrize("build", [lowest, highest], ids=["lowest", "highest"])
def test_every_setting_at_its_limit_passes_check_then_runs_and_stops_cleanly(
        build, tmp_path, broker, collector):
    server = SimServer([SimUnit(1, holding={0: 5, 65535: 7})]).start()
    try:
        path = tmp_path / "station.yaml"
        doc = build(server.tcp_port, broker.port, tmp_path)
        path.write_text(json.dumps(doc, ensure_ascii=False, indent=2), encoding="utf-8")
        result = check(path)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        agent = AgentProcess(path, tmp_path / "agent.log").start().wait_running()
        station = doc["station"]["id"]
        collector.wait_for(lambda c: any(s["station"] == station and s["state"] == "online"
                                         for s in c.status), 60, "the station online")
        if build is lowest:  # the highest polls only after connect_pause_ms (60 s)
            collector.wait_for(lambda c: len(c.seqs("d")) >= 3, 60, "readings")
        assert agent.alive(), agent.log()[-3000:]
        assert agent.terminate(timeout_s=120) == 0, agent.log()[-3000:]
    finally:
        server.stop()
    assert "Traceback" not in agent.log()
    if build is highest:  # run logs each warning of check at WARNING, at start
        assert "WARNING edge_agent.config: " in agent.log()
        assert "health.host: the endpoint listens on every network interface" in agent.log()
