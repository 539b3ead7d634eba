"""Station files with named uplinks (the ``uplinks:`` section), written as YAML the way a
technician would, for tests that run the real ``edge-agent run`` on them.

A simulator serves two devices, ``dev-1`` (unit 1) and ``dev-2`` (unit 2), on one TCP
link. Each uplink is a Mosquitto (or a relay in front of one) on 127.0.0.1 with the fast
test timings of ``support.station.write_station``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from edge_agent.tools.sim.simserver import SimServer

DEVICES = ("dev-1", "dev-2")
FAST_MQTT = {"keepalive_s": 5, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}


class Ticking(dict):
    """A register image whose every read answers the next number: each poll a change
    (a ``SimUnit``'s ``holding``), so every sample differs from the one before."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, address, default=0):  # noqa: ANN001 - dict's own signature
        self.reads += 1
        return self.reads % 65536


def uplink(port: int, devices: list[str] | None = None, **settings: object) -> dict:
    """One ``uplinks:`` entry: an MQTT uplink to 127.0.0.1:``port`` carrying ``devices``
    (None: every device)."""
    entry: dict = {"host": "127.0.0.1", "port": port, **FAST_MQTT, **settings}
    if devices is not None:
        entry["devices"] = list(devices)
    return entry


def write_uplinks_station(path: Path, server: SimServer, uplinks: dict[str, dict], *,
                          mqtt_port: int | None = None, health_port: int = 0,
                          station_id: str = "test-station", interval_s: float = 0.1) -> Path:
    """Write ``path``: the two simulated devices polled every ``interval_s`` (HJ 212
    tests take 1.0: one DataTime, whole seconds, per sample), ``uplinks:`` as given and a
    ``mqtt:`` section only when ``mqtt_port`` is given (without one the named uplinks are
    all there is). Writing it again with other uplinks is what a technician does before a
    reload; the outbox stays ``outbox.sqlite3`` beside the file."""
    doc: dict = {
        "station": {"id": station_id},
        "links": {"gw": {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port,
                         "timeout_ms": 300}},
        "devices": [{"id": f"dev-{unit}", "link": "gw", "unit_id": unit, "interval_s": interval_s,
                     "channels": [{"name": "value", "address": 0, "type": "uint16"}]}
                    for unit in (1, 2)],
        "polling": {"retries": 0, "retry_wait_s": 0.05, "backoff_initial_s": 0.2,
                    "backoff_max_s": 1.0},
        "store": {"path": str(path.parent / "outbox.sqlite3")},
        "health": {"port": health_port},
    }
    if mqtt_port is not None:
        doc["mqtt"] = {"host": "127.0.0.1", "port": mqtt_port,
                       "client_id": f"agent-{station_id}", **FAST_MQTT}
    if uplinks:
        doc["uplinks"] = uplinks
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
