"""Recorded text-protocol traffic (drivers/serialtext/fixtures) for the tests: loading a
fixture's device through the real loader, and a strict replaying instrument on a pty."""

from __future__ import annotations

import json
import os
import select
import threading
from pathlib import Path

from edge_agent.config.loader import load_config
from edge_agent.config.schema import Device, Link

FIXTURES = Path(__file__).resolve().parents[2] / "drivers" / "serialtext" / "fixtures"


def fixture_files() -> list[Path]:
    return sorted(FIXTURES.glob("*.json"))


def load_fixture(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


#: The ``text:`` block of the streaming H2S analyzer (what H2sStreamSim sends), read from
#: its fixture: make_fixtures.py writes it there, so tests and fixture cannot drift apart.
H2S_TEXT: dict = load_fixture(FIXTURES / "h2s_stream.json")["device"]["text"]


def fixture_device(fixture: dict, tmp_path: Path, port: str = "/dev/ttyUSB0",
                   timeout_ms: int = 500) -> tuple[Device, Link]:
    """The fixture's device as the station loader makes it, on a text link at ``port``."""
    station = {
        "station": {"id": "fixtures"},
        "links": {"line": {"type": "serial", "port": port, "protocol": "text",
                           "timeout_ms": timeout_ms}},
        "devices": [fixture["device"]],
        "mqtt": {"host": "127.0.0.1"},
    }
    path = tmp_path / "station.yaml"
    path.write_text(json.dumps(station, indent=2), encoding="utf-8")
    config = load_config(path, env={})
    return config.devices[0], config.links["line"]


def sample_values(sample) -> dict:
    return {r.channel: {"value": r.value, "unit": r.unit, "quality": r.quality.value,
                        "reason": r.reason} for r in sample.readings}


class ReplayInstrument:
    """Plays a request/response fixture on the device end of a pty, strictly: each
    request must be exactly the recorded ``tx``; a different one is recorded in
    ``mismatches`` and gets no answer (so the test fails on it, not on a guess)."""

    def __init__(self, path: str, polls: list[dict]) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        self._polls = list(polls)
        self._stop = threading.Event()
        self.mismatches: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True, name="replay")

    def start(self) -> ReplayInstrument:
        self._thread.start()
        return self

    def _run(self) -> None:
        received = b""
        while not self._stop.is_set() and self._polls:
            expected = bytes.fromhex(self._polls[0]["tx"])
            if len(received) < len(expected):
                if select.select([self._fd], [], [], 0.05)[0]:
                    received += os.read(self._fd, 4096)
                continue
            request, received = received[:len(expected)], received[len(expected):]
            poll = self._polls.pop(0)
            if request != expected:
                self.mismatches.append(f"{poll['note']}: sent {request!r}, recorded {expected!r}")
                return
            os.write(self._fd, bytes.fromhex(poll["rx"]))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self._fd)
