"""One thread per link: owns the wire, polls its devices in turn, commits every sample.

A failed poll is never a hole: it becomes a sample of BAD readings with the reason, and
the device's next poll is delayed by exponential backoff (tenacity) so a dead device on a
shared RS-485 bus cannot eat the other devices' time. A device going down is logged once
at ERROR; its recovery is logged once at INFO; everything in between is counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from edge_agent.config.schema import Link, PollingPolicy
from edge_agent.driver import Driver
from edge_agent.modbus.transport import ModbusError, ModbusLinkClient
from edge_agent.model import Sample, utc_now
from edge_agent.retry import Backoff, retry_call
from edge_agent.store.outbox import Outbox, OutboxError

log = logging.getLogger(__name__)


@dataclass
class DeviceState:
    """Schedule and health of one device, owned by its link's poller thread."""

    driver: Driver
    next_due: float = 0.0
    consecutive_failures: int = 0
    down_since: float | None = None
    polls: int = 0
    samples_stored: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    last_good_at: float | None = None
    last_error: str | None = None

    @property
    def device_id(self) -> str:
        return self.driver.device.id


class LinkPoller:
    """Polls the devices of one link until ``stop`` is set."""

    def __init__(self, link: Link, drivers: Sequence[Driver], outbox: Outbox,
                 policy: PollingPolicy, stop: threading.Event) -> None:
        self.link = link
        self.devices = [DeviceState(driver) for driver in drivers]
        self._outbox = outbox
        self._policy = policy
        self._stop = stop
        self._backoff = Backoff(policy.backoff_initial_s, policy.backoff_max_s)
        self._store_failing = False
        self.store_failures = 0
        self.thread = threading.Thread(target=self._run, name=f"poll-{link.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        client = ModbusLinkClient(self.link)
        start = time.monotonic()
        for state in self.devices:
            state.next_due = start
        try:
            while not self._stop.is_set():
                state = min(self.devices, key=lambda s: s.next_due)
                wait_s = state.next_due - time.monotonic()
                if wait_s > 0 and self._stop.wait(wait_s):
                    break
                try:
                    self._poll(client, state)
                except Exception:  # a bug must not end acquisition on this link
                    self._survive_bug(state)
        finally:
            client.close()

    def _survive_bug(self, state: DeviceState) -> None:
        """An unexpected error (a bug, not a device fault): log it with its traceback once
        per device, record a BAD sample so the hole is visible, back off, go on."""
        state.errors["agent_error"] += 1
        state.consecutive_failures += 1
        if state.errors["agent_error"] == 1:
            log.exception("unexpected error while polling %s; the poller goes on and flags "
                          "its readings BAD (agent_error)", state.device_id)
        try:
            self._store(state, state.driver.failed_sample(utc_now(), "agent_error"))
        except Exception:
            log.debug("could not record the agent_error sample", exc_info=True)
        self._schedule(state)

    def _poll(self, client: ModbusLinkClient, state: DeviceState) -> None:
        now = utc_now()
        state.polls += 1
        try:
            sample = retry_call(
                lambda: state.driver.poll(client, now),
                attempts=self._policy.retries + 1,
                wait_s=self._policy.retry_wait_s,
                retry_if=lambda err: isinstance(err, ModbusError) and err.transient,
                sleep=self._stop.wait,
            )
        except ModbusError as err:
            sample = state.driver.failed_sample(now, err.reason)
            self._mark_failed(state, err)
        else:
            self._mark_answering(state)
        self._store(state, sample)
        self._schedule(state)

    def _mark_failed(self, state: DeviceState, err: ModbusError) -> None:
        state.consecutive_failures += 1
        state.errors[err.reason] += 1
        state.last_error = f"{err.reason}: {err}"
        if state.down_since is None:
            state.down_since = time.monotonic()
            device = state.driver.device
            log.error("device %s (unit %d on link %s) is not answering after %d attempt(s): "
                      "%s; its readings are flagged BAD until it recovers", device.id,
                      device.unit_id, self.link.name, self._policy.retries + 1, err)

    def _mark_answering(self, state: DeviceState) -> None:
        state.last_good_at = time.time()
        if state.down_since is not None:
            log.info("device %s answering again after %d failed polls (%.0f s)",
                     state.device_id, state.consecutive_failures,
                     time.monotonic() - state.down_since)
        state.down_since = None
        state.consecutive_failures = 0

    def _schedule(self, state: DeviceState) -> None:
        now = time.monotonic()
        state.next_due += state.driver.device.interval_s
        if state.consecutive_failures:
            state.next_due = max(state.next_due,
                                 now + self._backoff.delay_s(state.consecutive_failures))
        if state.next_due < now:  # overran (slow bus): skip missed slots, do not burst
            state.next_due = now

    def _store(self, state: DeviceState, sample: Sample) -> None:
        try:
            self._outbox.append(sample)
        except OutboxError as err:
            self.store_failures += 1
            if not self._store_failing:
                self._store_failing = True
                log.error("cannot store samples (%s); the loss is counted and will be "
                          "published as a gap event once the store works again", err)
            return
        state.samples_stored += 1
        if self._store_failing:
            self._store_failing = False
            log.info("storing samples again after %d failures", self.store_failures)
