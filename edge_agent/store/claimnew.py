"""Claiming only the rows a transaction added: the standing offer's short way (writer thread).

A standing offer (store/handover.py) is made by an uplink whose last claim had room to
spare: every row up to that claim's ``row_id_high`` that the uplink may carry was
claimed then or earlier, or is acknowledged. So the next claim has only the rows above
it to look at, which one primary-key range read finds, instead of ``claims.claim``'s
look at every claim of the uplink and a seek per device and lane (issue 11: about half
of an appending transaction's SQL at W1).

The messages are the ones ``claims.claim`` would make of those rows: alarm events
first, one per message with the event's id; then runs of one device, one kind, rows
addressed to no uplink or to this one, never spanning a row of another message (a range
is deleted whole when acknowledged), at most ``max_entries`` rows and ``max_bytes``
(UTF-8, a single larger row alone), ordered by their first row; all live (above the
backlog boundary). When the rows are not that simple, ``claim_new`` returns None and the
caller claims the long way: a row at or below the boundary, a live row acquired before
the live cutoff (it must move to the backlog, claims.py), or more rows than one read
takes.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable

from edge_agent.payload import Message, StoredEntry
from edge_agent.store.claims import Claimed

#: At most this many new rows are claimed the short way (a burst of appends in one
#: transaction is far smaller; a bigger one is a drain, claimed the long way).
MAX_NEW_ROWS = 512

_CLAIM = ("INSERT INTO claims (uplink, msg_id, device_id, kind, historical, first_row, "
          "last_row) VALUES (?, ?, ?, ?, 0, ?, ?)")


def claim_new(conn: sqlite3.Connection, uplink: str, above_row_id: int, boundary: int,
              wanted: int, max_entries: int, max_bytes: int, live_cutoff: float,
              carries: Callable[[str], bool] | None) -> Claimed | None:
    """Up to ``wanted`` messages of ``uplink`` from the rows above ``above_row_id``
    (every row at or below it is claimed or not the uplink's, see the module docstring);
    None when the long way (``claims.claim``) must decide."""
    rows = conn.execute(
        "SELECT id, kind, device_id, seq, entry_id, body, uplink, acquired_at FROM outbox "
        "WHERE id > ? ORDER BY id LIMIT ?", [above_row_id, MAX_NEW_ROWS + 1]).fetchall()
    if len(rows) > MAX_NEW_ROWS or (rows and rows[0][0] <= boundary):
        return None
    alarms: list[Message] = []
    runs: dict[str, list[list[StoredEntry]]] = {}  # device -> its runs, in row order
    sizes: dict[str, int] = {}  # bytes of each device's open run
    for row_id, kind, device_id, seq, entry_id, body, addressee, acquired_at in rows:
        if addressee not in (None, uplink) or (carries is not None and not carries(device_id)):
            if device_id in runs:
                sizes[device_id] = -1  # a row of another uplink ends the device's run
            continue
        entry = StoredEntry(row_id, kind, device_id, seq, entry_id, body)
        if kind == "alarm":  # a message of its own, which no sample range may span
            alarms.append(Message(entry_id, "alarm", device_id, False, (entry,)))
            if device_id in runs:
                sizes[device_id] = -1
            continue
        if acquired_at < live_cutoff:
            return None  # late: the long way moves it to the backlog
        size = len(body.encode()) + 1
        device_runs = runs.setdefault(device_id, [])
        open_run = device_runs[-1] if device_runs and sizes[device_id] >= 0 else None
        if (open_run is None or open_run[0].kind != kind or len(open_run) >= max_entries
                or sizes[device_id] + size > max_bytes):
            device_runs.append([entry])
            sizes[device_id] = size
        else:
            open_run.append(entry)
            sizes[device_id] += size
    sample_runs = sorted((run for device_runs in runs.values() for run in device_runs),
                         key=lambda run: run[0].row_id)
    messages = alarms[:wanted]
    for message in messages:
        entry = message.entries[0]
        conn.execute(_CLAIM, [uplink, message.msg_id, entry.device_id, "alarm",
                              entry.row_id, entry.row_id])
    for run in sample_runs[:wanted - len(messages)]:
        msg_id = uuid.uuid4().hex
        conn.execute(_CLAIM, [uplink, msg_id, run[0].device_id, run[0].kind,
                              run[0].row_id, run[-1].row_id])
        messages.append(Message(msg_id, run[0].kind, run[0].device_id, False, tuple(run)))
    return Claimed(tuple(messages), boundary)
