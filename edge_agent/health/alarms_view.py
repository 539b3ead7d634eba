"""Active alarms as /status, /metrics and the page show them (issue 17 item 6).

Read through ``AgentView.alarms`` (view.py): the agent hands over the engine's active
alarms (``AlarmEngine.active``, safe from any thread) with the raise times and event
counts its ``AlarmTally`` keeps (edge_agent/alarms/tally.py). Nothing here touches the
engine. A station without alarms shows an empty list and zero counts, so dashboards and
scripts need no special case. Field and metric names: docs/metrics.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edge_agent.alarms.events import AlarmEvent, EventKind
from edge_agent.model import iso_utc

MetricSample = tuple[dict[str, str], float]
#: (name, type, help, samples): one metric family, as metrics.render writes it
Family = tuple[str, str, str, list[MetricSample]]


@dataclass(frozen=True)
class ActiveAlarm:
    """One active alarm: ``rule`` the rule that holds it at ``level`` (``high``,
    ``high_high``, ``rate_of_rise``, ``instrument``, ``communication``); ``value`` and
    ``unit`` of its last event; ``limit`` the rule's threshold (None for instrument and
    communication alarms); ``since`` when it was raised; ``reason`` why it is
    unconfirmed (None when confirmed)."""

    device: str
    channel: str
    rule: str
    level: int
    value: float | int | bool | str | None
    unit: str
    limit: float | None
    since: datetime
    confirmed: bool
    reason: str | None


@dataclass(frozen=True)
class AlarmsSeen:
    """The active alarms (highest level first, then the oldest) and this run's alarm
    events by kind (every kind present)."""

    active: tuple[ActiveAlarm, ...] = ()
    events: Mapping[str, int] = field(
        default_factory=lambda: dict.fromkeys((kind.value for kind in EventKind), 0))


def no_alarms() -> AlarmsSeen:
    """What a station without alarm rules shows: nothing active, no events."""
    return AlarmsSeen()


def alarms_seen(active: Sequence[AlarmEvent], since: Callable[[AlarmEvent], datetime],
                events: Mapping[str, int]) -> AlarmsSeen:
    """``active``: the last event of each active alarm; ``since``: its raise time."""
    alarms = [ActiveAlarm(e.device_id, e.channel, e.rule, e.level, e.value, e.unit,
                          e.threshold, since(e), e.confirmed, e.reason) for e in active]
    alarms.sort(key=lambda a: (-a.level, a.since, a.device, a.channel, a.rule))
    return AlarmsSeen(tuple(alarms), dict(events))


def alarms_json(seen: AlarmsSeen) -> list[dict[str, Any]]:
    """The ``alarms`` list of /status."""
    return [{"device": a.device, "channel": a.channel, "rule": a.rule, "level": a.level,
             "value": _json_value(a.value), "unit": a.unit, "limit": a.limit,
             "since": iso_utc(a.since), "confirmed": a.confirmed, "reason": a.reason}
            for a in seen.active]


def alarm_families(seen: AlarmsSeen) -> list[Family]:
    """The alarm metric families of /metrics."""
    active: dict[tuple[str, str, str, str], int] = {}
    for a in seen.active:  # two rules of one channel at one level: one sample, counted 2
        key = (a.device, a.channel, str(a.level), "true" if a.confirmed else "false")
        active[key] = active.get(key, 0) + 1
    return [
        ("edge_agent_alarms_active", "gauge",
         "Active alarms by device, channel, level (1, 2) and confirmed (false: the reading "
         "could not be trusted, /status says why); absent when none.",
         [({"device": d, "channel": c, "level": lv, "confirmed": ok}, n)
          for (d, c, lv, ok), n in sorted(active.items())]),
        ("edge_agent_alarm_events_total", "counter",
         "Alarm events since the agent started, by kind (raised, escalated, lowered, "
         "confirmed, cleared).",
         [({"kind": kind}, count) for kind, count in seen.events.items()]),
    ]


def _json_value(value: float | int | bool | str | None) -> float | int | bool | str | None:
    """NaN and infinities are not JSON: as text (as the device values of /status)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
