"""The local action: a beacon, siren or relay output switched by alarms, with no uplink.

Each ``AlarmAction`` (station ``alarms.actions``) is on while at least one alarm it
matches is active: ``on_value`` is written when the first one is raised, ``off_value``
when the last one clears. Only the latest wanted state is kept per output, so a raise and
a clear that both happen before the write see only the clear (the output ends as the
alarms are).

A reload that changes the outputs builds them anew (runtime.py ``reconfigure``): each
output that was on, or may have been, is *retired* into the new ones: written off once
(its ``off_value``) unless an alarm still active holds it on, so no beacon is left on
for an alarm or an output that no longer exists.

Who writes: a link has one owner thread (docs/architecture.md), so ``LinkOutputs`` only
queues; the owner does the writes. On a link no device polls, that is an
``OutputThread`` of its own (the usual case: an output module on its own address or
port), which also wakes at once. On a link a poller owns (an output module on a
detector bus), the poller does them between polls (poller.py), one attempt per write at
a time, so a dead output module costs the other devices one timeout per attempt, never a
blocking retry loop. Failed writes are retried up to ``retries`` times with exponential
backoff (edge_agent/retry.py ``Backoff``, tenacity); the result is logged either way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from edge_agent.alarms.events import AlarmEvent
from edge_agent.config.alarm_settings import AlarmAction
from edge_agent.config.schema import Link
from edge_agent.link import LinkClient, LinkError
from edge_agent.retry import Backoff
from edge_agent.stopsignals import keep_signals_off_this_thread

log = logging.getLogger(__name__)

RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 10.0
IDLE_WAKE_S = 1.0  # an idle output thread looks at its stop event this often


@dataclass
class _Pending:
    """The state an output should be put in, and how often writing it has failed."""

    on: bool
    failures: int = 0
    due: float = 0.0


class LinkOutputs:
    """The outputs of one link: which alarms hold each on, and the writes still to do.

    ``alarm_events`` is called from any poller thread; ``run_due`` only from the link's
    owner thread. A lock guards the small shared state."""

    def __init__(self, link: Link, actions: Sequence[AlarmAction],
                 clock: Callable[[], float] = time.monotonic,
                 retired: Sequence[AlarmAction] = ()) -> None:
        """``retired``: outputs of the previous configuration that may be on; each is
        written off once, unless an alarm event (``alarm_events``) holds it on first."""
        self.link = link
        self.actions = tuple(actions)
        self._retired = tuple(retired)
        self.wake = threading.Event()
        self._clock = clock
        self._lock = threading.Lock()
        self._holding: dict[str, set[str]] = {action.name: set() for action in actions}
        # keyed by the action itself: a retired output may share its name with a new one
        self._pending: dict[AlarmAction, _Pending] = {
            action: _Pending(False) for action in self._retired}
        if self._retired:
            self.wake.set()
        self._backoff = Backoff(RETRY_INITIAL_S, RETRY_MAX_S)
        self.writes_done = 0
        self.writes_failed = 0

    def alarm_events(self, events: Iterable[AlarmEvent]) -> None:
        """Follow alarms: queue a write for each output whose on/off state changes."""
        with self._lock:
            for event in events:
                for action in self.actions:
                    held = self._holding[action.name]
                    was_on = bool(held)
                    if event.active and action.matches(event.device_id, event.level,
                                                       event.confirmed):
                        held.add(event.alarm)
                    else:
                        held.discard(event.alarm)
                    if bool(held) != was_on:
                        self._pending[action] = _Pending(bool(held))
                        self.wake.set()

    def pending(self) -> bool:
        return bool(self._pending)

    def maybe_on(self) -> list[AlarmAction]:
        """The outputs that are on or may be (held by an alarm, or a write still to do):
        what a rebuild must switch off when they are no longer configured."""
        with self._lock:
            held = [action for action in self.actions if self._holding[action.name]]
            return [*held, *(action for action in self._pending if action not in held)]

    def next_due_s(self) -> float | None:
        """Seconds until the next write is due (0: now), None when nothing waits."""
        with self._lock:
            if not self._pending:
                return None
            return max(0.0, min(p.due for p in self._pending.values()) - self._clock())

    def run_due(self, client: LinkClient) -> bool:
        """One attempt at each write that is due, on the owner's ``client``; True when
        at least one was attempted."""
        now = self._clock()
        with self._lock:
            due = [(action, pending) for action, pending in self._pending.items()
                   if pending.due <= now]
        for action, pending in due:
            self._attempt(client, action, pending)
        return bool(due)

    def _attempt(self, client: LinkClient, action: AlarmAction, pending: _Pending) -> None:
        value = action.on_value if pending.on else action.off_value
        try:
            write(client, action, value)
        except (LinkError, ValueError) as err:
            self._failed(action, pending, value, err)
            return
        with self._lock:
            if self._pending.get(action) is pending:
                del self._pending[action]
        self.writes_done += 1
        log.info("alarm output %s set %s (%s) after %d attempt(s)", action.name,
                 "ON" if pending.on else "OFF", where(self.link, action, value),
                 pending.failures + 1)

    def _failed(self, action: AlarmAction, pending: _Pending, value: int,
                err: Exception) -> None:
        pending.failures += 1
        if pending.failures > action.retries:
            with self._lock:
                if self._pending.get(action) is pending:
                    del self._pending[action]
            self.writes_failed += 1
            log.error("alarm output %s could NOT be set %s (%s) after %d attempt(s): %s; "
                      "it will be written again at the next change of its alarms",
                      action.name, "ON" if pending.on else "OFF",
                      where(self.link, action, value), pending.failures, err)
            return
        pending.due = self._clock() + self._backoff.delay_s(pending.failures)
        log.warning("alarm output %s: writing %s failed (%s), attempt %d of %d: %s",
                    action.name, "ON" if pending.on else "OFF", where(self.link, action, value),
                    pending.failures, action.retries + 1, err)


def write(client: LinkClient, action: AlarmAction, value: int) -> None:
    """Write ``value`` to the action's coil (non-zero: ON) or holding register."""
    if action.coil is not None:
        client.write_coil(action.unit_id, action.coil, bool(value))  # type: ignore[attr-defined]
    else:
        assert action.register is not None
        client.write_register(action.unit_id, action.register, value)  # type: ignore[attr-defined]


def where(link: Link, action: AlarmAction, value: int) -> str:
    target = f"coil {action.coil}" if action.coil is not None else f"register {action.register}"
    return f"{value} to {target} of unit {action.unit_id} on link {link.name}"


class OutputThread:
    """Owns a link that no device polls, and does its outputs' writes as they come."""

    def __init__(self, outputs: LinkOutputs,
                 open_client: Callable[[Link], LinkClient]) -> None:
        self.outputs = outputs
        self._open = open_client
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"alarm-out-{outputs.link.name}")

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout_s: float = 10.0) -> bool:
        self._stop.set()
        self.outputs.wake.set()
        if self.thread.ident is not None:
            self.thread.join(timeout=timeout_s)
        return not self.thread.is_alive()

    def _run(self) -> None:
        keep_signals_off_this_thread()  # this thread's waits are the wire's (stopsignals.py)
        client = self._open(self.outputs.link)
        try:
            while not self._stop.is_set():
                self.outputs.wake.clear()
                try:
                    self.outputs.run_due(client)
                except Exception:  # a bug must not end the outputs
                    log.exception("unexpected error writing alarm outputs on link %s",
                                  self.outputs.link.name)
                wait_s = self.outputs.next_due_s()
                self.outputs.wake.wait(IDLE_WAKE_S if wait_s is None
                                       else min(wait_s, IDLE_WAKE_S))
        finally:
            client.close()
