"""Alarm events as outbox rows (issue 17 item 3; runs in the outbox's writer thread).

An alarm event is a row of kind ``alarm``: ``entry_id`` is the event's id, ``body`` its
stored JSON (payload.py, ``encode_alarm_body``), ``acquired_at`` the time of the sample
that caused it. It is inserted by the same transaction as that sample (``Outbox.append``
with ``alarms``), so after any crash an alarm row never exists without its sample, nor
the sample without its alarm rows. A communication alarm has no sample and is a
transaction of its own (``Outbox.append_alarms``).

The same transaction writes the event into ``alarm_state`` (one row per alarm: device,
channel, group): the last event of each alarm outlives its outbox row, which leaves once
delivered, and is what the engine is restored from at start (``last_events``).

Claims take alarm rows before any sample (claims.py, ``claim_alarms``); retention never
drops them (it drops samples only, retention.py).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence

from edge_agent.alarms.events import AlarmEvent
from edge_agent.payload import encode_alarm_body

log = logging.getLogger("edge_agent.store.outbox")


def insert(conn: sqlite3.Connection, events: Sequence[AlarmEvent], acquired_at: float,
           late: bool = False) -> int:
    """Insert ``events`` as alarm rows and as their alarms' last state; returns rows added.
    ``late``: events whose own transaction failed (outbox.py), stored now: an alarm whose
    saved state is already a newer event keeps it."""
    for event in events:
        body = encode_alarm_body(event.as_dict())
        conn.execute(
            "INSERT INTO outbox (kind, device_id, seq, entry_id, acquired_at, body) "
            "VALUES ('alarm', ?, NULL, ?, ?, ?)",
            [event.device_id, event.id, acquired_at, body])
        if late and _newer_saved(conn, event):
            continue
        conn.execute(
            "INSERT OR REPLACE INTO alarm_state (device_id, channel, alarm_group, event) "
            "VALUES (?, ?, ?, ?)", [event.device_id, event.channel, event.group, body])
    return len(events)


def _newer_saved(conn: sqlite3.Connection, event: AlarmEvent) -> bool:
    """True when ``event``'s alarm already has a later event saved in ``alarm_state``."""
    row = conn.execute("SELECT event FROM alarm_state WHERE device_id = ? AND channel = ? "
                       "AND alarm_group = ?",
                       [event.device_id, event.channel, event.group]).fetchone()
    if row is None:
        return False
    try:
        return AlarmEvent.from_dict(json.loads(row[0])).at > event.at
    except (ValueError, KeyError, TypeError):
        return False  # unreadable: the late event is better than nothing


def last_events(conn: sqlite3.Connection) -> list[AlarmEvent]:
    """The last event of every alarm that has had one. A row that cannot be read (hand
    edited, a damaged page) is logged and skipped: that alarm starts inactive."""
    events: list[AlarmEvent] = []
    for device_id, channel, group, body in conn.execute(
            "SELECT device_id, channel, alarm_group, event FROM alarm_state "
            "ORDER BY device_id, channel, alarm_group"):
        try:
            events.append(AlarmEvent.from_dict(json.loads(body)))
        except (ValueError, KeyError, TypeError) as err:
            log.error("outbox: the saved state of alarm %s/%s/%s cannot be read (%s); it "
                      "starts inactive", device_id, channel, group, err)
    return events
