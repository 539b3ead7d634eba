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
id, same rows, so the same bytes), those of alarms first; then alarm rows not claimed yet
(the alarm lane, ``claim_alarms``: one event per message, its id the event's), ahead of
the other claims offered again; then live rows (id above the session's backlog
boundary), then backlog rows (marked historical). One call fills several messages, the
whole free part of the in-flight window, in one transaction.

``Scan`` remembers, per lane, the row id below which every row is claimed or gone, so a
claim does not read the rows of the messages in flight again. It is a hint: resetting it
(a rolled-back transaction, a new file, a new boundary) costs one longer scan, never a
wrong claim.

Several uplinks (issue 12; the rule in docs/architecture.md): an uplink claims only rows
of the devices it carries (``carries``) and rows addressed to no uplink or to it (the
``uplink`` column: a gap event for one uplink only). Acknowledging marks the claim
acknowledged (``acked_at``) and deletes the rows of its range that every other uplink
carrying them is past too (an acknowledged claim of theirs covers them); an acknowledged
claim stays, so its uplink never claims those rows again, until no row of its range is
left. Adjacent acknowledged claims of an uplink and device merge, so they stay few while
another uplink is down. With one uplink carrying a device, none of this runs: the range
is deleted at once, as before.
"""

from __future__ import annotations

import functools
import sqlite3
import uuid
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field

from edge_agent.payload import Message, StoredEntry

_SCAN_CHUNK = 512
_HEAD_SCAN = 256  # rows of a lane _scan_heads reads before it seeks per device instead
_LANES = ((False, "id > ?"), (True, "id <= ?"))
_ROWS = "SELECT id, kind, device_id, seq, entry_id, body FROM outbox"
_FOR_UPLINK = "(uplink IS NULL OR uplink = ?)"  # rows the uplink may carry

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
    resent: int = 0  # messages of the list that are earlier claims offered again


def claim(conn: sqlite3.Connection, uplink: str, in_flight: Set[str], scan: Scan,
          boundary: int, wanted: int, max_entries: int, max_bytes: int,
          live_cutoff: float | None = None,
          carries: Callable[[str], bool] | None = None) -> Claimed:
    """Up to ``wanted`` messages for ``uplink``: its claims not in ``in_flight`` first
    (alarms among them first), then new alarm claims, then new claims (live lane, then
    backlog). Rows of the live lane acquired before ``live_cutoff`` (unix s) move to the
    backlog first (the forwarder's overload rule). ``carries``: whether ``uplink``
    carries a device (None: every device)."""
    rows = conn.execute(
        "SELECT msg_id, device_id, kind, historical, first_row, last_row, acked_at "
        "FROM claims WHERE uplink = ? ORDER BY rowid", [uplink]).fetchall()
    ranges: Ranges = {}
    waiting: list[tuple] = []  # claims not acknowledged and not in flight: offered again
    for msg_id, device_id, kind, historical, first, last, acked_at in rows:
        ranges.setdefault(device_id, []).append((first, last))
        if acked_at is None and msg_id not in in_flight:
            waiting.append((msg_id, device_id, kind, historical, first, last))
    if scan.boundary != boundary:
        scan.reset(boundary)
    messages = _offer_again(conn, uplink, [w for w in waiting if w[2] == "alarm"], wanted)
    resent = len(messages)
    messages += claim_alarms(conn, uplink, boundary, wanted - len(messages), ranges, carries)
    again = _offer_again(conn, uplink, [w for w in waiting if w[2] != "alarm"],
                         wanted - len(messages))
    messages += again
    moved, resent = 0, resent + len(again)
    if len(messages) >= wanted:
        return Claimed(tuple(messages), boundary, moved, resent)
    carried = functools.cache(  # walked at most once per claim, and only to seek
        lambda: [device for device in devices(conn) if carries is None or carries(device)])
    for historical, lane in _LANES:
        if len(messages) >= wanted:
            break
        heads = _Heads(conn, uplink, scan, ranges, historical, lane, carries, carried)
        if not historical and live_cutoff is not None:
            head = heads.first()
            if head is not None and head[3] < live_cutoff:
                boundary, moved = _move_late_rows(conn, scan, ranges, boundary, live_cutoff)
                heads = _Heads(conn, uplink, scan, ranges, historical, lane, carries, carried)
        while len(messages) < wanted:
            head = heads.first()
            if head is None:
                break
            message = _claim_run(conn, uplink, head, lane, scan.boundary, historical, ranges,
                                 max_entries, max_bytes)
            messages.append(message)
            heads.claimed(message.device_id, message.entries[-1].row_id)
    return Claimed(tuple(messages), boundary, moved, resent)


def _offer_again(conn: sqlite3.Connection, uplink: str, waiting: list[tuple],
                 wanted: int) -> list[Message]:
    """Up to ``wanted`` of the ``waiting`` claims as messages again: same id, same rows,
    so the same bytes. A claim whose rows are all gone (never expected) is removed."""
    messages: list[Message] = []
    for msg_id, device_id, kind, historical, first, last in waiting:
        if len(messages) >= wanted:
            break
        entries = conn.execute(f"{_ROWS} WHERE device_id = ? AND id BETWEEN ? AND ? "
                               "ORDER BY id", [device_id, first, last]).fetchall()
        if not entries:
            remove(conn, uplink, msg_id)
            continue
        messages.append(Message(msg_id, kind, device_id, bool(historical),
                                tuple(StoredEntry(*row) for row in entries)))
    return messages


def claim_alarms(conn: sqlite3.Connection, uplink: str, boundary: int, wanted: int,
                 ranges: Ranges, carries: Callable[[str], bool] | None) -> list[Message]:
    """The alarm lane, ahead of live and backlog rows: up to ``wanted`` alarm rows
    ``uplink`` carries and has not claimed, oldest first, one event per message whose id
    is the event's id (the platform de-duplicates an alarm by it). Found by the partial
    index ``outbox_alarms``, so a backlog of samples costs nothing here. An alarm row is
    historical when it is below the backlog boundary (raised before this session)."""
    messages: list[Message] = []
    if wanted <= 0:
        return messages
    for row in conn.execute(
            f"{_ROWS} WHERE kind = 'alarm' AND {_FOR_UPLINK} ORDER BY id", [uplink]).fetchall():
        entry = StoredEntry(*row)
        if (carries is not None and not carries(entry.device_id)) \
                or _inside(ranges, entry.device_id, entry.row_id):
            continue
        historical = entry.row_id <= boundary
        conn.execute("INSERT INTO claims (uplink, msg_id, device_id, kind, historical, "
                     "first_row, last_row) VALUES (?, ?, ?, 'alarm', ?, ?, ?)",
                     [uplink, entry.entry_id, entry.device_id, int(historical),
                      entry.row_id, entry.row_id])
        ranges.setdefault(entry.device_id, []).append((entry.row_id, entry.row_id))
        messages.append(Message(entry.entry_id, "alarm", entry.device_id, historical,
                                (entry,)))
        if len(messages) >= wanted:
            break
    return messages


def _inside(ranges: Ranges, device_id: str, row_id: int) -> bool:
    for first, last in ranges.get(device_id, ()):  # noqa: SIM110 (per row: no generator)
        if first <= row_id <= last:
            return True
    return False


def devices(conn: sqlite3.Connection) -> list[str]:
    """Devices with rows in the outbox: one seek of ``outbox_device`` per device."""
    return [device for (device,) in conn.execute(
        "WITH RECURSIVE d(device) AS (SELECT MIN(device_id) FROM outbox UNION ALL "
        "SELECT (SELECT MIN(device_id) FROM outbox WHERE device_id > d.device) FROM d "
        "WHERE d.device IS NOT NULL) SELECT device FROM d WHERE device IS NOT NULL")]


def _scan_heads(conn: sqlite3.Connection, uplink: str, start: int, ranges: Ranges, lane: str,
                boundary: int, carries: Callable[[str], bool] | None,
                ) -> dict[str, tuple[int, str, str, float]] | None:
    """Each device's lowest row of the lane at or above ``start`` that ``uplink`` carries
    and has not claimed, read from the lane's rows in id order when there are at most
    ``_HEAD_SCAN`` of them (None when there are more). Live, these are the messages in
    flight and what committed since the last claim: one look instead of a seek per
    device of the outbox and a ``devices`` walk (two thirds of a claim's CPU at 40 000
    tags/s, issue 11); an empty backlog lane costs one seek that finds nothing."""
    rows = conn.execute(
        f"SELECT id, device_id, kind, acquired_at, uplink FROM outbox WHERE id >= ? AND "
        f"{lane} ORDER BY id LIMIT ?", [start, boundary, _HEAD_SCAN + 1]).fetchall()
    if len(rows) > _HEAD_SCAN:
        return None
    heads: dict[str, tuple[int, str, str, float]] = {}
    skipped: set[str] = set()  # devices the uplink does not carry
    for row_id, device_id, kind, acquired_at, addressee in rows:
        if device_id in heads or device_id in skipped or addressee not in (None, uplink) \
                or _inside(ranges, device_id, row_id):
            continue
        if carries is not None and not carries(device_id):
            skipped.add(device_id)
            continue
        heads[device_id] = (row_id, device_id, kind, acquired_at)
    return heads


def _device_head(conn: sqlite3.Connection, uplink: str, device_id: str, start: int,
                 ranges: Ranges, lane: str, boundary: int,
                 ) -> tuple[int, str, str, float] | None:
    """The device's lowest row of the lane at or above ``start`` that ``uplink`` carries
    and has not claimed, by seeks of ``outbox_device`` that jump over its claimed ranges."""
    at = start
    while True:
        row = conn.execute(
            f"SELECT id, kind, acquired_at FROM outbox WHERE device_id = ? AND id >= ? "
            f"AND {lane} AND {_FOR_UPLINK} ORDER BY id LIMIT 1",
            [device_id, at, boundary, uplink]).fetchone()
        if row is None:
            return None
        covering = [last for first, last in ranges.get(device_id, ()) if first <= row[0] <= last]
        if not covering:
            return row[0], device_id, row[1], row[2]
        at = covering[0] + 1


class _Heads:
    """Each device's next unclaimed row of one lane, looked up once per claim call and
    again only for the device just claimed: from one read of the lane's rows when they
    are few (``_scan_heads``), else by a seek per device (an unbounded read of the rows
    themselves read every message in flight again: 2.4 s of a 6.4 s drain of 25-reading
    samples). ``carried``: the devices the uplink carries, asked only for the seeks."""

    def __init__(self, conn: sqlite3.Connection, uplink: str, scan: Scan, ranges: Ranges,
                 historical: bool, lane: str, carries: Callable[[str], bool] | None,
                 carried: Callable[[], list[str]]) -> None:
        self._conn, self._uplink, self._scan, self._ranges = conn, uplink, scan, ranges
        self._historical, self._lane = historical, lane
        start = scan.frontier.get(historical, 0)
        heads = _scan_heads(conn, uplink, start, ranges, lane, scan.boundary, carries)
        if heads is None:  # more rows above the frontier than one look reads: seek each
            heads = {device: _device_head(conn, uplink, device, start, ranges, lane,
                                          scan.boundary) for device in carried()}
        self._heads: dict[str, tuple[int, str, str, float] | None] = heads

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
        self._heads[device_id] = _device_head(self._conn, self._uplink, device_id,
                                              last_row + 1, self._ranges, self._lane,
                                              self._scan.boundary)


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
    next claimed range of that device or row addressed to another uplink, ``max_entries``
    rows and ``max_bytes`` (UTF-8)."""
    head_id, device_id, kind = head[0], head[1], head[2]
    stop = min((first for first, _ in ranges.get(device_id, ()) if first > head_id),
               default=None)
    before_stop = "" if stop is None else f" AND id < {int(stop)}"
    candidates = conn.execute(
        f"SELECT id, kind, device_id, seq, entry_id, body, uplink FROM outbox "
        f"WHERE device_id = ? AND id >= ? AND {lane}{before_stop} ORDER BY id LIMIT ?",
        [device_id, head_id, boundary, max_entries]).fetchall()
    entries: list[StoredEntry] = []
    size = 0
    for *row, addressee in candidates:
        if row[1] != kind or addressee not in (None, uplink):
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


def acknowledge(conn: sqlite3.Connection, uplink: str, msg_id: str,
                others_of: Callable[[str], Sequence[str]] | None = None,
                now: float = 0.0) -> tuple[str, str, int]:
    """``uplink`` has delivered ``msg_id``. ``others_of(device)``: the other uplinks that
    carry the claim's device (None: there are no other uplinks). Without others, the
    claim and its rows go at once (one indexed range DELETE). Else the claim is kept,
    acknowledged at ``now``, and only the rows every other carrier is past too are
    deleted (``delete_passed``). Returns (device, kind, rows deleted); ("", "sample", 0)
    when the claim is gone already."""
    others: Sequence[str] = ()
    if others_of is not None:
        row = conn.execute("SELECT device_id FROM claims WHERE uplink = ? AND msg_id = ?",
                           [uplink, msg_id]).fetchone()
        others = others_of(row[0]) if row is not None else ()
    if not others:
        claimed = remove(conn, uplink, msg_id)
        if claimed is None:
            return "", "sample", 0
        device_id, kind, first, last = claimed
        deleted = conn.execute("DELETE FROM outbox WHERE device_id = ? AND id BETWEEN ? AND ?",
                               [device_id, first, last]).rowcount
        return device_id, kind, deleted
    claimed = mark_acknowledged(conn, uplink, msg_id, now)
    if claimed is None:
        return "", "sample", 0
    device_id, kind, first, last = claimed
    deleted = delete_passed(conn, uplink, device_id, first, last, others)
    _merge_acknowledged(conn, uplink, device_id, msg_id)
    return device_id, kind, deleted


def mark_acknowledged(conn: sqlite3.Connection, uplink: str, msg_id: str,
                      now: float) -> tuple[str, str, int, int] | None:
    """Mark ``uplink``'s claim acknowledged (it is past those rows); its (device, kind,
    first_row, last_row), or None when there is no unacknowledged claim of that id."""
    return conn.execute(
        "UPDATE claims SET acked_at = ? WHERE uplink = ? AND msg_id = ? AND acked_at IS NULL "
        "RETURNING device_id, kind, first_row, last_row", [now, uplink, msg_id]).fetchone()


def acked_ranges(conn: sqlite3.Connection, uplink: str, device_id: str, first: int = 0,
                 last: int = 2**63 - 1) -> list[tuple[int, int]]:
    """``uplink``'s acknowledged ranges of ``device_id`` overlapping first..last, clipped."""
    return sorted((max(a, first), min(b, last)) for a, b in conn.execute(
        "SELECT first_row, last_row FROM claims WHERE device_id = ? AND uplink = ? "
        "AND acked_at IS NOT NULL AND first_row <= ? AND last_row >= ?",
        [device_id, uplink, last, first]))


def _intersect(left: list[tuple[int, int]], right: list[tuple[int, int]],
               ) -> list[tuple[int, int]]:
    """Intersection of two sorted lists of disjoint closed intervals."""
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(left) and j < len(right):
        low, high = max(left[i][0], right[j][0]), min(left[i][1], right[j][1])
        if low <= high:
            out.append((low, high))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return out


def delete_passed(conn: sqlite3.Connection, uplink: str, device_id: str, first: int,
                  last: int, others: Sequence[str]) -> int:
    """Delete the rows of ``device_id`` in first..last that ``uplink`` has just passed and
    every uplink of ``others`` has passed too (the intersection of their acknowledged
    ranges), and rows addressed to ``uplink`` alone; then the acknowledged claims of the
    device that no longer cover any row. Returns rows deleted."""
    passed = [(first, last)]
    for other in others:
        passed = _intersect(passed, acked_ranges(conn, other, device_id, first, last))
        if not passed:
            break
    deleted = conn.execute("DELETE FROM outbox WHERE device_id = ? AND id BETWEEN ? AND ? "
                           "AND uplink = ?", [device_id, first, last, uplink]).rowcount
    for low, high in passed:
        deleted += conn.execute("DELETE FROM outbox WHERE device_id = ? AND id BETWEEN ? AND ?",
                                [device_id, low, high]).rowcount
    if deleted:
        drop_empty_claims(conn, device_id, first, last)
    return deleted


def drop_empty_claims(conn: sqlite3.Connection, device_id: str, first: int = 0,
                      last: int = 2**63 - 1) -> int:
    """Acknowledged claims of ``device_id`` overlapping first..last whose rows are all gone
    (nothing left to hold an uplink back from)."""
    return conn.execute(
        "DELETE FROM claims WHERE device_id = ? AND acked_at IS NOT NULL AND first_row <= ? "
        "AND last_row >= ? AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.device_id = "
        "claims.device_id AND o.id BETWEEN claims.first_row AND claims.last_row)",
        [device_id, last, first]).rowcount


def _merge_acknowledged(conn: sqlite3.Connection, uplink: str, device_id: str,
                        msg_id: str) -> None:
    """Merge ``uplink``'s acknowledged claim ``msg_id`` with the acknowledged claims of the
    same device right before and after it, when no row ``uplink`` still has to send lies
    between (so one uplink's acknowledged ranges stay few while another is down)."""
    row = conn.execute("SELECT first_row, last_row FROM claims WHERE uplink = ? AND "
                       "msg_id = ?", [uplink, msg_id]).fetchone()
    if row is None:  # gone: its rows were all deleted
        return
    first, last = row
    for before in (True, False):
        neighbour = conn.execute(
            "SELECT msg_id, first_row, last_row FROM claims WHERE uplink = ? AND device_id = ? "
            "AND acked_at IS NOT NULL AND msg_id != ? AND "
            + ("last_row < ? ORDER BY last_row DESC" if before else
               "first_row > ? ORDER BY first_row") + " LIMIT 1",
            [uplink, device_id, msg_id, first if before else last]).fetchone()
        if neighbour is None:
            continue
        low, high = (neighbour[2], first) if before else (last, neighbour[1])
        between = conn.execute(
            "SELECT 1 FROM claims WHERE uplink = ? AND device_id = ? AND first_row > ? "
            "AND first_row < ? UNION ALL SELECT 1 FROM outbox WHERE device_id = ? AND id > ? "
            f"AND id < ? AND {_FOR_UPLINK} LIMIT 1",
            [uplink, device_id, low, high, device_id, low, high, uplink]).fetchone()
        if between is not None:
            continue
        conn.execute("DELETE FROM claims WHERE uplink = ? AND msg_id = ?", [uplink, neighbour[0]])
        first, last = min(first, neighbour[1]), max(last, neighbour[2])
        conn.execute("UPDATE claims SET first_row = ?, last_row = ? WHERE uplink = ? AND "
                     "msg_id = ?", [first, last, uplink, msg_id])


UNCLAIMED = ("NOT EXISTS (SELECT 1 FROM claims c WHERE c.device_id = outbox.device_id "
             "AND c.first_row <= outbox.id AND c.last_row >= outbox.id)")
"""SQL condition: the ``outbox`` row is claimed by no uplink, acknowledged or not
(merge_gap: a claimed gap's body is fixed, some uplink may have sent it)."""

NOT_IN_FLIGHT = ("NOT EXISTS (SELECT 1 FROM claims c WHERE c.device_id = outbox.device_id "
                 "AND c.first_row <= outbox.id AND c.last_row >= outbox.id "
                 "AND c.acked_at IS NULL)")
"""SQL condition: no uplink has the ``outbox`` row in a claim it has not acknowledged (so
it may be at that uplink's broker). Retention drops only such rows."""
