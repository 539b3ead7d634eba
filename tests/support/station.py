"""Station files for tests, written the way a technician would (YAML on disk, loaded by
the real loader). JSON is valid YAML, so the dicts are dumped as JSON."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path


def write_station(path: Path, *, links: dict, devices: list[dict], broker_port: int,
                  store: dict | None = None, mqtt: dict | None = None,
                  polling: dict | None = None, station_id: str = "test-station",
                  health: dict | None = None) -> Path:
    """Write a station file; ``mqtt`` entries override the fast test defaults. The health
    endpoint listens on a free port (0) unless ``health`` says otherwise, so agents of
    tests running side by side never compete for the default port."""
    doc = {
        "station": {"id": station_id},
        "links": links,
        "devices": devices,
        "polling": {"retries": 0, "retry_wait_s": 0.05, "backoff_initial_s": 0.2,
                    "backoff_max_s": 1.0, **(polling or {})},
        "store": {"path": str(path.parent / "outbox.sqlite3"), **(store or {})},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "client_id": f"agent-{station_id}",
                 "keepalive_s": 5, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0,
                 **(mqtt or {})},
        "health": {"port": 0, **(health or {})},
    }
    path.write_text(json.dumps(doc, indent=2))
    return path


def accepted_seqs(outbox_path: Path) -> dict[str, int]:
    """Per device, the highest sequence number committed: samples 1..n were accepted.

    Empty while the agent has not created its schema yet (the file may already exist).
    """
    conn = sqlite3.connect(f"file:{outbox_path}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT device_id, last_seq FROM device_seq"))
    except sqlite3.OperationalError as err:
        if "no such table" in str(err):
            return {}
        raise
    finally:
        conn.close()


def outbox_rows(outbox_path: Path) -> int:
    conn = sqlite3.connect(f"file:{outbox_path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    finally:
        conn.close()


def outbox_snapshot(outbox_path: Path) -> tuple[int, dict[str, int]]:
    """Rows in the outbox and the last sequence number per device, read in one read
    transaction (so the count and the numbers belong to the same moment)."""
    conn = sqlite3.connect(f"file:{outbox_path}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("BEGIN")
        rows = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        return rows, dict(conn.execute("SELECT device_id, last_seq FROM device_seq"))
    finally:
        conn.close()


def seqs_in_outbox(outbox_path: Path) -> set[tuple[str, int]]:
    """(device, seq) of every sample still in the outbox."""
    conn = sqlite3.connect(f"file:{outbox_path}?mode=ro", uri=True)
    try:
        return set(conn.execute("SELECT device_id, seq FROM outbox WHERE kind = 'sample'"))
    finally:
        conn.close()


def samples_left(outbox_path: Path, device: str, up_to: int) -> int:
    """How many of ``device``'s samples 1..``up_to`` are still in the outbox: 0 once an
    uplink's acknowledgements let every one of them go."""
    conn = sqlite3.connect(f"file:{outbox_path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM outbox WHERE device_id = ? AND seq <= ?",
                            [device, up_to]).fetchone()[0]
    finally:
        conn.close()

_STARTED: list[AgentProcess] = []


def kill_leftover_agents() -> int:
    """SIGKILL every agent a test started and left running (a failed assertion between
    start and stop): a leftover would keep polling and publishing into later tests.
    Returns how many there were."""
    leftovers = [agent for agent in _STARTED if agent.alive()]
    for agent in leftovers:
        agent.kill()
    _STARTED.clear()
    return len(leftovers)


class AgentProcess:
    """``edge-agent run CONFIG`` as a real child process (so it can be SIGKILLed)."""

    def __init__(self, config_path: Path, log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        """``env``: variables added to the test's environment (NOTIFY_SOCKET, ...)."""
        self.config_path = config_path
        self.log_path = log_path
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "--log-level", "debug", "run",
                 str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        _STARTED.append(self)
        return self

    def wait_running(self, timeout_s: float = 30) -> AgentProcess:
        """Block until the agent logged that its pollers and forwarder are started."""
        from support.waiting import wait_until

        wait_until(lambda: "edge-agent running" in self.log() or not self.alive(), timeout_s,
                   "the agent to start")
        assert self.alive(), self.log()[-3000:]
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def reload(self) -> None:
        """SIGHUP, what ``systemctl reload`` sends: re-read the station file."""
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    def terminate(self, timeout_s: float = 30) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
