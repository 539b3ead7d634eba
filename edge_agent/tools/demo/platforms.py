"""The demo's HJ 212 platforms: each an ``edge-agent hj212-platform`` child process, as an
engineer would run one, with its readable log in ``platform-NAME.log`` and its JSON-lines
log in ``platform-NAME.jsonl`` (what the tally is read from, so the numbers shown are the
platform's own, not the station's)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.tools.demo.children import stop_child

STARTUP_TIMEOUT_S = 30.0  # a cold Python start on a busy 2-core box


class PlatformStartError(RuntimeError):
    """The simulator did not say where it listens: its log says why."""


@dataclass(frozen=True)
class PlatformTally:
    """What one platform received: accepted packets by CN, the 9014 acknowledgements it
    sent, packets marked re-sent (``RF=1``) and packets that failed a check."""

    by_cn: Counter[str] = field(default_factory=Counter)
    acknowledged: int = 0
    resent: int = 0
    rejected: int = 0


def read_events(jsonl: Path) -> list[dict]:
    """Every complete event of a platform's JSON-lines log (a line being written is left)."""
    if not jsonl.exists():
        return []
    lines = jsonl.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def tally(events: list[dict]) -> PlatformTally:
    """Count a platform's log: the pure part of ``DemoPlatform.tally``."""
    packets = [event for event in events if event["event"] == "packet"]
    return PlatformTally(
        by_cn=Counter(packet["cn"] for packet in packets),
        acknowledged=sum(event["event"] == "sent" and event["cn"] == "9014"
                         for event in events),
        resent=sum(bool(packet["rf"]) for packet in packets),
        rejected=sum(event["event"] == "rejected" for event in events))


class DemoPlatform:
    """One simulator process on a free port of 127.0.0.1."""

    def __init__(self, name: str, version: str, folder: Path, options: tuple[str, ...]) -> None:
        self.name = name
        self.version = version
        self.log_path = folder / f"platform-{name}.log"
        self.jsonl = folder / f"platform-{name}.jsonl"
        self._options = options
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> DemoPlatform:
        """Start it and wait for its ``listening`` event; ``PlatformStartError`` if none."""
        self.jsonl.unlink(missing_ok=True)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "hj212-platform", "--port", "0",
                 "--jsonl", str(self.jsonl), *self._options],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and self._process.poll() is None:
            listening = [e for e in read_events(self.jsonl) if e["event"] == "listening"]
            if listening:
                self.port = int(listening[0]["port"])
                return self
            time.sleep(0.05)
        self.stop()
        raise PlatformStartError(f"hj212-platform {self.name} did not start; see "
                                 f"{self.log_path}")

    def stop(self) -> None:
        """SIGTERM: the simulator writes its ``summary:`` line and exits."""
        if self._process is not None:
            stop_child(self._process, timeout_s=10)

    def tally(self) -> PlatformTally:
        return tally(read_events(self.jsonl))
