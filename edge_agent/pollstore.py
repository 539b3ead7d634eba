"""How a link's poller commits its samples: the storing half of ``LinkPoller``.

Storing overlaps the wire: a plain sample (no alarm events, no driver state) is handed to
the outbox (``Outbox.append_nowait``) and the poller reads its next device while the
sample commits; it waits for that commit before it hands over the next sample, before it
sleeps and before it stops (``settle``), and counts a failure then. So at most one sample
per link is committing while the wire is busy, and a fast link is no longer held to one
fsync per poll (issue 11: the highest sustained rate). Nothing changes for the sample
itself: it is accepted only once committed, and published only then (the forwarder
reads committed rows only). A sample with alarm events or driver state (a GC's analysis,
whose ``after_commit`` acts on the device) is stored and waited for at once (``store``).

A sample that cannot be stored is never a silent hole: the outbox counts it and writes a
gap event with the next commit; here it is counted per link (``failures``) and logged
once per episode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING

from edge_agent.alarms.events import AlarmEvent
from edge_agent.link import LinkClient
from edge_agent.model import Sample
from edge_agent.store.outbox import Outbox, OutboxError
from edge_agent.watchdog import waiting_for_watched_worker

if TYPE_CHECKING:
    from edge_agent.poller import DeviceState

log = logging.getLogger("edge_agent.poller")  # the poller's lines, as before the split


class SampleStore:
    """Commits one link's samples (module docstring). Used by its poller thread only."""

    def __init__(self, outbox: Outbox, on_bug: Callable[[DeviceState], None]) -> None:
        """``on_bug``: what the poller does with an unexpected error met while settling
        a sample (it would have met it in its own poll step when storing waited)."""
        self._outbox = outbox
        self._on_bug = on_bug
        self.failures = 0  # samples and alarm batches that could not be stored
        self._failing = False
        self._committing: tuple[DeviceState, Sample, Future] | None = None
        #: The link client a driver's ``after_commit`` gets (the poller's open client).
        self.client: LinkClient | None = None

    def store(self, state: DeviceState, sample: Sample,
              alarms: Sequence[AlarmEvent] = ()) -> bool:
        """Commit ``sample`` with the alarm events it caused; False when it could not be
        (counted, logged once; the events still reach the log and the local outputs).
        A sample still committing from an earlier poll is settled first (order)."""
        self.settle()
        try:
            if alarms:
                self._outbox.append(sample, alarms)
            else:  # the call a test's stand-in outbox knows
                self._outbox.append(sample)
        except OutboxError as err:
            self._failed(err)
            return False
        self._stored(state)
        return True

    def store_overlapped(self, state: DeviceState, sample: Sample) -> bool:
        """Hand ``sample`` to the outbox without waiting for its commit, after settling
        the one handed over before; False when this outbox cannot (a test's stand-in):
        the caller then stores it with ``store``."""
        append_nowait = getattr(self._outbox, "append_nowait", None)
        if append_nowait is None:
            return False
        self.settle()
        try:
            self._committing = (state, sample, append_nowait(sample))
        except OutboxError as err:
            self._failed(err)
        return True

    def settle(self) -> None:
        """Wait for the sample handed over by ``store_overlapped`` to commit, and do what
        follows a commit (or a failure) as ``store`` does."""
        committing, self._committing = self._committing, None
        if committing is None:
            return
        state, sample, future = committing
        try:
            with waiting_for_watched_worker():  # the writer's own heartbeat covers it
                future.result()
        except OutboxError as err:
            self._failed(err)
            return
        except Exception:  # a bug, as the poll step would have met it
            self._on_bug(state)
            return
        self._stored(state)
        if self.client is not None:
            self.after_commit(self.client, state, sample)

    def store_alarms(self, events: Sequence[AlarmEvent]) -> None:
        """Commit alarm events that have no sample (a communication alarm cleared by a GC
        answering without a new analysis): a transaction of their own, after the sample
        committing before them."""
        self.settle()
        try:
            self._outbox.append_alarms(events)
        except OutboxError as err:
            self.failures += 1
            log.error("cannot store %d alarm event(s) now (%s); they drive the local "
                      "outputs, are kept in memory and stored (then published) with the next "
                      "write that succeeds", len(events), err)

    @staticmethod
    def after_commit(client: LinkClient, state: DeviceState, sample: Sample) -> None:
        """The driver's own step once its sample is durable (a GC clears its flag)."""
        after_commit = getattr(state.driver, "after_commit", None)
        if after_commit is not None:
            after_commit(client, sample)

    def _failed(self, err: OutboxError) -> None:
        self.failures += 1
        if not self._failing:
            self._failing = True
            log.error("cannot store samples (%s); the loss is counted and will be "
                      "published as a gap event once the store works again", err)

    def _stored(self, state: DeviceState) -> None:
        state.samples_stored += 1
        if self._failing:
            self._failing = False
            log.info("storing samples again after %d failures", self.failures)
