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
            if not entries:  # nothing left to send (never expected): the claim goes
                remove(conn, uplink, msg_id)
                continue
            messages.append(Message(msg_id, kind, device_id, bool(historical),
                                    tuple(StoredEntry(*row) for row in entries)))
    if scan.boundary != boundary:
        scan.reset(boundary)
    moved = 0
    if len(messages) >= wanted:
        return Claimed(tuple(messages), boundary, moved)
    devices = _devices(conn)
    for historical, lane in _LANES:
        if len(messages) >= wanted:
            break
        heads = _Heads(conn, scan, ranges, historical, lane, devices)
        if not historical and live_cutoff is not None:
            head = heads.first()
            if head is not None and head[3] < live_cutoff:
                boundary, moved = _move_late_rows(conn, scan, ranges, boundary, live_cutoff)
                heads = _Heads(conn, scan, ranges, historical, lane, devices)
        while len(messages) < wanted:
            head = heads.first()
            if head is None:
                break
            message = _claim_run(conn, uplink, head, lane, scan.boundary, historical, ranges,
                                 max_entries, max_bytes)
            messages.append(message)
            heads.claimed(message.device_id, message.entries[-1].row_id)
    return Claimed(tuple(messages), boundary, moved)


def _inside(ranges: Ranges, device_id: str, row_id: int) -> bool:
    return any(first <= row_id <= last for first, last in ranges.get(device_id, ()))


def _devices(conn: sqlite3.Connection) -> list[str]:
    """Devices with rows in the outbox: one seek of ``outbox_device`` per device."""
    return [device for (device,) in conn.execute(
        "WITH RECURSIVE d(device) AS (SELECT MIN(device_id) FROM outbox UNION ALL "
        "SELECT (SELECT MIN(device_id) FROM outbox WHERE device_id > d.device) FROM d "
        "WHERE d.device IS NOT NULL) SELECT device FROM d WHERE device IS NOT NULL")]


def _device_head(conn: sqlite3.Connection, device_id: str, start: int, ranges: Ranges,
                 lane: str, boundary: int) -> tuple[int, str, str, float] | None:
    """The device's lowest unclaimed row of the lane at or above ``start``, by seeks of
    ``outbox_device`` that jump over the device's claimed ranges."""
    at = start
    while True:
        row = conn.execute(
            f"SELECT id FROM outbox WHERE device_id = ? AND id >= ? AND {lane} "
            "ORDER BY id LIMIT 1", [device_id, at, boundary]).fetchone()
        if row is None:
            return None
        covering = [last for first, last in ranges.get(device_id, ()) if first <= row[0] <= last]
        if not covering:
            kind, acquired_at = conn.execute("SELECT kind, acquired_at FROM outbox WHERE id = ?",
                                             [row[0]]).fetchone()
            return row[0], device_id, kind, acquired_at
        at = covering[0] + 1


class _Heads:
    """Each device's next unclaimed row of one lane, looked up once per claim call and
    again only for the device just claimed (a scan of the rows themselves read every
    message in flight again: 2.4 s of a 6.4 s drain of 25-reading samples)."""

    def __init__(self, conn: sqlite3.Connection, scan: Scan, ranges: Ranges,
                 historical: bool, lane: str, devices: list[str]) -> None:
        self._conn, self._scan, self._ranges = conn, scan, ranges
        self._historical, self._lane = historical, lane
        start = scan.frontier.get(historical, 0)
        self._heads = {device: _device_head(conn, device, start, ranges, lane, scan.boundary)
                       for device in devices}

    def first(self) -> tuple[int, str, str, float] | None:
        """The lane's lowest unclaimed row: (id, device, kind, acquired_at)."""
        heads = [head for head in self._heads.values() if head is not None]
        if not heads:
            return None
        head = min(heads)
        self._scan.frontier[self._historical] = head[0]  # all below: claimed or gone
        return head

    def claimed(self, device_id: str, last_row: int) -> None:
        """``device_id``'s rows up to ``last_row`` were just claimed."""
        self._heads[device_id] = _device_head(self._conn, device_id, last_row + 1,
                                              self._ranges, self._lane, self._scan.boundary)


def _move_late_rows(conn: sqlite3.Connection, scan: Scan, ranges: Ranges, boundary: int,
                    cutoff: float) -> tuple[int, int]:
    """Past the limit: the live lane's unclaimed rows acquired before ``cutoff`` join the
    backlog (the boundary moves up), so they no longer queue in front of new samples.
    Returns the new boundary and how many unclaimed rows moved. At most one scan chunk
    per call; what is left moves with the next claim."""
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
