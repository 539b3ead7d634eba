"""Fixtures that start real parts: a private Mosquitto per test, a collector on it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.collector import Collector
from support.station import kill_leftover_agents

from edge_agent import i18n
from edge_agent.tools.sim.broker import Mosquitto
from edge_agent.tools.sim.simserver import SimServer, SimUnit


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


@pytest.fixture
def two_devices() -> Iterator[SimServer]:
    """A pymodbus simulator on one TCP port: unit 1 (holding register 0 = 11) and unit 2
    (= 22), the ``dev-1`` and ``dev-2`` of the uplink, failover and cluster tests."""
    server = SimServer([SimUnit(1, holding={0: 11}), SimUnit(2, holding={0: 22})]).start()
    yield server
    server.stop()


@pytest.fixture
def two_brokers(tmp_path: Path) -> Iterator[list[Mosquitto]]:
    """Two Mosquittos, each keeping its subscribers' sessions across a restart."""
    brokers = [Mosquitto(tmp_path / f"broker-{n}", persistence=True).start() for n in "ab"]
    yield brokers
    for broker in brokers:
        broker.stop()


@pytest.fixture(autouse=True)
def no_agent_outlives_its_test() -> Iterator[None]:
    """An agent process left running by a failed test is killed, so it cannot poll and
    publish into the tests after it (seen: one still running an hour later)."""
    yield
    kill_leftover_agents()


# -- the fast path: tests that start real processes are marked and can be left out ---------

# Fixtures that start a real process (Mosquitto, the agent, an installer run) or wait on
# one. A test using any of them is marked ``real_parts`` at collection.
REAL_PART_FIXTURES = frozenset({"broker", "collector", "spawn", "installed"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast", action="store_true",
        help="leave out the tests that start real processes (marked real_parts) and the "
             "exhaustive sweeps (marked sweep); a test that starts a process anyway fails "
             "and names the mark it needs")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_parts: starts real processes (broker, agent, installer); "
                   "`scripts/test --fast` leaves it out")
    config.addinivalue_line(
        "markers", "sweep: an exhaustive sweep (fuzzing, every single-line edit of a file, "
                   "whole public captures) that starts no process but takes seconds; "
                   "`scripts/test --fast` leaves it out, `scripts/test` runs it")
    config.addinivalue_line(
        "markers", "alone: needs the machine to itself (a RabbitMQ cluster, the benchmarks' "
                   "measured rates); `scripts/test` runs these after the others, one at a "
                   "time, while the rest run side by side")


# Modules whose tests `scripts/test` runs on their own, after the side-by-side run: the
# three-node RabbitMQ cluster's failover test (its backlog must still be draining when a
# node dies, which a second worker's load made miss in a -n 2 run), and the benchmarks'
# smoke tests (they measure rates and would measure the other worker instead).
ALONE_MODULES = frozenset({"test_broker_cluster.py", "test_bench_smoke.py"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if REAL_PART_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real_parts)
        if item.path.name in ALONE_MODULES:
            item.add_marker(pytest.mark.alone)
    if not config.getoption("--fast"):
        return
    kept = [item for item in items if not _slow(item)]
    left_out = [item for item in items if _slow(item)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
    items[:] = kept


def _slow(item: pytest.Item) -> bool:
    """Left out by ``--fast``: starts a real process, or is an exhaustive sweep."""
    return any(item.get_closest_marker(mark) is not None for mark in ("real_parts", "sweep"))


class _ProcessStartedInFastRun(subprocess.Popen):  # type: ignore[type-arg]
    """Stands in for ``subprocess.Popen`` during ``--fast``: the fast path must stay fast,
    so a test that starts a process without the mark is a marking bug, named at once."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError(
            "this test starts a real process: mark it @pytest.mark.real_parts (or use a "
            f"fixture in conftest.REAL_PART_FIXTURES); command: {args[0] if args else kwargs}")


@pytest.fixture(autouse=True)
def fast_run_starts_no_process(request: pytest.FixtureRequest,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    if request.config.getoption("--fast"):
        monkeypatch.setattr(subprocess, "Popen", _ProcessStartedInFastRun)


@pytest.fixture(autouse=True)
def messages_in_english_again() -> Iterator[None]:
    """A test that chose Chinese (``edge-agent --lang zh``, ``i18n.use``) leaves English
    behind: the language is process state, and the next test expects the source text.
    Set before each test too: a monkeypatch of ``i18n._gettext`` is undone after this
    fixture's teardown (the autouse monkeypatch above is set up first), and its undo
    would bring the Chinese catalog back."""
    i18n.use("en")
    yield
    i18n.use("en")
