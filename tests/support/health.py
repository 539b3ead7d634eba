"""Reaching a test agent's health endpoint, and reading /metrics the way Prometheus does
(prometheus_client's own text parser, so a formatting slip fails the test)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

from edge_agent_drivers.modbus.settings import RegisterKind
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.tools.sim.simserver import SimServer, SimUnit

_LISTENING = re.compile(r"health endpoint listening on http://127\.0\.0\.1:(\d+)")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def logged_port(log_text: str) -> int | None:
    """The port an agent started with ``health.port: 0`` logged it listens on."""
    found = _LISTENING.search(log_text)
    return int(found.group(1)) if found else None


def get(port: int, path: str) -> tuple[int, str]:
    """(HTTP status, body) of a GET on the agent's endpoint."""
    try:
        with _OPENER.open(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def status(port: int) -> dict:
    code, body = get(port, "/status")
    assert code == 200, body
    return json.loads(body)


def status_when_up(port: int) -> dict:
    """/status, or {} while nothing listens yet (for wait_until)."""
    try:
        return status(port)
    except urllib.error.URLError:
        return {}


class Scrape:
    """One /metrics page, parsed: samples by name and labels, families by name."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.types: dict[str, str] = {}
        self.samples: dict[tuple[str, frozenset], float] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                assert key not in self.samples, f"duplicate series {key}"
                self.samples[key] = sample.value

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def series(self, name: str) -> dict[frozenset, float]:
        return {labels: value for (sample, labels), value in self.samples.items()
                if sample == name}


def scrape(port: int) -> Scrape:
    code, body = get(port, "/metrics")
    assert code == 200, body
    return Scrape(body)


def detectors(port: int, interval_s: float = 0.1) -> tuple[dict, list[dict]]:
    """A TCP link with a detector whose channel b is an illegal address (isolated after
    exception 02) and a muted one that never answers (``detector_server``)."""
    links = {"gw": {"type": "tcp", "host": "127.0.0.1", "port": port, "timeout_ms": 100}}
    devices = [
        {"id": "det-ok", "link": "gw", "unit_id": 1, "interval_s": interval_s,
         "channels": [{"name": "a", "address": 0, "unit": "ppm"},
                      {"name": "b", "address": 1, "unit": "ppm"},
                      {"name": "c", "address": 2, "unit": "ppm"}]},
        {"id": "det-mute", "link": "gw", "unit_id": 2, "interval_s": interval_s,
         "channels": [{"name": "a", "address": 0, "unit": "ppm"}]},
    ]
    return links, devices


def detector_server() -> SimServer:
    """Unit 1 answers (5 and 7 around a hole at address 1); unit 2 is muted."""
    return SimServer([SimUnit(1, holding={0: 5, 2: 7}, holes={RegisterKind.HOLDING: [1]}),
                      SimUnit(2, muted=True)]).start()
