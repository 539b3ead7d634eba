"""What the health endpoint may read of a running agent: a narrow, read-only view.

Why a view instead of the ``Agent``: the endpoint used to reach through
``agent.forwarder.config``, ``agent.outbox`` and ``agent.pollers``, so ``agent.py`` and
``health/`` imported each other and any attribute of any worker was one dot away. The
agent now builds an ``AgentView`` (``Agent.health_view`` in edge_agent/agent.py) and hands
it to ``HealthServer``; nothing in ``health/`` imports ``agent.py``.

Every field is a callable, read at the moment a request is answered, because a reload
swaps the pollers and may change the station id and broker address. None of them changes
or locks a worker; the cost of each is what the module docstring of snapshot.py states
(``outbox_depth`` asks the outbox writer and waits up to its ``timeout_s``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge_agent.health.alarms_view import AlarmsSeen, no_alarms

if TYPE_CHECKING:  # types only: the objects are the workers' own counters
    from edge_agent.forward.forwarder import ForwarderStats
    from edge_agent.forward.uplink import Uplink
    from edge_agent.poller import DeviceState
    from edge_agent.store.outbox import OutboxDepth
    from edge_agent.watchdog import Heartbeat


@dataclass(frozen=True)
class LinkCounters:
    """One link's poller as the endpoint sees it: its devices' states (owned and written
    by the poller thread; read, never changed) and the samples it could not store."""

    name: str
    devices: tuple[DeviceState, ...]
    store_failures: int


@dataclass(frozen=True)
class AgentView:
    """The running agent, read-only, for /healthz, /metrics and /status.

    * ``station_id``: the station the agent runs for (a reload may change it).
    * ``dead_threads``: names of worker threads that ended although nothing stopped them.
    * ``heartbeats``: every worker's heartbeat, from which hung workers are found.
    * ``links``: one ``LinkCounters`` per poller, in start order.
    * ``forwarder_stats``: the forwarder's counters (written by the forwarder thread).
    * ``broker_address``: (host, port) of the broker the forwarder is configured for.
    * ``outbox_path``: the outbox database file.
    * ``outbox_writer_alive``: False once the outbox writer thread has ended.
    * ``outbox_depth(timeout_s)``: the outbox's counters, asked through its writer; raises
      ``OutboxError`` (``OutboxNotAnswering`` when ``timeout_s`` passes first).
    * ``outbox_set_aside``: corrupt outbox files renamed in this run.
    * ``alarms``: the active alarms and this run's alarm event counts (alarms_view.py);
      a station without alarm rules keeps the default, which shows none.
    * ``uplinks``: every running uplink (forward/uplink.py), in configuration order; its
      ``health()`` counters and ``depth(timeout_s)`` give the per-uplink series.
    """

    station_id: Callable[[], str]
    dead_threads: Callable[[], Sequence[str]]
    heartbeats: Callable[[], Sequence[Heartbeat]]
    links: Callable[[], Sequence[LinkCounters]]
    forwarder_stats: Callable[[], ForwarderStats]
    broker_address: Callable[[], tuple[str, int]]
    outbox_path: Callable[[], str]
    outbox_writer_alive: Callable[[], bool]
    outbox_depth: Callable[[float], OutboxDepth]
    outbox_set_aside: Callable[[], tuple[str, ...]]
    alarms: Callable[[], AlarmsSeen] = no_alarms
    uplinks: Callable[[], Sequence[Uplink]] = lambda: ()
