"""One thread per link: owns the wire, polls its devices in turn, commits every sample.

A failed poll is never a hole: it becomes a sample of BAD readings with the reason.

A dead device on a shared RS-485 bus must not eat the other devices' time, so a device's
health decides how hard it is tried (``DeviceHealth``):

* ``ok``: polled every ``interval_s``; a transient error is retried ``retries`` times
  within the poll (the device's own ``retries``/``timeout_ms`` when it has them).
* ``degraded`` (from the first failed poll): one attempt per poll, no retries, and the
  next poll waits an exponential backoff (``backoff_initial_s`` doubling up to
  ``backoff_max_s``). A dead device thus costs its bus one timeout per backoff period.
* ``down`` (after ``DOWN_AFTER_FAILED_POLLS`` failed polls in a row): polled the same
  way; the state says "this needs a person", not "a glitch".

A device that answers every read with a Modbus exception (04, device failure, on every
request) is not answering either, although each exchange completed: a poll whose readings
are all BAD with an ``exception_XX`` reason counts as a failed poll (``EveryReadRefused``)
in its health, errors, last error and logs. Its sample is stored as read.

Transitions are logged once each (ERROR when a device stops answering, WARNING when it is
marked down, INFO when it answers again) and counted per device (``DeviceState.entered``);
failed polls are counted by reason (``DeviceState.errors``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, cast

from edge_agent.alarms.events import AlarmEvent
from edge_agent.config.schema import Link, PollingPolicy
from edge_agent.driver import Driver
from edge_agent.link import ExchangeCounts, LinkClient, LinkError, OpenTap, TimeoutAdjustable
from edge_agent.link_clients import open_link_client
from edge_agent.model import PolledReadings, Quality, Sample, utc_now
from edge_agent.pollstore import COMMITTING_PER_DEVICE, SampleStore
from edge_agent.retry import Backoff, retry_call
from edge_agent.stopsignals import keep_signals_off_this_thread
from edge_agent.store.outbox import Outbox, OutboxError
from edge_agent.toolbox import record_link
from edge_agent.watchdog import STARTUP_S, Heartbeat, poll_bound_s

log = logging.getLogger(__name__)

DOWN_AFTER_FAILED_POLLS = 3


class AlarmHook(Protocol):
    """What judges alarms at each poll (edge_agent/alarms/engine.py): ``decide`` before
    the sample is stored (its events are committed with it), ``emit`` after. ``answering``
    says whether the device answered this poll, ``down`` whether it is marked down."""

    def decide(self, device_id: str, sample: Sample | None, answering: bool,
               down: bool) -> list[AlarmEvent]: ...

    def emit(self, events: Sequence[AlarmEvent]) -> None: ...


class OutputWrites(Protocol):
    """Alarm output writes on this poller's link (edge_agent/alarms/action.py), done by
    the poller because it owns the wire: one attempt each, between polls."""

    def pending(self) -> bool: ...

    def run_due(self, client: LinkClient) -> bool: ...


OUTPUT_CHECK_S = 0.2  # a poller with alarm outputs looks for queued writes this often


class EveryReadRefused(LinkError):
    """Every reading of a poll is BAD with a Modbus exception: the device answered, and
    refused everything. A device fault (a person must look), so never retried."""

    transient = False

    def __init__(self, reason: str, readings: int) -> None:
        super().__init__(f"all {readings} readings answered with Modbus "
                         f"{reason.replace('_', ' ')}")
        self.reason = reason


def every_read_refused(sample: Sample) -> EveryReadRefused | None:
    """The failure ``sample`` amounts to when all its readings are BAD with an
    ``exception_XX`` reason (the most frequent code names it); None otherwise. Asked
    after every answered poll: a first reading that is not BAD answers it at once."""
    readings = sample.readings
    if isinstance(readings, PolledReadings):  # asked without building its readings
        if readings.first_quality() is not Quality.BAD:
            return None
    elif readings and readings[0].quality is not Quality.BAD:
        return None
    reasons = [r.reason or "" for r in readings]
    if not reasons or any(r.quality is not Quality.BAD for r in readings) \
            or not all(reason.startswith("exception_") for reason in reasons):
        return None
    return EveryReadRefused(Counter(reasons).most_common(1)[0][0], len(reasons))


class DeviceHealth(StrEnum):
    """How a device is doing, as far as its poller can tell (see the module docstring)."""

    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"


def health_after(failures: int, down_after: int = DOWN_AFTER_FAILED_POLLS) -> DeviceHealth:
    """Health after ``failures`` consecutive failed polls (0: the last poll answered)."""
    if failures <= 0:
        return DeviceHealth.OK
    return DeviceHealth.DOWN if failures >= down_after else DeviceHealth.DEGRADED


@dataclass
class DeviceState:
    """Schedule and health of one device, owned by its link's poller thread.

    ``entered`` counts how often the device became degraded or down (a flapping device
    shows up here even when it happens to be ``ok`` when someone looks).

    ``last_sample`` is the sample the last poll produced (stored or not), replaced by one
    reference assignment per poll: the health endpoint reads each channel's last value
    from it (an immutable Sample), so the hot path builds nothing and takes no lock.
    ``exchanges`` are the link client's wire counts credited to this device.
    """

    driver: Driver
    health: DeviceHealth = DeviceHealth.OK
    entered: Counter[str] = field(default_factory=Counter)
    next_due: float = 0.0
    consecutive_failures: int = 0
    down_since: float | None = None
    polls: int = 0
    samples_stored: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    last_good_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    last_sample: Sample | None = None
    exchanges: ExchangeCounts = field(default_factory=ExchangeCounts)
    # (the policy it was worked out for, watchdog.poll_bound_s): LinkPoller._poll_bound_s
    poll_bound: tuple[PollingPolicy, float] | None = field(default=None, repr=False)

    @property
    def device_id(self) -> str:
        return self.driver.device.id


class LinkPoller:
    """Polls the devices of one link until ``stop`` is set."""

    def __init__(self, link: Link, drivers: Sequence[Driver], outbox: Outbox,
                 policy: PollingPolicy, stop: threading.Event,
                 open_tap: OpenTap = record_link, alarms: AlarmHook | None = None,
                 outputs: OutputWrites | None = None) -> None:
        """``open_tap`` gives the link's client its tap when the thread opens it: by
        default the recorder of a link with ``record:`` (edge_agent/toolbox.py).
        ``alarms`` judges each poll (None, when the station has no alarms: nothing is
        called); ``outputs`` are alarm output writes on this link, done between polls."""
        self.link = link
        self._open_tap = open_tap
        self.devices = [DeviceState(driver) for driver in drivers]
        self._outbox = outbox
        self._policy = policy
        self._stop = stop
        self._backoff = Backoff(policy.backoff_initial_s, policy.backoff_max_s)
        # Up to COMMITTING_PER_DEVICE samples per device of the link commit while the
        # wire goes on; they settle while the poller has time before its next poll
        # (pollstore.py).
        self._samples = SampleStore(outbox, self._survive_commit_bug,
                                    window=COMMITTING_PER_DEVICE * len(self.devices))
        self._alarms = alarms
        self._outputs = outputs
        self.alarm_errors = 0  # the alarm engine raised (a bug): see _judge_alarms
        self._checked_client: LinkClient | None = None
        self._client_adjustable = False
        self.thread = threading.Thread(target=self._run, name=f"poll-{link.name}", daemon=True)
        self.heartbeat = Heartbeat(self.thread.name)  # the service watchdog's (watchdog.py)

    @property
    def store_failures(self) -> int:
        """Samples (and alarm batches without a sample) that could not be stored."""
        return self._samples.failures

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout_s: float = 30) -> bool:
        """Set the stop event given at construction and wait until the thread has closed
        its link; False if it had not ended within ``timeout_s``."""
        self._stop.set()
        if self.thread.ident is not None:
            self.thread.join(timeout=timeout_s)
        return not self.thread.is_alive()

    def set_policy(self, policy: PollingPolicy) -> None:
        """Use ``policy`` from the next poll on (a reload); the link stays open."""
        self._policy = policy
        self._backoff = Backoff(policy.backoff_initial_s, policy.backoff_max_s)

    def _poll_bound_s(self, state: DeviceState) -> float:
        """The watchdog's bound of one poll of ``state`` (watchdog.poll_bound_s), worked
        out once per device and policy: it is asked before every poll, and working it out
        costs more than a planned read's decoding (issue 11)."""
        policy = self._policy  # set_policy may replace it from another thread
        known = state.poll_bound
        if known is not None and known[0] is policy:
            return known[1]
        bound = poll_bound_s(state.driver.device, self.link, policy)
        state.poll_bound = (policy, bound)
        return bound

    def _run(self) -> None:
        keep_signals_off_this_thread()  # this thread's waits are the wire's (stopsignals.py)
        self.heartbeat.beat(STARTUP_S)  # restoring waits for the outbox: not counted
        client = open_link_client(self.link, self._open_tap(self.link))
        start = time.monotonic()
        for state in self.devices:
            state.next_due = start
            self._restore(state)
        try:
            while not self._stop.is_set():
                state = min(self.devices, key=lambda s: s.next_due)
                wait_s = state.next_due - time.monotonic()
                self.heartbeat.beat(max(wait_s, 0.0) + self._poll_bound_s(state))
                if wait_s > 0 and self._samples.committing and \
                        self._samples.settle_until(state.next_due, time.monotonic):
                    # Nothing left committing while idle, but a due poll does not wait for
                    # commits: settle until the next device is due, then look again at what
                    # is due (a failed commit may have rescheduled a device). A short idle
                    # time is slept through below (pollstore.py).
                    continue
                if self._outputs is not None and self._between_polls(client, wait_s):
                    continue
                if wait_s > 0 and self._stop.wait(wait_s):
                    break
                try:
                    self._poll(client, state)
                except Exception:  # a bug must not end acquisition on this link
                    self._survive_bug(state)
        finally:
            try:
                self._samples.settle()
            finally:
                client.close()

    def _between_polls(self, client: LinkClient, wait_s: float) -> bool:
        """Do due alarm output writes, or wait at most ``OUTPUT_CHECK_S`` for one; True
        when the loop must look again before polling (the next poll is not due yet)."""
        assert self._outputs is not None
        try:
            if self._outputs.pending() and self._outputs.run_due(client):
                return True
        except Exception:  # a bug in the outputs must not end acquisition
            log.exception("unexpected error writing alarm outputs on link %s", self.link.name)
        if wait_s > OUTPUT_CHECK_S:
            self._stop.wait(OUTPUT_CHECK_S)
            return True
        return False

    def _restore(self, state: DeviceState) -> None:
        """Give a stateful driver (GC cycles) what it committed with its last sample."""
        restore = getattr(state.driver, "restore", None)
        if restore is None:
            return
        try:
            restore(self._outbox.driver_state(state.device_id))
        except OutboxError as err:
            log.error("cannot read the saved state of %s (%s); it starts afresh and may "
                      "publish its latest analysis again", state.device_id, err)

    def _survive_bug(self, state: DeviceState, scheduled: bool = False) -> None:
        """An unexpected error (a bug, not a device fault): log it with its traceback once
        per device, record a BAD sample so the hole is visible, back off, go on.
        ``scheduled``: the poll that met it was scheduled already (``_survive_commit_bug``),
        so only the backoff applies."""
        state.errors["agent_error"] += 1
        state.consecutive_failures += 1
        if state.errors["agent_error"] == 1:
            log.exception("unexpected error while polling %s; the poller goes on and flags "
                          "its readings BAD (agent_error)", state.device_id)
        try:
            state.last_sample = state.driver.failed_sample(utc_now(), "agent_error")
            self._samples.store(state, state.last_sample)
        except Exception:
            log.debug("could not record the agent_error sample", exc_info=True)
        if not scheduled:
            self._schedule(state)
        else:
            state.next_due = max(state.next_due, time.monotonic()
                                 + self._backoff.delay_s(state.consecutive_failures))

    def _survive_commit_bug(self, state: DeviceState) -> None:
        """A sample handed over without waiting whose commit raised a bug, met while
        settling (pollstore.py): a bug of the poll that made it. That poll already
        scheduled the device's next one, and scheduling it again would skip a poll."""
        self._survive_bug(state, scheduled=True)

    def _attempts(self, state: DeviceState) -> int:
        """Attempts within one poll: retries only while the device is answering."""
        if state.health is not DeviceHealth.OK:
            return 1
        own = state.driver.device.polling.retries
        return (self._policy.retries if own is None else own) + 1

    def _poll(self, client: LinkClient, state: DeviceState) -> None:
        now = utc_now()
        state.polls += 1
        adjustable = self._adjustable(client)
        if adjustable is not None:
            adjustable.set_timeout_ms(state.driver.device.polling.timeout_ms)
        counts: ExchangeCounts | None = getattr(client, "counts", None)
        before = counts.copy() if counts is not None else None
        try:
            sample = retry_call(
                lambda: state.driver.poll(client, now),
                attempts=self._attempts(state),
                wait_s=self._policy.retry_wait_s,
                retry_if=lambda err: isinstance(err, LinkError) and err.transient,
                sleep=self._stop.wait,
            )
        except LinkError as err:
            sample = state.driver.failed_sample(now, err.reason)
            self._mark_failed(state, err)
            answered = False
        else:
            refused = every_read_refused(sample) if sample is not None else None
            answered = refused is None
            if refused is None:
                self._mark_answering(state)
            else:
                self._mark_failed(state, refused)
        if counts is not None and before is not None:
            state.exchanges.add_since(before, counts)
        if sample is not None:
            state.last_sample = sample
        # no alarms configured: no call, no allocation (an empty tuple is a constant)
        events: Sequence[AlarmEvent] = \
            self._judge_alarms(state, sample, answered) if self._alarms is not None else ()
        # None: an instrument-triggered device (GC) answered and has no new analysis.
        if sample is not None and not events and self._samples.may_overlap(state, sample):
            self._samples.store_overlapped(state, sample)
        elif sample is not None and self._samples.store(state, sample, events):
            self._samples.after_commit(client, state, sample)
        elif sample is None and events:
            self._samples.store_alarms(events)
        if events:
            self._emit_alarms(state, events)
        self._schedule(state)

    def _judge_alarms(self, state: DeviceState, sample: Sample | None,
                      answered: bool) -> list[AlarmEvent]:
        """The alarm events of this poll, decided before the sample is stored so that one
        transaction commits both (an alarm never exists without its data). A bug there
        is logged once and counted, never ends acquisition."""
        assert self._alarms is not None
        try:
            return self._alarms.decide(state.device_id, sample, answered,
                                       state.health is DeviceHealth.DOWN)
        except Exception:
            self._alarm_bug(state)
            return []

    def _emit_alarms(self, state: DeviceState, events: Sequence[AlarmEvent]) -> None:
        """Log the committed events and drive the local outputs (the engine's sink)."""
        assert self._alarms is not None
        try:
            self._alarms.emit(events)
        except Exception:
            self._alarm_bug(state)

    def _alarm_bug(self, state: DeviceState) -> None:
        self.alarm_errors += 1  # counted; the traceback logged once per poller
        if self.alarm_errors == 1:
            log.exception("unexpected error judging the alarms of %s; polling goes "
                          "on (further ones are only counted)", state.device_id)

    def _adjustable(self, client: LinkClient) -> TimeoutAdjustable | None:
        """``client`` if it takes a per-device timeout, else None. Checked once per client:
        an isinstance check against a runtime Protocol inspects the class on every call,
        about 2 % of a poll's CPU (issue 11)."""
        if client is not self._checked_client:
            self._checked_client = client
            self._client_adjustable = isinstance(client, TimeoutAdjustable)
        return cast(TimeoutAdjustable, client) if self._client_adjustable else None

    def _mark_failed(self, state: DeviceState, err: LinkError) -> None:
        attempts = self._attempts(state)
        state.consecutive_failures += 1
        state.errors[err.reason] += 1
        state.last_error = f"{err.reason}: {err}"
        state.last_error_at = time.time()
        if state.down_since is None:
            state.down_since = time.monotonic()
        self._set_health(state, health_after(state.consecutive_failures), err, attempts)

    def _mark_answering(self, state: DeviceState) -> None:
        state.last_good_at = time.time()
        self._set_health(state, DeviceHealth.OK)
        state.down_since = None
        state.consecutive_failures = 0

    def _set_health(self, state: DeviceState, health: DeviceHealth,
                    err: LinkError | None = None, attempts: int = 1) -> None:
        """Log and count a change of health, once per transition."""
        if health is state.health:
            return
        before, state.health = state.health, health
        device = state.driver.device
        if health is not DeviceHealth.OK:
            state.entered[health.value] += 1
        if health is DeviceHealth.OK:
            log.info("device %s answering again after %d failed polls (%.0f s)",
                     device.id, state.consecutive_failures,
                     time.monotonic() - (state.down_since or time.monotonic()))
        elif before is DeviceHealth.OK and isinstance(err, EveryReadRefused):
            log.error("device %s (unit %d on link %s) answers but refuses every read: %s; "
                      "its readings are flagged BAD and it is polled less often (at most "
                      "every %g s) until it reads again", device.id, device.unit_id,
                      self.link.name, err, self._policy.backoff_max_s)
        elif before is DeviceHealth.OK:
            log.error("device %s (unit %d on link %s) is not answering after %d attempt(s): "
                      "%s; its readings are flagged BAD and it is polled less often (at "
                      "most every %g s) until it recovers", device.id, device.unit_id,
                      self.link.name, attempts, err, self._policy.backoff_max_s)
        if health is DeviceHealth.DOWN:
            log.warning("device %s marked down: %d failed polls in a row (last: %s)",
                        device.id, state.consecutive_failures, err)

    def _schedule(self, state: DeviceState) -> None:
        backoff_s = self._backoff.delay_s(state.consecutive_failures) \
            if state.consecutive_failures else 0.0
        state.next_due = next_due_after(state.next_due, state.driver.device.interval_s,
                                        time.monotonic(), backoff_s)


def next_due_after(due: float, interval_s: float, now: float, backoff_s: float = 0.0) -> float:
    """When a device whose poll was due at ``due`` is due again, at ``now`` after it.

    The next slot of its grid (``due + interval_s``) while that is at most one interval
    in the past: a poll made late by a hiccup (a slow answer, another thread holding the
    interpreter lock, a busy machine) is followed by one made at once, and the device
    keeps its grid and its number of samples per hour. Further behind (a slow bus, a
    device that takes longer than its interval to answer), the missed slots are skipped
    and the grid starts again at ``now``: never a burst of catch-up polls. A failing
    device waits at least ``backoff_s`` (0: it answered).

    Until 4 December 2026 any poll ending after the next slot restarted the grid, so
    each hiccup cost its device a part of a slot; near the bench's highest rates that
    lost 5-10 % of the polls offered (issue 11, docs/poll-path.md).
    """
    next_due = due + interval_s
    if backoff_s:
        next_due = max(next_due, now + backoff_s)
    if next_due < now - interval_s:  # more than an interval behind: skip, do not burst
        next_due = now
    return next_due
