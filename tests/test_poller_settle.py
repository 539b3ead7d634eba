"""A link that settles its commits before it sleeps (edge_agent/pollstore.py) still polls
on time: the wait for its next device is measured after the commits, not before.

Real parts: a pymodbus server of the repo's simulator on a free port, the real outbox on a
file, held up by a second connection's write transaction. The poller's own clock
(``edge_agent.poller.time.monotonic``) is a clock the test moves, so "the commits took
25 s" is a fact of the test, not a race; the stop event records every wait the poller
thread asks of it."""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import datetime
from types import SimpleNamespace

import pytest
from edge_agent_drivers.modbus.settings import Channel, ModbusSettings
from support.heldwriter import HeldWriter
from support.station import write_station
from support.waiting import wait_until

import edge_agent.poller as poller_module
from edge_agent.config.loader import load_config
from edge_agent.config.schema import Device, PollingPolicy, Retention, TcpLink
from edge_agent.driver import load_driver
from edge_agent.model import Quality, Reading, Sample
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
def clock(monkeypatch) -> Clock:
    """The poller module's ``time.monotonic`` replaced by a clock the test moves."""
    clock = Clock()
    monkeypatch.setattr(poller_module, "time",
                        SimpleNamespace(monotonic=clock.monotonic, time=time.time))
    return clock


@pytest.fixture
def server():
    server = SimServer([SimUnit(1, holding={0: 7})], tcp_port=0).start()
    yield server
    server.stop()


def paused(poller: LinkPoller) -> bool:
    """The poller waits for the outbox writer (its heartbeat is paused: never late)."""
    return poller.heartbeat.stuck(math.inf) is None


def started_with_writer_held(tmp_path, server: SimServer, clock: Clock,
                             ) -> tuple[LinkPoller, Outbox, RecordingStop, HeldWriter]:
    """One device every ``INTERVAL_S`` on the simulator, the real outbox on a file whose
    writes a second connection holds (released by the test), the poller started."""
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
    return poller, outbox, stop, held


def test_link_polls_when_due_even_after_its_commits_took_longer_than_the_wait(
        tmp_path, server, clock):
    """The first sample is handed over while the writer is held; the poller, with 10 s to
    wait, settles first. The commit ends 25 s later on the poller's clock: the device is
    overdue, so the poller polls at once instead of sleeping the 10 s it computed before
    settling (which made every poll of an idle link late by its last commits)."""
    poller, outbox, stop, held = started_with_writer_held(tmp_path, server, clock)
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


class FirstSampleCannotBeEncoded:
    """Its first sample carries a stream number JSON cannot hold (NaN), so its commit
    raises in the writer (an encoding bug, not a storage failure); later ones are fine.
    It never touches the wire."""

    device = Device("dev", "lan", 1, INTERVAL_S, ModbusSettings((Channel("v", 0),)))

    def __init__(self) -> None:
        self.calls = 0

    def poll(self, link: object, now: datetime) -> Sample:
        self.calls += 1
        extra: dict[str, object] = {"stream": math.nan} if self.calls == 1 else {}
        return Sample("dev", now, (Reading("dev", "v", 1.0, "", Quality.GOOD, now),),
                      extra=extra)

    def failed_sample(self, now: datetime, reason: str) -> Sample:
        return Sample("dev", now, (Reading("dev", "v", None, "", Quality.BAD, now, reason),))


def test_commit_bug_found_while_settling_backs_off_without_skipping_a_poll(
        tmp_path, clock, caplog):
    """A sample handed over without waiting whose commit raises a bug is handled as a bug
    met in the poll (agent_error counted, traceback logged once, a BAD sample stored),
    and its device is due again one interval after that poll, as after a bug in the
    poll itself: its poll was scheduled already, so only the backoff may apply
    (scheduling it a second time skipped a poll)."""
    caplog.set_level(logging.ERROR, logger="edge_agent")
    outbox = Outbox(tmp_path / "o.sqlite3", Retention(None, None, None))
    stop = RecordingStop(clock)
    poller = LinkPoller(TcpLink("lan", "127.0.0.1", 9), [FirstSampleCannotBeEncoded()],
                        outbox, PollingPolicy(retries=0, backoff_initial_s=0.2), stop)
    stop.poller = poller
    poller.start()
    try:
        wait_until(lambda: stop.waits, 30, "the poller's wait after the first poll")
    finally:
        stop.set()
        poller.thread.join(timeout=30)
    stats = outbox.stats()
    outbox.close()
    state = poller.devices[0]
    assert state.polls == 1 and state.errors["agent_error"] == 1
    assert state.samples_stored == stats.samples == 1, "the agent_error sample in its place"
    assert len([r for r in caplog.records if r.exc_info]) == 1
    assert stop.waits[0] == (START, INTERVAL_S, START + INTERVAL_S), \
        "(clock, wait, due): due one interval after the poll, not two"


def test_link_does_not_wait_past_its_next_poll_for_a_commit(tmp_path, server, clock):
    """The first sample is handed over while the writer is held; the poller settles it
    while it has time. When the device falls due (the test moves the clock) with that
    commit still held, the poller reads the device again instead of waiting for the
    commit (which made polls late, and lost slots, at rates where a link's commits took
    about as long as its wait). Both samples are stored once the writer goes on."""
    poller, outbox, stop, held = started_with_writer_held(tmp_path, server, clock)
    try:
        wait_until(lambda: len(server.requests) == 1 and paused(poller), 30,
                   "the first poll, then the poller settling its sample while it has time")
        clock.now += INTERVAL_S  # due again, the first commit still held
        wait_until(lambda: len(server.requests) == 2, 30,
                   "the second poll while the first sample is still committing")
        state = poller.devices[0]
        assert state.samples_stored == 0, "nothing counted as stored before its commit"
    finally:
        held.release()
    try:
        wait_until(lambda: poller.devices[0].samples_stored == 2, 30,
                   "both samples stored once the writer goes on")
    finally:
        stop.set()
        poller.thread.join(timeout=30)
        outbox.close()
    assert not poller.thread.is_alive()
    assert poller.devices[0].polls == 2


def test_settling_waits_for_the_oldest_when_the_newest_is_done_first():
    """The writer answers a link's samples in order, so settle_until waits for the newest;
    were the newest ever done first, it must wait for the oldest, not spin. Real futures,
    a stand-in outbox that hands them out; the clock counts how often it is read."""
    from concurrent.futures import Future

    from edge_agent.pollstore import SampleStore

    pending, done = Future(), Future()
    done.set_result(None)
    handed = iter([pending, done])
    outbox = SimpleNamespace(append_nowait=lambda sample: next(handed))
    store = SampleStore(outbox, on_bug=lambda state: None, window=5)
    state = SimpleNamespace(driver=None, samples_stored=0)
    for _ in range(2):
        store.store_overlapped(state, SimpleNamespace(driver_state=None))
    reads = []

    def clock() -> float:
        reads.append(1)
        return time.monotonic()

    assert store.settle_until(time.monotonic() + 0.2, clock)
    assert store.committing == 2, "the pending sample was settled"
    assert len(reads) < 20, f"settle_until spun: {len(reads)} clock reads in 0.2 s"
    pending.set_result(None)
    store.settle()
    assert state.samples_stored == 2
