"""The HJ 212 platform simulator (edge_agent/tools/hj212platform) in the test's process,
read back from its JSON-lines log: ``RunningPlatform`` for the send-path and session
tests (one per behaviour, closed at the test's end), ``PlatformUnderTest`` for tests that
take a platform down and bring it back on the same port (its log appended to across
restarts)."""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edge_agent.hj212.cp import parse_region
from edge_agent.hj212.packet import ParseOptions
from edge_agent.tools.hj212platform.log import PlatformLog
from edge_agent.tools.hj212platform.server import Behaviour, Platform


def platform_events(jsonl: Path, kind: str) -> list[dict]:
    """The ``kind`` events of a simulator's JSON-lines log, in order. A last line the
    server is still writing (no closing brace yet) is read on a later call."""
    if not jsonl.exists():
        return []
    lines = jsonl.read_text(encoding="utf-8").splitlines()
    return [event for line in lines if line.endswith("}")
            and (event := json.loads(line))["event"] == kind]


class RunningPlatform:
    """The simulator's server in this process with ``behaviour``; its log read back."""

    def __init__(self, folder: Path, behaviour: Behaviour) -> None:
        self.jsonl = folder / f"platform-{id(self)}.jsonl"
        self.log = PlatformLog(io.StringIO(), self.jsonl)
        self.platform = Platform("127.0.0.1", 0, behaviour, self.log)
        self.port = self.platform.port
        threading.Thread(target=self.platform.server.serve_forever, daemon=True).start()

    def events(self, kind: str) -> list[dict]:
        return platform_events(self.jsonl, kind)

    def packets(self, cn: str | None = None) -> list[dict]:
        """The packets received (``cn``: of that command only)."""
        return [e for e in self.events("packet") if cn is None or e["cn"] == cn]

    def sent(self, cn: str) -> list[dict]:
        """The packets the platform sent with command ``cn``."""
        return [e for e in self.events("sent") if e["cn"] == cn]

    def data_times(self) -> list[str]:
        """The DataTime of every whole (unsplit) 2011 received, in arrival order."""
        return [parse_region(p["cp"]).get("DataTime") or "" for p in self.packets("2011")]

    def close(self) -> None:
        self.platform.server.shutdown()
        self.platform.server.server_close()
        self.log.close()


def running_platforms(folder: Path) -> Iterator[Callable[..., RunningPlatform]]:
    """Body of a ``platform`` fixture (``yield from``): the test calls it with
    ``Behaviour`` fields to start a platform; every one started is closed after it."""
    started: list[RunningPlatform] = []

    def start(**behaviour: Any) -> RunningPlatform:
        running = RunningPlatform(folder, Behaviour(**behaviour))
        started.append(running)
        return running

    yield start
    for running in started:
        running.close()


class PlatformUnderTest:
    """One simulator on ``port`` (0: a free one) answering 9014/9013; ``sm4_key`` reads
    HJ 212-2025 encrypted data regions."""

    def __init__(self, jsonl: Path, port: int = 0, sm4_key: bytes | None = None) -> None:
        self.jsonl = jsonl
        self.sm4_key = sm4_key
        self.log = PlatformLog(io.StringIO(), jsonl)
        behaviour = Behaviour(options=ParseOptions(sm4_key=sm4_key))
        self.platform = Platform("127.0.0.1", port, behaviour, self.log)
        self.port = self.platform.port
        threading.Thread(target=self.platform.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Down: no listener (connections refused), the stations' connections closed."""
        self.platform.server.shutdown()
        self.platform.server.server_close()
        for connection in list(self.platform._connections.values()):
            connection.sock.shutdown(socket.SHUT_RDWR)

    def close_log(self) -> None:
        """At the test's end: a connection thread of a stopped platform may still log its
        ``closed`` event, so ``stop`` leaves the log open (the restarted one appends)."""
        self.log.close()

    def restarted(self) -> PlatformUnderTest:
        """The same platform up again on the same port, logging to the same file."""
        return PlatformUnderTest(self.jsonl, self.port, self.sm4_key)

    def events(self, kind: str) -> list[dict]:
        return platform_events(self.jsonl, kind)

    def packets(self, cn: str) -> list[dict]:
        return [packet for packet in self.events("packet") if packet["cn"] == cn]

    def factors(self, cn: str) -> list[tuple[str, str, bool, dict[str, str]]]:
        """(DataTime, code, RF, items) of every factor of every ``cn`` packet received."""
        found = []
        for packet in self.packets(cn):
            region = parse_region(packet["cp"])
            for factor in region.factors():
                found.append((region.get("DataTime") or "", factor.code or "",
                              bool(packet["rf"]), dict(factor.values)))
        return found
