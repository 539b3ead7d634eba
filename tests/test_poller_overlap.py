"""A poller reads its next device while the last sample commits (issue 11, the highest
sustained rate), and nothing about the sample changes: it is accepted only once
committed, a failed commit is counted and announced, and the order of samples holds.

The outbox is real (SQLite on a temporary file); its writer is held back by a second
connection holding the file's write lock, as another process could, so "still
committing" is a state the test sees, not a time it guesses.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime
from pathlib import Path

import pytest
from edge_agent_drivers.modbus.settings import Channel, ModbusSettings
from support.waiting import wait_until

from edge_agent.config.schema import Device, PollingPolicy, Retention, TcpLink
from edge_agent.model import Quality, Reading, Sample, utc_now
from edge_agent.poller import LinkPoller
from edge_agent.store.outbox import Outbox, OutboxError


class CountingDriver:
    """A device that answers every poll with one GOOD reading, and notes, at each poll,
    what the poller had stored by then."""

    def __init__(self, device_id: str, seen: list[tuple[str, int, int]],
                 poller: list[LinkPoller]) -> None:
        self.device = Device(device_id, "lan", 1, 3600.0, ModbusSettings((Channel("v", 0),)))
        self._seen, self._poller = seen, poller
        self.polled = threading.Event()

    def poll(self, link, now: datetime) -> Sample:
        poller = self._poller[0]
        stored = sum(state.samples_stored for state in poller.devices)
        self._seen.append((self.device.id, stored, poller.store_failures))
        self.polled.set()
        return Sample(self.device.id, now,
                      (Reading(self.device.id, "v", 1.5, "ppm", Quality.GOOD, now),))

    def failed_sample(self, now: datetime, reason: str) -> Sample:
        return Sample(self.device.id, now,
                      (Reading(self.device.id, "v", None, "ppm", Quality.BAD, now, reason),))


def _poller(outbox: Outbox, drivers: list[CountingDriver], holder: list[LinkPoller],
            stop: threading.Event) -> LinkPoller:
    poller = LinkPoller(TcpLink("lan", "127.0.0.1", 9), drivers, outbox,
                        PollingPolicy(retries=0), stop)
    holder.append(poller)
    return poller


def test_next_device_is_read_while_the_last_sample_commits(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path, Retention(None, None, None))
    seen: list[tuple[str, int, int]] = []
    holder: list[LinkPoller] = []
    first, second = CountingDriver("a", seen, holder), CountingDriver("b", seen, holder)
    stop = threading.Event()
    poller = _poller(outbox, [first, second], holder, stop)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the outbox's writer now waits for the file
    try:
        poller.start()
        wait_until(second.polled.is_set, 30,
                   "device b polled while device a's sample waits for its commit")
        # When b was read, a's sample was neither stored nor failed: still committing.
        assert seen == [("a", 0, 0), ("b", 0, 0)]
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    wait_until(lambda: sum(s.samples_stored for s in poller.devices) == 2, 30,
               "both samples committed once the file is free")
    stop.set()
    assert poller.stop(10)
    rows = []
    while (message := outbox.claim(0, 100, 10_000_000)) is not None:
        rows += [(message.device_id, json.loads(e.body)["seq"]) for e in message.entries]
    outbox.close()
    assert sorted(rows) == [("a", 1), ("b", 1)]
    assert poller.store_failures == 0


def test_an_overlapped_sample_that_cannot_commit_is_counted_and_announced(
        tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3", Retention(None, None, None))
    sample = Sample("a", utc_now(), (Reading("a", "v", 1.0, "ppm", Quality.GOOD, utc_now()),))
    accepted = outbox.append_nowait(sample).result()
    assert accepted.seq == 1
    outbox.close()
    with pytest.raises(OutboxError, match="closed"):
        outbox.append_nowait(sample)
    assert outbox.unstored_total == 1  # as append counts it: a gap event once it can
