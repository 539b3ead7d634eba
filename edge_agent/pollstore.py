"""How a link's poller commits its samples: the storing half of ``LinkPoller``.

A plain sample (no alarm events, no driver state) is handed to the outbox without
waiting for its commit (``store_overlapped``, ``Outbox.append_nowait``), and the poller
reads its next device while it commits; up to ``window`` samples of the link (the
poller gives ``COMMITTING_PER_DEVICE`` times its devices: one budget for the link, so a
device due more often than the others may take more of it) may be committing at once, so the
appends of the devices due together share the writer's transactions (group commit)
instead of each paying one, and the poller is not woken once per commit. The poller
settles them while it has time before its next poll (``settle_until``): a due poll does
not wait for earlier commits (unless ``window`` samples are committing already, or its
own sample must be waited for: see below).

Why several per device: when the writer's turn takes longer than a device's interval
(at high rates several milliseconds, while four links, the forwarder's claims and the
acknowledgements share it), a window of one per device made the poller wait for a
commit, the device fell more than an interval behind and its missed slots were skipped
(poller.next_due_after). At 72 000-80 000 tags/s offered the bench skipped 3-16 % of the
polls so; with four per device 1.4-3.4 % (docs/poll-path.md). A waiting commit costs
no more than the sample it holds (a few kilobytes).

Why (issue 11, docs/poll-path.md): waiting for each commit held a link to one fsync and
one writer turn per poll. At high rates the bench measured pollers spending about two
thirds of their time waiting in ``append``; at W1 (20 devices, four links, every second)
the writer ran about one transaction per sample, and that, not the SQL, was most of the
agent's CPU beyond bare's. Earlier on 3 December 2026 only a link behind its schedule
overlapped; now every link does.

What does not change (docs/architecture.md, the reliability contract):

* A sample is accepted only once its transaction has committed: the forwarder sees only
  committed rows, and the poller counts a sample as stored, or its failure as a store
  failure (logged once per episode; the outbox counts it as unstored and announces it as
  a gap), only when it settles the future.
* Order: one poller hands its samples over in acquisition order and the writer commits
  them in that order, so a device's sequence numbers follow its acquisition.
* A sample with alarm events or with driver state (a GC's analysis: its driver acts on
  the device once it is durable, ``after_commit`` clears the new-result flag) is always
  stored and waited for at once, after every earlier one has settled, and then
  ``after_commit`` is called. A sample handed over without waiting gets no
  ``after_commit`` (edge_agent/driver.py says so to drivers).
* Before the poller sleeps it settles what is committing, but only until its next device
  is due (``settle_until``): nothing is left committing while the link is idle for
  longer than ``WORTH_WAITING_S`` (10 ms), and no poll is late because a commit took
  long (at high rates that wait lost poll slots: docs/poll-path.md). A shorter idle
  time is slept through and its commits settle at the next turn (at 40 000 tags/s a
  link idles about 0.3 ms between polls, and a wake-up per commit cost CPU the
  interpreter lock could not spare). Before it stops, everything settles.
  Settling cannot hang on a closing outbox: the writer runs or refuses every operation
  (store/writer.py, "Close drains").
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Protocol

from edge_agent.alarms.events import AlarmEvent
from edge_agent.link import LinkClient
from edge_agent.model import Sample
from edge_agent.store.outbox import Accepted, Outbox, OutboxError
from edge_agent.watchdog import waiting_for_watched_worker


class DeviceState(Protocol):
    """What storing needs of a device's poll state (edge_agent/poller.py's
    ``DeviceState``, which imports this module: a protocol, not an import back)."""

    driver: object
    samples_stored: int


log = logging.getLogger("edge_agent.poller")  # the poller's lines, as before the split
_CLOCK_CHECK_S = 0.05  # settle_until looks at its clock this often while a commit lasts
# A shorter wait for the next poll is not interrupted for a commit (settle_until).
WORTH_WAITING_S = 0.010
# A link's window is this times its devices: the samples of the link that may be
# committing at once (the module docstring, "Why several per device").
COMMITTING_PER_DEVICE = 4


def _wait_for(future: Future[Accepted], timeout_s: float) -> None:
    """Sleep until ``future`` is done or ``timeout_s`` has passed, whichever is first."""
    with contextlib.suppress(FutureTimeout, CancelledError):
        future.exception(timeout=timeout_s)


class SampleStore:
    """Commits one link's samples (module docstring). Used by its poller thread only."""

    def __init__(self, outbox: Outbox, on_bug: Callable[[DeviceState], None],
                 window: int) -> None:
        """``on_bug``: what the poller does with an unexpected error met while settling a
        sample (it would have met it in its own poll step had it waited). ``window``:
        at most this many samples committing at once (at least 1)."""
        self._outbox = outbox
        self._on_bug = on_bug
        self._window = max(1, window)
        self._overlaps = hasattr(outbox, "append_nowait")  # a test's stand-in may not
        self._committing: deque[tuple[DeviceState, Future[Accepted]]] = deque()
        self.failures = 0  # samples and alarm batches that could not be stored
        self._failing = False

    @property
    def committing(self) -> int:
        """Samples handed over and not yet settled."""
        return len(self._committing)

    def may_overlap(self, state: DeviceState, sample: Sample) -> bool:
        """Whether ``sample`` may be handed over without waiting (module docstring)."""
        return self._overlaps and sample.driver_state is None

    def store(self, state: DeviceState, sample: Sample,
              alarms: Sequence[AlarmEvent] = ()) -> bool:
        """Commit ``sample`` with the alarm events it caused and wait; False when it could
        not be (counted, logged once). Earlier samples settle first."""
        self.settle()
        try:
            if alarms:
                self._outbox.append(sample, alarms)
            else:  # the common case, and the call a test's stand-in outbox knows
                self._outbox.append(sample)
        except OutboxError as err:
            self._failed(err)
            return False
        self._stored(state)
        return True

    def store_overlapped(self, state: DeviceState, sample: Sample) -> None:
        """Hand ``sample`` over without waiting for its commit (``may_overlap`` must have
        said yes); the oldest committing sample settles first when the window is full."""
        self.settle(keep=self._window - 1)
        try:
            self._committing.append((state, self._outbox.append_nowait(sample)))
        except OutboxError as err:
            self._failed(err)

    def settle(self, keep: int = 0) -> None:
        """Wait for committing samples, oldest first, until at most ``keep`` are left,
        and count each as stored or failed."""
        while len(self._committing) > keep:
            state, future = self._committing.popleft()
            self._settled(state, future)

    def settle_until(self, due: float, now: Callable[[], float]) -> bool:
        """Settle, but only until ``due`` on the ``now`` clock (when the link's next
        device is due): what is still committing then is left to settle later, so the
        next poll is not late by as long as the commits take (module docstring).
        Returns whether it settled a sample or waited; False: nothing had committed yet
        and less than ``WORTH_WAITING_S`` is left, so the poller sleeps until ``due``
        and settles at its next turn, one wake-up instead of two.

        It waits for the newest committing sample, not the oldest: the writer answers a
        link's samples in order, so one wake-up settles them all (each wake-up of the
        poller costs CPU and the interpreter lock; before, one per commit and
        ``concurrent.futures.wait`` per slice cost a quarter of a poller's CPU at 40 000
        tags/s, issue 11). Should the newest ever be done before the oldest, it waits for
        the oldest, so the loop cannot spin."""
        acted = False
        while self._committing:
            state, future = self._committing[0]
            if future.done():
                self._committing.popleft()
                self._settled(state, future)
                acted = True
                continue
            remaining = due - now()
            if remaining < WORTH_WAITING_S:
                return acted
            newest = self._committing[-1][1]
            with waiting_for_watched_worker():  # the writer's heartbeat covers it
                _wait_for(future if newest.done() else newest,
                          min(remaining, _CLOCK_CHECK_S))
            acted = True
        return acted

    def _settled(self, state: DeviceState, future: Future[Accepted]) -> None:
        """Wait for ``future`` and count its sample as stored or failed."""
        try:
            if future.done():  # the usual case: no wait, so no heartbeat pause either
                future.result()
            else:
                with waiting_for_watched_worker():  # the writer's heartbeat covers it
                    future.result()
        except OutboxError as err:
            self._failed(err)
        except Exception:  # a bug, as the poll step would have met it
            self._on_bug(state)
        else:
            self._stored(state)

    def store_alarms(self, events: Sequence[AlarmEvent]) -> None:
        """Commit alarm events that have no sample (a communication alarm cleared by a GC
        answering without a new analysis): a transaction of their own, after every
        sample handed over before them."""
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
