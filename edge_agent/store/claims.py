"""Choosing the next message to publish from the outbox (runs in the writer thread).

Order of preference: a message claimed earlier but not in flight now (re-sent as is,
same id and bytes), then live rows (id above the session's backlog boundary), then
backlog rows (marked historical). A message holds consecutive rows of one device and
one kind, bounded by a count and by the UTF-8 size of the stored bodies.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Set

from edge_agent.payload import Message, StoredEntry

_LANES = ((False, "id > ?"), (True, "id <= ?"))


def unsent_claimed(conn: sqlite3.Connection, in_flight: Set[str]) -> Message | None:
    """The oldest message whose rows were claimed but which is not in flight now."""
    placeholders = ",".join("?" * len(in_flight))
    not_in = f"AND msg_id NOT IN ({placeholders})" if in_flight else ""
    row = conn.execute(
        f"SELECT msg_id FROM outbox WHERE msg_id IS NOT NULL {not_in} ORDER BY id LIMIT 1",
        list(in_flight),
    ).fetchone()
    if row is None:
        return None
    rows = conn.execute(
        "SELECT id, kind, device_id, seq, entry_id, body, historical FROM outbox "
        "WHERE msg_id = ? ORDER BY id",
        [row[0]],
    ).fetchall()
    entries = tuple(StoredEntry(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows)
    return Message(row[0], rows[0][1], rows[0][2], bool(rows[0][6]), entries)


def claim_new(conn: sqlite3.Connection, boundary: int, max_entries: int,
              max_bytes: int) -> Message | None:
    """Assign a new message id to the next run of unclaimed rows (live lane first)."""
    for historical, where in _LANES:
        head = conn.execute(
            f"SELECT id, device_id, kind FROM outbox WHERE msg_id IS NULL AND {where} "
            "ORDER BY id LIMIT 1",
            [boundary],
        ).fetchone()
        if head is not None:
            return _claim_run(conn, head, where, boundary, historical, max_entries, max_bytes)
    return None


def _claim_run(conn: sqlite3.Connection, head: tuple, where: str, boundary: int,
               historical: bool, max_entries: int, max_bytes: int) -> Message:
    head_id, device_id, kind = head
    candidates = conn.execute(
        "SELECT id, kind, device_id, seq, entry_id, body FROM outbox "
        f"WHERE device_id = ? AND msg_id IS NULL AND id >= ? AND {where} "
        "ORDER BY id LIMIT ?",
        [device_id, head_id, boundary, max_entries],
    ).fetchall()
    entries: list[StoredEntry] = []
    size = 0
    for row in candidates:
        if row[1] != kind:
            break
        size += len(row[5].encode()) + 1  # bytes on the wire, not characters
        if entries and size > max_bytes:
            break
        entries.append(StoredEntry(*row))
    msg_id = uuid.uuid4().hex
    conn.executemany(
        "UPDATE outbox SET msg_id = ?, historical = ? WHERE id = ?",
        [(msg_id, int(historical), entry.row_id) for entry in entries],
    )
    return Message(msg_id, kind, device_id, historical, tuple(entries))
