"""The health endpoint reads the agent through ``Agent.health_view`` (health/view.py).

The view is a set of callables read when a request is answered, so what a reload swaps
(the pollers) must show at once; a view that copied values when it
was built would keep serving the old station. The agent is built but not started: its
pollers are created by the reload, and the outbox writer is the only worker involved.
"""

from __future__ import annotations

import json
from pathlib import Path

from support.station import write_station

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.tools.sim.broker import free_port

CHANNEL = {"name": "v", "address": 0, "type": "uint16"}


def _station(path: Path, broker_port: int, links: tuple[str, ...]) -> Path:
    return write_station(
        path, broker_port=broker_port,
        links={name: {"type": "tcp", "host": "127.0.0.1", "port": free_port(),
                      "timeout_ms": 200} for name in links},
        devices=[{"id": f"dev-{name}", "link": name, "unit_id": 1, "interval_s": 60,
                  "channels": [CHANNEL]} for name in links])


def test_status_shows_the_links_and_broker_a_reload_brought(tmp_path: Path) -> None:
    path = _station(tmp_path / "station.yaml", 1884, ("gw-a",))
    agent = Agent(load_config(path))
    try:
        before = agent.health.snapshot()
        assert [(d.id, d.link) for d in before.devices] == [("dev-gw-a", "gw-a")]
        assert (before.broker.host, before.broker.port) == ("127.0.0.1", 1884)
        assert before.station == "test-station"
        assert before.outbox.path == str(tmp_path / "outbox.sqlite3")

        doc = json.loads(path.read_text())
        _station(tmp_path / "new.yaml", 1885, ("gw-a", "gw-b"))
        new = json.loads((tmp_path / "new.yaml").read_text())
        doc["links"]["gw-b"] = new["links"]["gw-b"]
        doc["devices"].append(new["devices"][1])
        doc["mqtt"]["port"] = 1885
        path.write_text(json.dumps(doc))
        assert agent.reload() is True

        after = agent.health.snapshot()
        assert [(d.id, d.link) for d in after.devices] == [("dev-gw-a", "gw-a"),
                                                          ("dev-gw-b", "gw-b")]
        assert after.store_failures == {"gw-a": 0, "gw-b": 0}
        # the address shown is the one the forwarder uses: its thread (not started here)
        # takes the new one over, so status never names a broker not yet dialled
        assert agent.forwarder.config.port == 1884 and after.broker.port == 1884
    finally:
        agent.stop()


def test_health_view_reads_the_outbox_the_agent_writes(tmp_path: Path) -> None:
    agent = Agent(load_config(_station(tmp_path / "station.yaml", free_port(), ("gw-a",))))
    try:
        view = agent.health_view()
        depth = view.outbox_depth(5.0)
        assert depth == agent.outbox.depth(5.0)
        assert view.outbox_writer_alive() is True
        assert view.outbox_set_aside() == ()
        assert view.dead_threads() == []  # nothing started, so nothing has died
        assert {h.name for h in view.heartbeats()} == {h.name for h in agent.heartbeats()}
    finally:
        agent.stop()
