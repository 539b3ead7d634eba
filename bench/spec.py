"""What one run offers, written once and read by both pipelines, so they do the same work.

The same ``Spec`` becomes the agent's station file (``station_doc``) and the bare
pipeline's JSON file: the same simulator ports and unit ids, the same 25 float32 tags per
device on input registers 0.., the same interval, broker, in-flight window and batching.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATION = "bench"
UNIT = "ppm"
LIVE_WINDOW_S = 30.0  # the agent's default mqtt.live_window_s; bare uses the same


@dataclass(frozen=True)
class Link:
    """One simulated Modbus TCP endpoint and the unit ids polled on it."""

    port: int
    units: tuple[int, ...]


@dataclass(frozen=True)
class Spec:
    """One pipeline run: devices to poll, where to store, where to publish."""

    links: tuple[Link, ...]
    tags: int
    interval_s: float
    broker_port: int
    db: str
    max_inflight: int = 20
    max_samples_per_message: int = 50
    synchronous: str = "FULL"
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def devices(self) -> int:
        return sum(len(link.units) for link in self.links)

    def device_ids(self) -> list[str]:
        return [device_id(index, unit) for index, link in enumerate(self.links)
                for unit in link.units]

    def offered_tags_per_s(self) -> float:
        return self.devices * self.tags / self.interval_s

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @staticmethod
    def load(path: Path) -> Spec:
        doc = json.loads(Path(path).read_text())
        links = tuple(Link(item["port"], tuple(item["units"])) for item in doc.pop("links"))
        return Spec(links=links, **doc)


def device_id(link_index: int, unit: int) -> str:
    return f"dev-{link_index}-{unit}"


def tag_name(index: int) -> str:
    return f"t{index:02d}"


def tag_value(unit: int, index: int) -> float:
    """Exact in float32 and short in decimal, so both pipelines print the same digits."""
    return unit + index * 0.25


def station_doc(spec: Spec, health_port: int = 0) -> dict:
    """The agent's station file for ``spec`` (JSON is YAML)."""
    channels = [{"name": tag_name(i), "address": 2 * i, "register": "input",
                 "type": "float32", "unit": UNIT} for i in range(spec.tags)]
    links = {f"sim{index}": {"type": "tcp", "host": "127.0.0.1", "port": link.port,
                             "timeout_ms": 1000}
             for index, link in enumerate(spec.links)}
    devices = [{"id": device_id(index, unit), "link": f"sim{index}", "unit_id": unit,
                "interval_s": spec.interval_s, "channels": channels}
               for index, link in enumerate(spec.links) for unit in link.units]
    return {
        "station": {"id": STATION},
        "links": links,
        "devices": devices,
        "polling": {"retries": 0},
        "store": {"path": spec.db, "synchronous": spec.synchronous,
                  "retention": {"max_rows": 100_000_000, "max_bytes": 100_000_000_000}},
        "mqtt": {"host": "127.0.0.1", "port": spec.broker_port, "client_id": "bench-agent",
                 "reconnect_min_s": 0.2, "reconnect_max_s": 0.5,
                 "max_inflight": spec.max_inflight,
                 "max_samples_per_message": spec.max_samples_per_message,
                 "live_window_s": LIVE_WINDOW_S},
        "health": {"port": health_port},
    }
