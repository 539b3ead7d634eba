"""Starting either pipeline as a real process on a ``Spec``, and reading its outbox after.

The agent runs as ``edge-agent run station.yaml`` (the installed entry point of this
checkout's venv); the bare pipeline as ``python -m bench.bare_pipeline spec.json``. Both
keep an ``outbox`` and a ``device_seq`` table; the counts are read the way the tests read
them (tests/support/station.py), read-only, after the process has exited or while it runs.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from bench.spec import Spec, station_doc

ROOT = Path(__file__).resolve().parent.parent
READY = {"agent": "edge-agent running", "bare": "bare pipeline running"}


class PipelineProcess:
    """One pipeline process with its log file."""

    def __init__(self, kind: str, spec: Spec, workdir: Path) -> None:
        self.kind, self.spec, self.workdir = kind, spec, workdir
        self.log_path = workdir / f"{kind}.log"
        if kind == "agent":
            station = workdir / "station.yaml"
            station.write_text(json.dumps(station_doc(spec), indent=1))
            command = [str(Path(sys.executable).parent / "edge-agent"), "--log-level", "info",
                       "run", str(station)]
        else:
            command = [sys.executable, "-m", "bench.bare_pipeline",
                       str(spec.save(workdir / "spec.json"))]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=ROOT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while READY[self.kind] not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.kind} did not start: {self.log()[-2000:]}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM, as systemd stops the service; the pipeline gets its grace period."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def _read(db: str, query: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def accepted_seqs(db: str) -> dict[str, int]:
    """Per device, the highest sequence number committed (samples 1..n were accepted)."""
    try:
        return dict(_read(db, "SELECT device_id, last_seq FROM device_seq"))
    except sqlite3.OperationalError as err:
        if "no such table" in str(err) or "unable to open" in str(err):
            return {}
        raise


def outbox_rows(db: str) -> int:
    try:
        return int(_read(db, "SELECT COUNT(*) FROM outbox")[0][0])
    except sqlite3.OperationalError as err:
        if "no such table" in str(err) or "unable to open" in str(err):
            return 0
        raise


def waiting_keys(db: str) -> set[tuple[str, int]]:
    """(device, seq) of every sample still in the outbox: not lost, just not delivered."""
    return {(device, int(seq)) for device, seq in
            _read(db, "SELECT device_id, seq FROM outbox WHERE kind = 'sample'")}
