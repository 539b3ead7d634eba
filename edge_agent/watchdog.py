"""Is every worker thread alive and making progress? And telling systemd (sdnotify.py).

A hung thread is alive, so ``Agent.dead_threads`` cannot see it: a poller blocked forever
in a driver or a kernel call (a USB-serial adapter stuck in an ioctl), an outbox writer
blocked in fsync on failing flash. Each worker therefore carries a ``Heartbeat``: before
each step of its loop it promises to beat again within a bound it computes from its own
timeouts and intervals (the functions below). A worker past its promise is *stuck*.

* A poller promises the wait until its next device is due plus the longest that device's
  poll may take (``poll_bound_s``: every request at its worst, every retry, a reconnect).
* The forwarder promises one connection attempt and the pause after it
  (``forwarder_connect_bound_s``), then, per pass of its session loop, the idle wait,
  ending a session and the reconnect pause (``forwarder_session_bound_s``).
* The MQTT network thread of a live session (forward/mqtt.py) promises one pass of its
  loop (``MQTT_NET_PASS_S``); once its session is lost or closed it ends by design and
  is no longer watched.
* The outbox writer promises one transaction, retried once on a new file after a corrupt
  one (``WRITER_BOUND_S``); waiting for work it is idle and cannot be late.
* A worker waiting for the outbox writer (a commit, a claim) is not late on its own
  account: the wait is added to its promise (``waiting_for_watched_worker``), and the
  writer's own heartbeat says whether the writer is stuck.

``ServiceSupervisor`` runs in the main thread (``run_until_signalled``): READY=1 once the
agent is started, WATCHDOG=1 every half ``WatchdogSec=`` while no worker is stuck or
dead, with a one-line STATUS=, and STOPPING=1 at the end. A stuck worker is logged once
at CRITICAL with the Python stack it is stuck in, and the keep-alives stop: systemd kills
the agent (SIGABRT; ``faulthandler`` writes every thread's stack to the journal) and
restarts it. Without systemd the stuck worker is logged and nothing else happens.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from edge_agent_drivers.modbus.settings import ModbusSettings

from edge_agent.config.schema import (
    Device,
    Hj212Config,
    Link,
    LinkProtocol,
    MqttConfig,
    PollingPolicy,
    TcpLink,
)
from edge_agent.sdnotify import Notifier, watchdog_usec

log = logging.getLogger(__name__)

#: Scheduling noise on a busy two-core station PC: GIL hand-offs, garbage collection.
SLACK_S = 2.0
#: A worker starting: first imports on a slow CPU, opening capture files.
STARTUP_S = 30.0
#: One outbox transaction at its slowest: SQLite's busy_timeout (5 s) for the write lock,
#: up to 512 grouped operations and retention deletes, an fsync on worn flash.
TRANSACTION_BOUND_S = 60.0
#: The writer's step: a transaction, and once more on a new file after a corrupt one.
WRITER_BOUND_S = 2 * TRANSACTION_BOUND_S
#: A host name lookup (getaddrinfo has no timeout; glibc: 5 s x 2 attempts x 3 servers).
NAME_LOOKUP_S = 30.0
#: Writes on text links (serialports.py ``write_timeout``, the text client's TCP send timeout).
TEXT_WRITE_S = 5.0
#: paho's socket connect and TLS handshake timeout, and our longest CONNACK wait
#: (forwarder ``_connect_timeout_s``).
PAHO_CONNECT_S, CONNACK_S = 5.0, 15.0
#: Ending a session: final status acknowledgement, DISCONNECT, network thread join
#: (mqtt.py ``MqttSession.close``), and the forwarder's idle wait.
SESSION_END_S, FORWARDER_IDLE_S = 10.0, 0.5
#: One pass of the MQTT network thread: its 0.5 s idle wait, then what the non-blocking
#: socket takes and gives, and the callbacks (queue puts). Generous on purpose: a false
#: alarm restarts the agent, and a hung network thread is caught within seconds anyway.
MQTT_NET_PASS_S = 10.0
#: What a clean stop needs beyond ``mqtt.shutdown_grace_s``: the poll in progress, the
#: final status, closing the database. The unit's TimeoutStopSec= is grace 5 s + this.
STOP_MARGIN_S = 25.0
HJ212_CLOSE_S = 10.0  # an HJ 212 session's close after the answer timeout


def _name_lookup_s(link: Link) -> float:
    if not isinstance(link, TcpLink):
        return 0.0
    try:
        ipaddress.ip_address(link.host)
    except ValueError:
        return NAME_LOOKUP_S
    return 0.0


def poll_bound_s(device: Device, link: Link, policy: PollingPolicy) -> float:
    """Longest one poll of ``device`` may legitimately take, in seconds.

    Per request, 4 x the answer timeout: the request's write (serial write timeout), the
    first bytes, the rest of a trickling answer (pymodbus reads until its deadline, then
    checks it), draining a late answer. Requests per poll: at most two per channel (a
    merged read split while isolating exception 02) plus two (trigger, clearing the
    new-result flag). Each attempt may reconnect (a lookup, a connect timeout, the
    link's pause after connecting); text links add their fixed write timeout.
    """
    timeout_s = (device.polling.timeout_ms or link.timeout_ms) / 1000
    retries = policy.retries if device.polling.retries is None else device.polling.retries
    channels = device.settings.channels if isinstance(device.settings, ModbusSettings) else ()
    requests = 2 * max(1, len(channels)) + 2
    per_request_s = 4 * timeout_s + link.request_gap_ms / 1000
    connect_s = _name_lookup_s(link) + timeout_s + link.connect_pause_ms / 1000
    if link.protocol is LinkProtocol.TEXT:
        connect_s += TEXT_WRITE_S
    attempt_s = connect_s + requests * per_request_s
    return (retries + 1) * attempt_s + retries * policy.retry_wait_s + SLACK_S


def forwarder_connect_bound_s(mqtt: MqttConfig) -> float:
    """One connection attempt (lookup, TCP, TLS, CONNACK), ending a session lost at once,
    and the pause before the next attempt."""
    return (NAME_LOOKUP_S + 2 * PAHO_CONNECT_S + CONNACK_S + SESSION_END_S
            + mqtt.reconnect_max_s + SLACK_S)


def forwarder_session_bound_s(mqtt: MqttConfig) -> float:
    """One pass of the session loop, or ending the session and pausing before the next
    (waits for the outbox are not counted: see the module docstring)."""
    return FORWARDER_IDLE_S + SESSION_END_S + mqtt.reconnect_max_s + SLACK_S


def stop_budget_s(*uplinks: MqttConfig | Hj212Config) -> float:
    """How long a clean stop may take (sent as EXTEND_TIMEOUT_USEC with STOPPING=1, so a
    longer ``shutdown_grace_s`` than the unit's TimeoutStopSec= assumes is honoured).
    With several uplinks, the longest grace: they drain at the same time."""
    return max((_grace_s(uplink) for uplink in uplinks), default=0.0) + STOP_MARGIN_S


def _grace_s(uplink: MqttConfig | Hj212Config) -> float:
    """An MQTT uplink's ``shutdown_grace_s``; an HJ 212 platform's answer timeout plus the
    10 s its session may take to close (forward/hj212uplink.py ``stop``)."""
    if isinstance(uplink, Hj212Config):
        return uplink.timeout_s + HJ212_CLOSE_S
    return uplink.shutdown_grace_s


# -- heartbeats ------------------------------------------------------------------------

_current = threading.local()


def _name_os_thread(name: str) -> None:
    """Show the worker's name in ``ps -L``, ``top -H`` and /proc (Linux: 15 bytes)."""
    with contextlib.suppress(OSError), \
            open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as comm:
        comm.write(name[:15])


class Heartbeat:
    """One worker thread's promise to show progress again within a bound.

    Only the worker calls ``beat`` and ``idle``; the supervisor reads. The first beat binds
    the heartbeat to the calling thread (and names it for the OS).
    """

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        self.thread: threading.Thread | None = None
        self.native_id: int | None = None
        self._beat_at: float | None = None
        self._within_s = 0.0
        self._deadline: float | None = None  # None: idle, or not started

    def beat(self, within_s: float) -> None:
        """Progress: the next beat comes within ``within_s`` seconds, or this worker is
        stuck."""
        if self.thread is None:
            self._bind()
        now = self._clock()
        self._beat_at, self._within_s = now, within_s
        self._deadline = now + within_s

    def idle(self) -> None:
        """Waiting for work that others hand over (a queue): cannot be late."""
        if self.thread is None:
            self._bind()
        self._deadline = None

    def _bind(self) -> None:
        self.thread = threading.current_thread()
        self.native_id = threading.get_native_id()
        _current.heartbeat = self
        _name_os_thread(self.name)

    @contextlib.contextmanager
    def _paused(self) -> Iterator[None]:
        deadline, since = self._deadline, self._clock()
        self._deadline = None
        try:
            yield
        finally:
            if deadline is not None:
                waited = self._clock() - since
                self._deadline, self._within_s = deadline + waited, self._within_s + waited

    def stuck(self, now: float) -> Stuck | None:
        """Why this worker is stuck at ``now`` (None: it is not)."""
        if self.thread is not None and not self.thread.is_alive():
            return Stuck(self.name, self.native_id, ended=True)
        deadline, beat_at = self._deadline, self._beat_at
        if deadline is None or beat_at is None or now <= deadline:
            return None
        return Stuck(self.name, self.native_id, silent_s=now - beat_at,
                     bound_s=self._within_s)


@contextlib.contextmanager
def waiting_for_watched_worker() -> Iterator[None]:
    """Around a wait for another watched worker (the outbox writer): the time spent here
    does not count against the calling worker's promise. No-op outside worker threads."""
    heartbeat = getattr(_current, "heartbeat", None)
    if heartbeat is None:
        yield
        return
    with heartbeat._paused():
        yield


@dataclass(frozen=True)
class Stuck:
    """A worker that is dead, or alive and past its promised heartbeat."""

    name: str
    native_id: int | None
    ended: bool = False
    silent_s: float = 0.0
    bound_s: float = 0.0

    def describe(self) -> str:
        if self.ended:
            return f"{self.name} has ended"
        return (f"{self.name} stuck: no progress for {self.silent_s:.1f} s "
                f"(limit {self.bound_s:.1f} s)")


def stuck_workers(heartbeats: Sequence[Heartbeat], now: float) -> list[Stuck]:
    return [found for heartbeat in heartbeats if (found := heartbeat.stuck(now)) is not None]


def stack_of(thread: threading.Thread | None) -> str:
    """Where a thread is in its Python code now (readable even when it cannot run)."""
    frame = sys._current_frames().get(thread.ident) \
        if thread is not None and thread.ident is not None else None
    return "".join(traceback.format_stack(frame)) if frame is not None else "  (no stack)\n"


# -- the service manager ---------------------------------------------------------------


class Watched(Protocol):
    """What the supervisor reads from the agent (``edge_agent.agent.Agent``)."""

    pollers: Sequence[Any]
    forwarder: Any

    def heartbeats(self) -> list[Heartbeat]: ...


def summary(agent: Watched) -> str:
    """One line for ``systemctl status``: devices by health, broker link."""
    pollers = list(agent.pollers)
    health = Counter(str(state.health.value) for poller in pollers
                     for state in list(poller.devices))
    count = sum(health.values())
    states = ", ".join(f"{n} {state}" for state, n in sorted(health.items())) or "none"
    uplinks = list(getattr(agent, "uplinks", {"default": agent.forwarder}).values())
    if len(uplinks) == 1:
        broker = "broker " + ("connected" if uplinks[0].stats.connected else "not connected")
    else:
        up = sum(1 for uplink in uplinks if uplink.stats.connected)
        broker = f"{up} of {len(uplinks)} uplinks connected"
    return (f"{count} device{'s' * (count != 1)} on {len(pollers)} "
            f"link{'s' * (len(pollers) != 1)} ({states}); {broker}")


class ServiceSupervisor:
    """Tells the service manager how the agent is; ``tick`` every ``tick_s`` seconds."""

    def __init__(self, agent: Watched, notifier: Notifier, watchdog_usec: int | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._agent = agent
        self._notifier = notifier
        self._clock = clock
        #: Seconds between keep-alives (half of WatchdogSec=); None: no watchdog.
        self.keepalive_s = watchdog_usec / 2e6 if watchdog_usec else None
        self.tick_s = min(1.0, self.keepalive_s / 2) if self.keepalive_s else 1.0
        self._last_sent = -float("inf")
        self._last_status: str | None = None
        self._stuck: set[str] = set()

    @classmethod
    def from_environment(cls, agent: Watched,
                         environ: Mapping[str, str] | None = None) -> ServiceSupervisor:
        env = os.environ if environ is None else environ
        return cls(agent, Notifier.from_environment(env), watchdog_usec(env))

    def ready(self) -> None:
        """The configuration is loaded and every worker started."""
        status = summary(self._agent)
        self._notifier.send("READY=1", f"STATUS={status}")
        self._last_status = status
        if self.keepalive_s is not None:
            log.info("systemd watchdog: keep-alives every %.1f s while every worker makes "
                     "progress", self.keepalive_s)

    def tick(self) -> list[Stuck]:
        """Check every worker; send a keep-alive when one is due and none is stuck, and the
        status line when it changed (with every keep-alive when there is a watchdog)."""
        stuck = stuck_workers(self._agent.heartbeats(), self._clock())
        self._log_changes(stuck)
        status = summary(self._agent)
        if stuck:
            status = (f"NOT RESPONDING: {'; '.join(s.describe() for s in stuck)}; "
                      f"watchdog keep-alives withheld | {status}")
        now = self._clock()
        if self.keepalive_s is not None and now >= self._last_sent + self.keepalive_s \
                - self.tick_s:
            fields = [f"STATUS={status}"] if stuck else ["WATCHDOG=1", f"STATUS={status}"]
            self._notifier.send(*fields)
            self._last_sent, self._last_status = now, status
        elif status != self._last_status:
            self._notifier.send(f"STATUS={status}")
            self._last_status = status
        return stuck

    def _log_changes(self, stuck: list[Stuck]) -> None:
        names = {s.name for s in stuck}
        by_name = {h.name: h for h in self._agent.heartbeats()}
        for found in stuck:
            if found.name not in self._stuck:
                heartbeat = by_name.get(found.name)
                thread = heartbeat.thread if heartbeat is not None else None
                log.critical("worker %s (thread id %s); %s. Where it is:\n%s",
                             found.describe(), found.native_id,
                             "the service manager's watchdog will restart the agent"
                             if self.keepalive_s else "restart the agent if it stays so",
                             stack_of(thread).rstrip())
        for name in self._stuck - names:
            log.warning("worker %s is making progress again", name)
        self._stuck = names

    def reloading(self) -> None:
        """Before applying a reload (``ready`` again after it). A keep-alive goes with it
        when every worker is fine, so stopping changed pollers gets a whole WatchdogSec=."""
        usec = time.monotonic_ns() // 1000  # CLOCK_MONOTONIC, as systemd wants
        fields = ["RELOADING=1", f"MONOTONIC_USEC={usec}"]
        if self.keepalive_s is not None and not self._stuck \
                and not stuck_workers(self._agent.heartbeats(), self._clock()):
            fields.append("WATCHDOG=1")
            self._last_sent = self._clock()
        self._notifier.send(*fields)

    def stopping(self, budget_s: float) -> None:
        """The clean stop begins; it may take ``budget_s`` (see ``stop_budget_s``)."""
        self._notifier.send("STOPPING=1", f"EXTEND_TIMEOUT_USEC={int(budget_s * 1e6)}",
                            "STATUS=stopping: acknowledging in-flight messages, closing the "
                            "outbox")
        self._notifier.close()
