"""Claims: which outbox rows an uplink has put into which message (runs in the writer thread).

A claim is one message of one uplink, a row in the ``claims`` table keyed by
(uplink, msg_id): the device, the kind (sample or gap), the lane (historical or live)
and a row-id range. The message holds exactly the rows of that device with ids from
``first_row`` to ``last_row``: a claim takes consecutive rows of one device and stops
before a row of another kind, of another lane or of another claim of the same uplink,
and row ids only grow (AUTOINCREMENT), so no later row can fall inside a range. Claiming
writes one row per message instead of a message id into every row, and an
acknowledgement deletes the range by the ``outbox_device`` index.

Order of preference: claims of the uplink not in flight now (re-sent as they are: same
id, same rows, so the same bytes), then live rows (id above the session's backlog
boundary), then backlog rows (marked historical). One call fills several messages, the
whole free part of the in-flight window, in one transaction.

``Scan`` remembers, per lane, the row id below which every row is claimed or gone, so a
claim does not read the rows of the messages in flight again. It is a hint: resetting it
(a rolled-back transaction, a new file, a new boundary) costs one longer scan, never a
wrong claim. The delete rule for several uplinks is in docs/architecture.md.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Set
from dataclasses import dataclass, field

from edge_agent.payload import Message, StoredEntry

_SCAN_CHUNK = 512
_LANES = ((False, "id > ?"), (True, "id <= ?"))
_ROWS = "SELECT id, kind, device_id, seq, entry_id, body FROM outbox"

Ranges = dict[str, list[tuple[int, int]]]  # device -> claimed (first_row, last_row)


@dataclass
class Scan:
    """Where the next search for unclaimed rows starts, per lane (see the module
    docstring); valid for one backlog boundary."""

    boundary: int = -1
    frontier: dict[bool, int] = field(default_factory=dict)

    def reset(self, boundary: int = -1) -> None:
        self.boundary = boundary
        self.frontier.clear()


@dataclass(frozen=True)
class Claimed:
    """What one claim transaction produced. ``boundary``: the backlog boundary after it
    (moved up when live rows had fallen behind ``live_cutoff``); ``moved``: unclaimed
    rows that this moved from the live lane to the historical one."""

    messages: tuple[Message, ...]
    boundary: int
    moved: int = 0


def claim(conn: sqlite3.Connection, uplink: str, in_flight: Set[str], scan: Scan,
          boundary: int, wanted: int, max_entries: int, max_bytes: int,
          live_cutoff: float | None = None) -> Claimed:
    """Up to ``wanted`` messages for ``uplink``: its claims not in ``in_flight`` first,
    then new claims (live lane, then backlog). Rows of the live lane acquired before
    ``live_cutoff`` (unix s) move to the backlog first (the forwarder's overload rule)."""
    rows = conn.execute(
        "SELECT msg_id, device_id, kind, historical, first_row, last_row FROM claims "
        "WHERE uplink = ? ORDER BY rowid", [uplink]).fetchall()
    ranges: Ranges = {}
    messages: list[Message] = []
    for msg_id, device_id, kind, historical, first, last in rows:
        ranges.setdefault(device_id, []).append((first, last))
        if msg_id not in in_flight and len(messages) < wanted:
            entries = conn.execute(f"{_ROWS} WHERE device_id = ? AND id BETWEEN ? AND ? "
                                   "ORDER BY id", [device_id, first, last]).fetchall()
            messages.append(Message(msg_id, kind, device_id, bool(historical),
                                    tuple(StoredEntry(*row) for row in entries)))
    if scan.boundary != boundary:
        scan.reset(boundary)
    moved = 0
    if live_cutoff is not None and len(messages) < wanted:
        boundary, moved = _move_late_rows(conn, scan, ranges, boundary, live_cutoff)
    for historical, lane in _LANES:
        while len(messages) < wanted:
            head = _next_head(conn, scan, ranges, historical, lane)
            if head is None:
                break
            messages.append(_claim_run(conn, uplink, head, lane, scan.boundary, historical,
                                       ranges, max_entries, max_bytes))
    return Claimed(tuple(messages), boundary, moved)


def _inside(ranges: Ranges, device_id: str, row_id: int) -> bool:
    return any(first <= row_id <= last for first, last in ranges.get(device_id, ()))


def _next_head(conn: sqlite3.Connection, scan: Scan, ranges: Ranges, historical: bool,
               lane: str) -> tuple[int, str, str, float] | None:
    """The lowest unclaimed row of the lane: (id, device, kind, acquired_at)."""
    start = scan.frontier.get(historical, 0)
    while True:
        rows = conn.execute(
            f"SELECT id, device_id, kind, acquired_at FROM outbox WHERE {lane} AND id >= ? "
            "ORDER BY id LIMIT ?", [scan.boundary, start, _SCAN_CHUNK]).fetchall()
        for row in rows:
            if not _inside(ranges, row[1], row[0]):
                scan.frontier[historical] = row[0]
                return row
        if len(rows) < _SCAN_CHUNK:
            scan.frontier[historical] = rows[-1][0] + 1 if rows else start
            return None
        start = rows[-1][0] + 1


def _move_late_rows(conn: sqlite3.Connection, scan: Scan, ranges: Ranges, boundary: int,
                    cutoff: float) -> tuple[int, int]:
    """Past the limit: the live lane's unclaimed rows acquired before ``cutoff`` join the
    backlog (the boundary moves up), so they no longer queue in front of new samples.
    Returns the new boundary and how many unclaimed rows moved. At most one scan chunk
    per call; what is left moves with the next claim."""
    head = _next_head(conn, scan, ranges, False, "id > ?")
    if head is None or head[3] >= cutoff:
        return boundary, 0
    rows = conn.execute("SELECT id, device_id, acquired_at FROM outbox WHERE id > ? "
                        "ORDER BY id LIMIT ?", [boundary, _SCAN_CHUNK * 8]).fetchall()
    new_boundary, moved = boundary, 0
    for row_id, device_id, acquired_at in rows:
        if acquired_at >= cutoff:
            break
        new_boundary = row_id
        moved += not _inside(ranges, device_id, row_id)
    historical_frontier = scan.frontier.get(True, 0)
    scan.reset(new_boundary)
    scan.frontier[True] = historical_frontier  # the backlog only grew at its top
    return new_boundary, moved


def _claim_run(conn: sqlite3.Connection, uplink: str, head: tuple, lane: str, boundary: int,
               historical: bool, ranges: Ranges, max_entries: int, max_bytes: int) -> Message:
    """Claim the rows of the head's device from the head on: one kind, one lane, up to the
    next claimed range of that device, ``max_entries`` rows and ``max_bytes`` (UTF-8)."""
    head_id, device_id, kind = head[0], head[1], head[2]
    stop = min((first for first, _ in ranges.get(device_id, ()) if first > head_id),
               default=None)
    before_stop = "" if stop is None else f" AND id < {int(stop)}"
    candidates = conn.execute(
        f"{_ROWS} WHERE device_id = ? AND id >= ? AND {lane}{before_stop} ORDER BY id LIMIT ?",
        [device_id, head_id, boundary, max_entries]).fetchall()
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
    first, last = entries[0].row_id, entries[-1].row_id
    conn.execute("INSERT INTO claims (uplink, msg_id, device_id, kind, historical, first_row, "
                 "last_row) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 [uplink, msg_id, device_id, kind, int(historical), first, last])
    ranges.setdefault(device_id, []).append((first, last))
    return Message(msg_id, kind, device_id, historical, tuple(entries))


def remove(conn: sqlite3.Connection, uplink: str, msg_id: str) -> tuple[str, str, int, int] | None:
    """Delete ``uplink``'s claim ``msg_id``; its (device, kind, first_row, last_row), or
    None when there is none (already acknowledged or set aside)."""
    return conn.execute(
        "DELETE FROM claims WHERE uplink = ? AND msg_id = ? "
        "RETURNING device_id, kind, first_row, last_row", [uplink, msg_id]).fetchone()


def acknowledge(conn: sqlite3.Connection, uplink: str, msg_id: str) -> tuple[str, int]:
    """``uplink`` has delivered ``msg_id``: its claim and rows leave the outbox. With one
    uplink every row of the range is past every uplink, so the range is deleted at once
    (the rule for several uplinks: docs/architecture.md). Returns (kind, rows deleted);
    ("sample", 0) when the claim is gone already."""
    claimed = remove(conn, uplink, msg_id)
    if claimed is None:
        return "sample", 0
    device_id, kind, first, last = claimed
    deleted = conn.execute("DELETE FROM outbox WHERE device_id = ? AND id BETWEEN ? AND ?",
                           [device_id, first, last]).rowcount
    return kind, deleted


UNCLAIMED = ("NOT EXISTS (SELECT 1 FROM claims c WHERE c.device_id = outbox.device_id "
             "AND c.first_row <= outbox.id AND c.last_row >= outbox.id)")
"""SQL condition: the ``outbox`` row is claimed by no uplink (retention, merge_gap)."""
