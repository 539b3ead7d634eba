"""A link keeps reading while its samples commit (edge_agent/pollstore.py), and the
contract holds for those samples as for any: stored only once committed, in acquisition
order per device, a failed commit counted and announced as a gap; everything settles
before the link sleeps.

Real parts: a pymodbus server of the repo's simulator on a free port, the real outbox on a
file. The outbox's writer is held up by an open write transaction of a second connection
(what another program, or a slow disk, does to the writer), so "the poller went on while
nothing committed" is seen in the requests the device received, never in seconds."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from support.heldwriter import HeldWriter
from support.station import write_station
from support.waiting import wait_until

from edge_agent.config.loader import load_config
from edge_agent.config.schema import Retention
from edge_agent.driver import load_driver
from edge_agent.poller import LinkPoller
from edge_agent.pollstore import COMMITTING_PER_DEVICE
from edge_agent.store.outbox import Outbox
from edge_agent.tools.sim.simserver import SimServer, SimUnit

UNITS = (1, 2, 3)  # one link: up to COMMITTING_PER_DEVICE samples of each commit at once
BEHIND_S = 1e-6  # an interval no poll can keep


@pytest.fixture
def server():
    server = SimServer([SimUnit(unit, holding={0: 10 * unit}) for unit in UNITS],
                       tcp_port=0).start()
    yield server
    server.stop()


def poller_for(tmp_path: Path, server: SimServer, interval_s: float,
               outbox: Outbox) -> tuple[LinkPoller, threading.Event]:
    path = write_station(
        tmp_path / "station.yaml", broker_port=1883,
        links={"lan": {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port,
                       "timeout_ms": 2000}},
        devices=[{"id": f"det-{unit}", "link": "lan", "unit_id": unit,
                  "interval_s": max(interval_s, 0.001),
                  "channels": [{"name": "gas", "address": 0, "unit": "ppm"}]}
                 for unit in UNITS])
    config = load_config(path)
    # Below the station file's 1 ms floor: every poll, the first included, is late by
    # more than half an interval however fast the machine, so the link is behind.
    devices = [replace(d, interval_s=BEHIND_S) if interval_s == BEHIND_S else d
               for d in config.devices]
    stop = threading.Event()
    return LinkPoller(config.links["lan"], [load_driver(d) for d in devices],
                      outbox, config.polling, stop), stop


def hold_without_deadline(outbox: Outbox) -> None:
    """The writer waits for a HeldWriter as long as the test holds it: with the default
    5 s busy timeout a loaded machine could fail the held transaction before the test
    has seen what it waits for (the samples would then count as store failures)."""
    outbox._writer.conn.execute("PRAGMA busy_timeout=600000")


def stop_poller(poller: LinkPoller, stop: threading.Event) -> bool:
    """Stop the poller's thread (it settles what is committing first); True once ended."""
    stop.set()
    poller.thread.join(timeout=10)
    return not poller.thread.is_alive()


def requests(server: SimServer) -> int:
    return len(server.requests)


def stored_rows(path: Path) -> list[tuple[str, str, int | None, float, str]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT kind, device_id, seq, acquired_at, body FROM outbox "
                            "ORDER BY id").fetchall()
    finally:
        conn.close()


def behind_with_writer_held(tmp_path: Path, server: SimServer
                            ) -> tuple[Path, Outbox, LinkPoller, threading.Event, HeldWriter]:
    """A started poller whose devices are always behind, its outbox's writer held by a
    second connection until the test releases it."""
    db = tmp_path / "o.sqlite3"
    outbox = Outbox(db, Retention(None, None, None))
    hold_without_deadline(outbox)
    poller, stop = poller_for(tmp_path, server, BEHIND_S, outbox)
    held = HeldWriter(db)
    poller.start()
    return db, outbox, poller, stop, held


def test_link_behind_schedule_reads_on_while_its_samples_commit_and_counts_them_after(
        tmp_path, server):
    """Devices due every microsecond are always behind. While the writer is held, the
    poller reads every device and one more (a poller waiting for each commit sends one
    request and is then stuck in the append), and counts none of them as stored;
    released, every sample commits, in acquisition order per device."""
    db, outbox, poller, stop, held = behind_with_writer_held(tmp_path, server)
    try:
        # the first poll's sample waits for the writer; a poller that waited for it would
        # send no second request
        wait_until(lambda: requests(server) >= len(UNITS) + 1, 30,
                   "a request after the first sample (the poller did not wait for its commit)")
        assert sum(s.samples_stored for s in poller.devices) == 0, \
            "nothing is stored before it commits"
        assert stored_rows(db) == [], "nor committed (read beside the held writer)"
    finally:
        held.release()
    wait_until(lambda: sum(s.samples_stored for s in poller.devices) >= 6 * len(UNITS), 30,
               "samples committed after the writer was released")
    assert stop_poller(poller, stop)
    outbox.close()
    rows = stored_rows(db)
    assert poller.store_failures == 0
    for state in poller.devices:
        mine = [(seq, at, json.loads(body)) for kind, device, seq, at, body in rows
                if kind == "sample" and device == state.device_id]
        assert state.samples_stored == state.polls == len(mine), \
            "every poll settled before the poller ended, each sample stored once"
        assert [seq for seq, _, _ in mine] == list(range(1, len(mine) + 1))
        times = [at for _, at, _ in mine]
        assert times == sorted(times), "sequence numbers follow acquisition"
        assert all(doc["values"]["gas"]["value"] == 10 * state.driver.device.unit_id
                   for _, _, doc in mine)


def test_a_held_writer_stops_the_link_once_its_window_is_full(tmp_path, server):
    """The window is COMMITTING_PER_DEVICE samples per device of the link: while nothing
    commits, a link always behind its schedule reads until that many samples wait, then
    one more poll whose sample has no place, and waits there (nothing lost, nothing
    unbounded in memory); released, everything commits and is counted."""
    window = COMMITTING_PER_DEVICE * len(UNITS)
    db, outbox, poller, stop, held = behind_with_writer_held(tmp_path, server)
    try:
        wait_until(lambda: requests(server) >= window + 1, 30, "the window to fill")
        time.sleep(0.5)  # a poller not bounded by its window sends thousands meanwhile
        assert requests(server) == window + 1, \
            "the poll after a full window waits for a place, and no poll follows it"
        assert sum(s.samples_stored for s in poller.devices) == 0
    finally:
        held.release()
    wait_until(lambda: sum(s.samples_stored for s in poller.devices) >= window + 1, 30,
               "the held samples to commit")
    assert stop_poller(poller, stop)
    outbox.close()
    assert poller.store_failures == 0
    assert sum(s.samples_stored for s in poller.devices) == \
        sum(1 for row in stored_rows(db) if row[0] == "sample")


def test_link_on_schedule_reads_its_due_devices_while_they_commit_then_settles(
        tmp_path, server):
    """Devices polled every 5 s are all due at start. While the writer is held, the
    poller asks each of them (a poller waiting for each commit would be stuck in the first
    append after one request) and counts nothing as stored; released, the three samples
    commit, are counted, and nothing is left committing while the link waits for its next
    polls. ``on_append`` runs only after a commit: by then all three requests were sent."""
    db = tmp_path / "o.sqlite3"
    outbox = Outbox(db, Retention(None, None, None))
    hold_without_deadline(outbox)
    seen: list[int] = []
    outbox.on_append = lambda: seen.append(requests(server))
    poller, stop = poller_for(tmp_path, server, 5.0, outbox)
    held = HeldWriter(db)
    poller.start()
    try:
        wait_until(lambda: requests(server) == len(UNITS), 30,
                   "a request to every due device before any commit")
        assert sum(s.samples_stored for s in poller.devices) == 0, \
            "nothing is stored before it commits"
        assert stored_rows(db) == [], "nor committed (read beside the held writer)"
        assert seen == []
    finally:
        held.release()
    wait_until(lambda: sum(s.samples_stored for s in poller.devices) == len(UNITS), 30,
               "the three samples settled")
    assert poller._samples.committing == 0, "settled before the link sleeps"
    assert stop_poller(poller, stop)
    outbox.close()
    assert [request.unit_id for request in server.requests] == list(UNITS), \
        "one poll each: the next ones are 5 s away"
    assert seen == [len(UNITS)] * len(UNITS)
    rows = stored_rows(db)
    assert [(kind, device, seq) for kind, device, seq, _, _ in rows] == \
        [("sample", f"det-{unit}", 1) for unit in UNITS]


def test_failed_commit_of_a_sample_handed_over_without_waiting_is_counted_and_announced(
        tmp_path, server):
    """The writer's transaction fails (the file stays locked past its busy timeout): the
    samples in it are counted as store failures by the poller and as unstored by the
    outbox, and the next commit writes their store_error gap event."""
    db = tmp_path / "o.sqlite3"
    outbox = Outbox(db, Retention(None, None, None))
    outbox._writer.conn.execute("PRAGMA busy_timeout=200")  # fail fast, not after 5 s
    poller, stop = poller_for(tmp_path, server, 0.001, outbox)
    held = HeldWriter(db)
    poller.start()
    try:
        wait_until(lambda: poller.store_failures >= 1, 30, "a failed commit")
    finally:
        held.release()
    wait_until(lambda: sum(s.samples_stored for s in poller.devices) >= 3 * len(UNITS), 30,
               "samples committed again")
    stop_poller(poller, stop)
    unstored = outbox.unstored_total
    outbox.close()
    assert poller.store_failures == unstored >= 1
    assert sum(s.samples_stored for s in poller.devices) + unstored == \
        sum(s.polls for s in poller.devices), "every poll is stored or counted as not"
    gaps = [json.loads(body) for kind, _, _, _, body in stored_rows(db) if kind == "gap"]
    assert sum(gap["count"] for gap in gaps) == unstored
    assert all(gap["reasons"] == ["store_error"] for gap in gaps)
