"""Fixtures that start real parts: a private Mosquitto per test, a collector on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.collector import Collector
from support.station import kill_leftover_agents

from edge_agent.sim.broker import Mosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto on a free port, with persistence so queued QoS 1 messages for the
    collector's session survive a broker restart inside a test."""
    server = Mosquitto(tmp_path / "broker", persistence=True).start()
    yield server
    server.stop()


@pytest.fixture
def collector(broker: Mosquitto) -> Iterator[Collector]:
    sub = Collector(broker.port).start()
    yield sub
    sub.stop()
    assert not sub.invalid, f"messages failing the payload schema: {sub.invalid[:3]}"


@pytest.fixture(autouse=True)
def no_agent_outlives_its_test() -> Iterator[None]:
    """An agent process left running by a failed test is killed, so it cannot poll and
    publish into the tests after it (seen: one still running an hour later)."""
    yield
    kill_leftover_agents()
