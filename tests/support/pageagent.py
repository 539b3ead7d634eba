"""An agent whose web page has one reading to show, built without a device or a broker:
the page's tests (its language, its escaping) need content, not live polling."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.model import Quality, Reading, Sample
from edge_agent.tools.sim.broker import free_port
from support.station import write_station

AT = datetime(2026, 3, 1, tzinfo=UTC)


def agent_showing(tmp_path: Path, channel: str, value: object, unit: str,
                  quality: Quality = Quality.GOOD, reason: str = "") -> Agent:
    """An agent, not started, whose one device ``det-1`` last read ``channel`` at ``AT``.
    Its broker and device ports are free ones nobody listens on, and its device polls
    once a minute, so nothing replaces the reading while a test looks at the page; the
    caller starts ``agent.health`` and stops the agent."""
    config = write_station(
        tmp_path / "station.yaml", broker_port=free_port(),
        links={"gw": {"type": "tcp", "host": "127.0.0.1", "port": free_port()}},
        devices=[{"id": "det-1", "link": "gw", "unit_id": 1, "interval_s": 60,
                  "channels": [{"name": "co", "address": 0, "unit": "ppm"}]}])
    agent = Agent(load_config(config, env={}))
    agent.pollers[0].devices[0].last_sample = Sample("det-1", AT, (Reading(
        "det-1", channel, value, unit, quality, AT, reason),))
    return agent
