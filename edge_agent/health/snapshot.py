"""One consistent-enough look at a running agent, from the counters its workers keep.

What is read is the agent's ``AgentView`` (view.py), never the ``Agent`` itself.

Nothing here changes or locks a worker: each poller thread owns its ``DeviceState`` and
the forwarder thread its ``ForwarderStats``; reading an int or copying a dict of them
from another thread is safe under the GIL and at worst one poll out of date. The outbox
is asked through its writer (``Outbox.depth``: counters, no table scan) with a deadline,
so a hung writer makes the agent unhealthy instead of hanging the caller. Unhealthy means
"a restart would help": a dead or hung worker thread. A broker outage, a dead device or a
full disk are shown, not counted as unhealthy: the agent is doing what it can.

``Snapshot.to_json`` is the ``/status`` document that ``edge-agent status`` renders.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from edge_agent import __version__
from edge_agent.health.alarms_view import AlarmsSeen, alarms_json
from edge_agent.health.histogram import HistogramSnapshot
from edge_agent.health.skips import skip_counts
from edge_agent.i18n import current
from edge_agent.model import PolledReadings
from edge_agent.store.outbox import OutboxDepth, OutboxError, OutboxNotAnswering
from edge_agent.watchdog import stuck_workers

if TYPE_CHECKING:
    from edge_agent.forward.uplink import Uplink
    from edge_agent.health.view import AgentView
    from edge_agent.model import Sample
    from edge_agent.poller import DeviceState

STATUS_VERSION = 1


@dataclass(frozen=True)
class ChannelValue:
    """One channel's last reading (from the device's last poll). Times are unix seconds."""

    channel: str
    value: float | int | bool | str | None
    unit: str
    quality: str  # GOOD | SUSPECT | BAD
    reason: str | None
    acquired_at: float
    instrument_time: float | None


@dataclass(frozen=True)
class DeviceView:
    """One device as its poller sees it. Times are unix seconds."""

    id: str
    link: str
    state: str  # ok | degraded | down
    polls: int
    errors: dict[str, int]  # failed polls by reason
    entered: dict[str, int]  # times it became degraded / down
    samples_stored: int
    last_good_at: float | None
    last_error: str | None
    isolated: dict[str, str]  # channel -> what exception-02 isolation found
    last_error_at: float | None = None
    counters: dict[str, int] | None = None  # requests, answers, timeouts, exceptions, ...
    values: tuple[ChannelValue, ...] = ()


@dataclass(frozen=True)
class BrokerView:
    """The forwarder's link to the broker."""

    host: str
    port: int
    connected: bool
    state_since: float
    last_error: str | None
    sessions: int
    connect_failures: int
    published: int
    acknowledged: int
    rejected: int
    in_flight: int
    ack_latency: HistogramSnapshot
    unpublishable_messages: int = 0  # set aside as poison in this run (forward/poison.py)
    unpublishable_samples: int = 0
    last_ack_at: float | None = None
    nodes: tuple[str, ...] = ()  # every configured broker address (mqtt.brokers), in order
    failovers: int = 0  # sessions opened on another node than the one before
    overloaded: bool = False  # live samples falling behind the live window (overload.py)
    overload_moved: int = 0  # samples moved to the historical lane for it, this run


@dataclass(frozen=True)
class UplinkView:
    """One uplink (issue 12): where it is connected, its part of the outbox (None with
    ``error`` when the outbox could not be read) and its delivery counters."""

    name: str
    kind: str
    node: str  # host:port of the live session's broker node, or of the one being tried
    connected: bool
    state_since: float
    backlog: int | None  # samples of its devices it has not acknowledged
    oldest_waiting_at: float | None
    in_flight: int
    acknowledged: int
    resent: int
    gaps_announced: int
    error: str | None = None
    skipped: dict[str, int] | None = None  # let go unsent, by reason (skips.py)


@dataclass(frozen=True)
class OutboxView:
    """The outbox's depth, or why it could not be read; the corrupt files set aside in
    this run (kept in memory, so known even while the outbox cannot be read)."""

    path: str
    depth: OutboxDepth | None
    error: str | None
    dropped_at_start: int | None  # meta.dropped_total when the agent started
    set_aside: tuple[str, ...] = ()


@dataclass(frozen=True)
class EndpointView:
    """The health endpoint itself: its open connections and the client errors it met."""

    open_connections: int
    max_connections: int
    client_errors: dict[str, int]  # by reason, every reason present


@dataclass(frozen=True)
class Snapshot:
    """Everything /healthz, /metrics and /status show; ``problems`` empty means healthy."""

    station: str
    version: str
    started_at: float
    taken_at: float
    problems: tuple[str, ...]
    devices: tuple[DeviceView, ...]
    store_failures: dict[str, int]  # link -> samples that could not be stored
    broker: BrokerView
    outbox: OutboxView
    endpoint: EndpointView | None = None  # set by the endpoint that serves the snapshot
    alarms: AlarmsSeen = AlarmsSeen()  # active alarms and event counts (alarms_view.py)
    uplinks: tuple[UplinkView, ...] = ()  # every uplink, the first is ``broker``'s

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """The ``/status`` document (docs/metrics.md): times as ISO-8601 UTC."""
        depth = self.outbox.depth
        broker = self.broker
        return {
            "v": STATUS_VERSION,
            "source": "agent",
            "station": self.station,
            "version": self.version,
            "started_at": _iso(self.started_at),
            "taken_at": _iso(self.taken_at),
            "healthy": self.healthy,
            "lang": current(),  # the agent's language: the page's default (docs/i18n.md)
            "problems": list(self.problems),
            "alarms": alarms_json(self.alarms),
            "devices": [_device_json(device) for device in self.devices],
            "store_failures": self.store_failures,
            "broker": {
                "host": broker.host, "port": broker.port, "connected": broker.connected,
                "since": _iso(broker.state_since), "last_error": broker.last_error,
                "sessions": broker.sessions, "connect_failures": broker.connect_failures,
                "published": broker.published, "acknowledged": broker.acknowledged,
                "rejected": broker.rejected, "in_flight": broker.in_flight,
                "unpublishable_messages": broker.unpublishable_messages,
                "unpublishable_samples": broker.unpublishable_samples,
                "overloaded": broker.overloaded, "overload_moved": broker.overload_moved,
                "ack_latency_median_le_s": median_bound(broker.ack_latency),
                "last_puback_at": _iso(broker.last_ack_at),
                "nodes": list(broker.nodes), "failovers": broker.failovers,
            },
            "outbox": {
                "path": self.outbox.path,
                "error": self.outbox.error,
                "rows": depth.rows if depth else None,
                "samples": depth.samples if depth else None,
                "oldest_acquired_at": _iso(depth.oldest_acquired_at) if depth else None,
                "dropped_total": depth.dropped_total if depth else None,
                "dropped_since_start": _dropped_since_start(self.outbox),
                "bytes_in_use": depth.bytes_in_use if depth else None,
                "set_aside": list(self.outbox.set_aside),
                "corrupt_lost_total": depth.corrupt_lost_total if depth else None,
                "gap_events": depth.rows - depth.samples if depth else None,
                "alarms": depth.alarms if depth else None,
                "alarm_events_not_stored_total":
                    depth.alarm_events_not_stored_total if depth else None,
                "alarm_events_waiting_to_store":
                    depth.alarm_events_waiting_to_store if depth else None,
            },
            "uplinks": [_uplink_json(uplink) for uplink in self.uplinks],
        }


def take_snapshot(agent: AgentView, started_at: float, dropped_at_start: int | None,
                  outbox_timeout_s: float = 5.0) -> Snapshot:
    """Read ``agent``'s counters now; see the module docstring for what that costs."""
    problems = [f"worker thread {name} has ended" for name in agent.dead_threads()]
    # A worker alive but making no progress (the watchdog's view): as unhealthy as a dead one.
    problems += [f"worker thread {found.describe()}" for found in
                 stuck_workers(agent.heartbeats(), time.monotonic()) if not found.ended]
    if not agent.outbox_writer_alive():
        problems.append("outbox writer thread has ended")
    depth, error = None, None
    try:
        depth = agent.outbox_depth(outbox_timeout_s)
    except OutboxError as err:  # disk full, I/O error: shown, but no reason to restart
        error = str(err)
        if isinstance(err, OutboxNotAnswering) and agent.outbox_writer_alive():
            problems.append(f"outbox not answering: {err}")
    links = list(agent.links())  # a reload may swap the pollers; take them once
    stats = agent.forwarder_stats()
    # the node of the live session, or the one being tried (failover); host and port
    # as configured before the forwarder has picked one
    host, port = (stats.node.host, stats.node.port) if stats.node else agent.broker_address()
    return Snapshot(
        station=agent.station_id(),
        version=__version__,
        started_at=started_at,
        taken_at=time.time(),
        problems=tuple(problems),
        devices=tuple(_device_view(link.name, state)
                      for link in links for state in link.devices),
        store_failures={link.name: link.store_failures for link in links},
        broker=BrokerView(
            host, port, stats.connected, stats.state_since, stats.last_error,
            stats.sessions, stats.connect_failures, stats.published, stats.acknowledged,
            stats.rejected, stats.in_flight, stats.ack_latency.snapshot(),
            stats.unpublishable_messages, stats.unpublishable_samples,
            stats.last_ack_at, stats.nodes, stats.failovers,
            stats.overloaded, stats.overload_moved),
        outbox=OutboxView(agent.outbox_path(), depth, error, dropped_at_start,
                          agent.outbox_set_aside()),
        alarms=agent.alarms(),
        uplinks=tuple(_uplink_view(uplink, outbox_timeout_s) for uplink in agent.uplinks()),
    )


def _uplink_view(uplink: Uplink, timeout_s: float) -> UplinkView:
    """One uplink's counters (its thread's, read) and depth (asked of the outbox)."""
    stats = uplink.health()
    backlog, oldest, error = None, None, None
    try:
        depth = uplink.depth(timeout_s)
        backlog, oldest = depth.backlog, depth.oldest_waiting_at
    except OutboxError as err:
        error = str(err)
    return UplinkView(
        uplink.name, uplink.kind, str(stats.node) if stats.node else "", stats.connected,
        stats.state_since, backlog, oldest, stats.in_flight, stats.acknowledged,
        stats.resent, stats.gaps_announced, error, skip_counts(uplink))


def _uplink_json(uplink: UplinkView) -> dict[str, Any]:
    return {
        "name": uplink.name, "kind": uplink.kind, "node": uplink.node,
        "connected": uplink.connected, "since": _iso(uplink.state_since),
        "backlog_samples": uplink.backlog,
        "oldest_waiting_at": _iso(uplink.oldest_waiting_at), "in_flight": uplink.in_flight,
        "acknowledged": uplink.acknowledged, "resent": uplink.resent,
        "gaps_announced": uplink.gaps_announced, "error": uplink.error,
        "skipped": dict(uplink.skipped or {}),
    }


def _device_view(link: str, state: DeviceState) -> DeviceView:
    """``state`` is a poller's DeviceState; dict() copies are atomic under the GIL, and
    ``last_sample`` is an immutable Sample replaced whole by the poller."""
    counters = state.exchanges.as_dict()
    counters["split_reads"] = int(getattr(state.driver, "split_reads", 0) or 0)
    return DeviceView(
        id=state.device_id, link=link, state=str(state.health.value), polls=state.polls,
        errors=dict(state.errors), entered=dict(state.entered),
        samples_stored=state.samples_stored, last_good_at=state.last_good_at,
        last_error=state.last_error,
        isolated=dict(getattr(state.driver, "isolated", None) or {}),
        last_error_at=state.last_error_at, counters=counters,
        values=last_values(state.last_sample))


def last_values(sample: Sample | None) -> tuple[ChannelValue, ...]:
    """Each channel's reading in ``sample`` (None: nothing polled yet)."""
    if sample is None:
        return ()
    readings = sample.readings
    if isinstance(readings, PolledReadings):  # from the outcomes: no Reading built and kept
        at = readings.acquired_at.timestamp()
        outcomes = readings.outcomes
        return tuple(ChannelValue(name, value, unit, quality.value, reason, at, None)
                     for name, unit in readings.channels
                     for value, quality, reason, _ in (outcomes[name],))
    return tuple(ChannelValue(
        r.channel, r.value, r.unit, r.quality.value, r.reason, r.acquired_at.timestamp(),
        r.instrument_time.timestamp() if r.instrument_time else None)
        for r in sample.readings)


def _device_json(device: DeviceView) -> dict[str, Any]:
    return {
        "id": device.id, "link": device.link, "state": device.state, "polls": device.polls,
        "errors": device.errors, "entered": device.entered,
        "samples_stored": device.samples_stored,
        "last_good_at": _iso(device.last_good_at) if device.last_good_at else None,
        "last_error": device.last_error, "isolated_channels": device.isolated,
        "last_error_at": _iso(device.last_error_at),
        "counters": device.counters or {},
        "values": [{"channel": v.channel, "value": _json_value(v.value), "unit": v.unit,
                    "quality": v.quality, "reason": v.reason,
                    "acquired_at": _iso(v.acquired_at),
                    "instrument_time": _iso(v.instrument_time)} for v in device.values],
    }


def _json_value(value: float | int | bool | str | None) -> float | int | bool | str | None:
    """NaN and infinities are not JSON (a browser's JSON.parse refuses them): as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _dropped_since_start(outbox: OutboxView) -> int | None:
    if outbox.depth is None or outbox.dropped_at_start is None:
        return None
    return outbox.depth.dropped_total - outbox.dropped_at_start


def median_bound(histogram: HistogramSnapshot) -> float | None:
    """The upper bound of the bucket holding the median observation (None: no
    observations, or the median is above every bound)."""
    if histogram.count == 0:
        return None
    half = histogram.count / 2
    return next((bound for bound, count in zip(histogram.bounds, histogram.cumulative,
                                               strict=True) if count >= half), None)


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    moment = datetime.fromtimestamp(at, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
