"""The "Alarms" block of ``edge-agent status``: the active alarms of a running agent,
right under the first two lines, because an alarm is the first thing a technician must
see. Nothing is printed when none is active (a quiet station reads as before).

Drawn from the ``alarms`` list of /status (docs/metrics.md); an older agent without that
list shows no block. With no agent answering, ``saved_alarm_lines`` draws the same block
from the outbox's ``alarm_state`` (the last event of each alarm, written with the sample
that caused it), read on the read-only connection status already holds: what was active
when the agent last stored an event, which is what a restarted agent takes up again.
Device-supplied text goes through ``printable``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from edge_agent.alarms.events import AlarmEvent
from edge_agent.i18n import _, ngettext
from edge_agent.model import iso_utc
from edge_agent.store.alarmrows import last_events
from edge_agent.tools.ops.livevalues import printable
from edge_agent.tools.ops.text import parse_iso, table, when


def alarm_lines(doc: dict[str, Any], now: float) -> list[str]:
    """The block (a title line and a table), or [] when no alarm is active."""
    alarms = doc.get("alarms") or []
    if not alarms:
        return []
    title = ngettext("ALARMS: {count} active alarm", "ALARMS: {count} active alarms",
                     len(alarms)).format(count=len(alarms))
    return [title, *_table(alarms, now)]


def saved_alarms(conn: sqlite3.Connection) -> list[AlarmEvent]:
    """The active alarms ``alarm_state`` holds (an outbox older than alarms has no such
    table: none), on a read-only connection (store/readonly.py)."""
    try:
        events = last_events(conn)
    except sqlite3.OperationalError:  # schema before v5: no alarm_state
        return []
    return [event for event in events if event.active]


def saved_alarm_lines(events: Sequence[AlarmEvent], now: float) -> list[str]:
    """The block for alarms read from the outbox file, or [] when none was active.
    ``SINCE`` is then the time of each alarm's last event (its raise time is known only
    to the agent that raised it)."""
    if not events:
        return []
    title = ngettext("ALARMS: {count} alarm active when the agent last stored its state",
                     "ALARMS: {count} alarms active when the agent last stored their state",
                     len(events)).format(count=len(events))
    alarms = [{"device": e.device_id, "channel": e.channel, "rule": e.rule,
               "level": e.level, "value": e.value, "unit": e.unit, "limit": e.threshold,
               "since": iso_utc(e.at), "confirmed": e.confirmed, "reason": e.reason}
              for e in sorted(events, key=lambda e: (-e.level, e.at, e.alarm))]
    return [title, *_table(alarms, now)]


def _table(alarms: list[dict[str, Any]], now: float) -> list[str]:
    rows = [[_("LEVEL {level}").format(level=a["level"]),
             printable(f"{a['device']}/{a['channel']}"), printable(str(a["rule"])),
             _reading(a), when(at, now) if (at := parse_iso(a["since"])) else "-",
             _("confirmed") if a["confirmed"] else
             _("UNCONFIRMED: {reason}").format(reason=printable(str(a["reason"])))]
            for a in alarms]
    return [*table([_("LEVEL"), _("DEVICE/CHANNEL"), _("RULE"), _("VALUE / LIMIT"),
                           _("SINCE"), _("CONFIRMED")], rows)]


def _reading(alarm: dict[str, Any]) -> str:
    """'25 ppm > limit 20', or the value alone for instrument and communication alarms."""
    value = alarm["value"]
    shown = "-" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)
    shown = printable(f"{shown} {alarm['unit'] or ''}".rstrip())
    if alarm["limit"] is None:
        return shown
    return _("{value} (limit {limit})").format(value=shown, limit=f"{alarm['limit']:g}")
