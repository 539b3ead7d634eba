"""A link that settles its commits before it sleeps (edge_agent/pollstore.py) still polls
on time: the wait for its next device is measured after the commits, not before.

Real parts: a pymodbus server of the repo's simulator on a free port, the real outbox on a
file, held up by a second connection's write transaction. The poller's own clock
(``edge_agent.poller.time.monotonic``) is a clock the test moves, so "the commits took
25 s" is a fact of the test, not a race; the stop event records every wait the poller
thread asks of it."""

from __future__ import annotations

import math
import threading
import time
from types import SimpleNamespace

import pytest
from support.heldwriter import HeldWriter
from support.station import write_station
from support.waiting import wait_until

import edge_agent.poller as poller_module
from edge_agent.config.loader import load_config
from edge_agent.config.schema import Retention
from edge_agent.driver import load_driver
from edge_agent.poller import LinkPoller
from edge_agent.store.outbox import Outbox
from edge_agent.tools.sim.simserver import SimServer, SimUnit

START = 1000.0  # the poller's clock at start (seconds)
INTERVAL_S = 10.0
COMMITS_TOOK_S = 25.0  # longer than the interval: the device is due once they are done


class Clock:
    """The poller's monotonic clock; only the test moves it."""

    def __init__(self) -> None:
        self.now = START

    def monotonic(self) -> float:
        return self.now


class RecordingStop(threading.Event):
    """The poller's stop event: records (clock, timeout, earliest next_due) of each wait
    the poller thread makes, then waits as asked."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.poller: LinkPoller | None = None
        self.waits: list[tuple[float, float, float]] = []

    def wait(self, timeout: float | None = None) -> bool:
        poller = self.poller
        if poller is not None and threading.current_thread() is poller.thread \
                and timeout is not None:
            due = min(state.next_due for state in poller.devices)
            self.waits.append((self.clock.now, timeout, due))
        return super().wait(timeout)


@pytest.fixture
def server():
    server = SimServer([SimUnit(1, holding={0: 7})], tcp_port=0).start()
    yield server
    server.stop()


def paused(poller: LinkPoller) -> bool:
    """The poller waits for the outbox writer (its heartbeat is paused: never late)."""
    return poller.heartbeat.stuck(math.inf) is None


def test_link_polls_when_due_even_after_its_commits_took_longer_than_the_wait(
        tmp_path, server, monkeypatch):
    """The first sample is handed over while the writer is held; the poller, with 10 s to
    wait, settles first. The commit ends 25 s later on the poller's clock: the device is
    overdue, so the poller polls at once instead of sleeping the 10 s it computed before
    settling (which made every poll of an idle link late by its last commits)."""
    clock = Clock()
    monkeypatch.setattr(poller_module, "time",
                        SimpleNamespace(monotonic=clock.monotonic, time=time.time))
    path = write_station(
        tmp_path / "station.yaml", broker_port=1883,
        links={"lan": {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port,
                       "timeout_ms": 2000}},
        devices=[{"id": "det-1", "link": "lan", "unit_id": 1, "interval_s": INTERVAL_S,
                  "channels": [{"name": "gas", "address": 0, "unit": "ppm"}]}])
    config = load_config(path)
    db = tmp_path / "o.sqlite3"
    outbox = Outbox(db, Retention(None, None, None))
    outbox._writer.conn.execute("PRAGMA busy_timeout=600000")  # held by the test, not timed
    stop = RecordingStop(clock)
    poller = LinkPoller(config.links["lan"], [load_driver(d) for d in config.devices],
                        outbox, config.polling, stop)
    stop.poller = poller
    held = HeldWriter(db)
    poller.start()
    try:
        wait_until(lambda: len(server.requests) == 1 and paused(poller), 30,
                   "the first poll, then the poller settling its sample before it sleeps")
        clock.now += COMMITS_TOOK_S
    finally:
        held.release()
    try:
        wait_until(lambda: any(at == clock.now for at, _, _ in stop.waits), 30,
                   "the poller's next wait after the commit")
    finally:
        stop.set()
        poller.thread.join(timeout=30)
        outbox.close()
    assert not poller.thread.is_alive()
    late = [(at, timeout, due) for at, timeout, due in stop.waits if at + timeout > due]
    assert late == [], "a wait past the time the next device is due (at, wait, due)"
    assert len(server.requests) >= 2, "the overdue device was polled before the next wait"
    assert poller.devices[0].samples_stored == poller.devices[0].polls
