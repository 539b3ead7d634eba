"""Retention: what the outbox drops, on purpose and counted, when a limit is reached.

Runs inside the writer's transaction (see outbox.py for the guarantees). Only samples
that no uplink has in flight (claimed and not acknowledged, claims.py) are dropped,
oldest first: a row in flight may already be at that uplink's broker, and counting it as
dropped would be a lie. Every drop is merged into one unsent gap row per device, which
the forwarder publishes like any sample. With several uplinks, a dropped sample is
announced only to the uplinks that had not acknowledged it (store/uplinks.py): one gap
row for all of them when none had, else one gap row addressed to each (``uplink``).

One transaction deletes at most ``MAX_DROPS_PER_TRANSACTION`` samples: a large excess
(``max_rows`` lowered by a reload, ``max_age_s`` after a long power-off) is removed over
several transactions, so none runs long enough to break the writer's watchdog promise
on slow flash. ``Enforcer.behind`` tells the writer to run the next one at once; each
continues the same gap rows and counter, so counts and gap events stay exact.

Episodes are logged once: a WARNING when dropping starts, an INFO when the outbox is back
below 90 % of every limit (hysteresis, so a full outbox does not log on every poll).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from edge_agent.config.schema import Retention
from edge_agent.model import iso_utc
from edge_agent.payload import encode_gap_body
from edge_agent.store import claims
from edge_agent.store.claims import NOT_IN_FLIGHT, UNCLAIMED

log = logging.getLogger("edge_agent.store.outbox")

_LOW_WATER = 0.9
_MAX_BYTE_ROUNDS = 200
_AGE_CHUNK = 1000
MAX_DROPS_PER_TRANSACTION = 10_000


@dataclass
class PendingGap:
    """Samples lost before they could be stored (append failed), per device."""

    first_at: float
    last_at: float
    count: int

    def add(self, at: float) -> None:
        self.first_at = min(self.first_at, at)
        self.last_at = max(self.last_at, at)
        self.count += 1


def bytes_in_use(conn: sqlite3.Connection) -> int:
    """Database pages holding data (file size minus free pages), in bytes."""
    page_count = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((page_count - free) * page_size)


def over_bytes(conn: sqlite3.Connection, max_bytes: int) -> bool:
    """Whether the data pages (``bytes_in_use``) exceed ``max_bytes``. When the whole
    file fits, the free pages need not be counted: one PRAGMA instead of three, and this
    runs in every write transaction that added rows (issue 11)."""
    page_count, page_size = conn.execute(
        "SELECT page_count, page_size FROM pragma_page_count(), pragma_page_size()"
    ).fetchone()
    if page_count * page_size <= max_bytes:
        return False
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return (page_count - free) * page_size > max_bytes


def _iso(at: float) -> str:
    return iso_utc(datetime.fromtimestamp(at, UTC))


def merge_gap(
    conn: sqlite3.Connection, device_id: str, first_at: float, last_at: float, count: int,
    first_seq: int | None, last_seq: int | None, reason: str, uplink: str | None = None,
) -> bool:
    """Extend the device's latest unsent gap row for the same addressee (``uplink``; None:
    every uplink carrying the device) if this run of drops continues its sequence range
    (so a range never covers a delivered sample), else start a new one. Samples lost
    before storage have no sequence numbers; they merge with each other. True when a new
    gap row was inserted (the caller counts rows, see ``Enforcer``)."""
    row = conn.execute(
        f"SELECT id, body FROM outbox WHERE kind = 'gap' AND device_id = ? AND uplink IS ? "
        f"AND {UNCLAIMED} ORDER BY id DESC LIMIT 1",
        [device_id, uplink],
    ).fetchone()
    old = json.loads(row[1]) if row is not None else None
    if old is not None:
        continues = (old["last_seq"] is not None and first_seq == old["last_seq"] + 1) \
            or (first_seq is None and old["first_seq"] is None)
        if not continues:
            old = None
    if old is None:
        body = encode_gap_body(uuid.uuid4().hex, _iso(first_at), _iso(last_at), count,
                               first_seq, last_seq, [reason])
        conn.execute(
            "INSERT INTO outbox (kind, device_id, seq, entry_id, acquired_at, body, uplink) "
            "VALUES ('gap', ?, NULL, ?, ?, ?, ?)",
            [device_id, json.loads(body)["id"], first_at, body, uplink],
        )
        return True
    seqs_first = [s for s in (old["first_seq"], first_seq) if s is not None]
    seqs_last = [s for s in (old["last_seq"], last_seq) if s is not None]
    body = encode_gap_body(
        old["id"], min(old["first_at"], _iso(first_at)), max(old["last_at"], _iso(last_at)),
        old["count"] + count, min(seqs_first, default=None), max(seqs_last, default=None),
        [*old["reasons"], reason],
    )
    conn.execute("UPDATE outbox SET body = ? WHERE id = ?", [body, row[0]])
    return False


def addressees(conn: sqlite3.Connection, rows: list[tuple],
               carriers: Callable[[str], tuple[str, ...]],
               ) -> list[tuple[str | None, list[tuple]]]:
    """Dropped rows (id, device, at, seq) grouped by the gap row that announces them: None
    (every uplink carrying the device) when no carrier had acknowledged them, else one
    group per uplink that had not. Acknowledged claims left with no rows are removed."""
    per_device: dict[str, list[tuple]] = {}
    for row in rows:
        per_device.setdefault(row[1], []).append(row)
    groups: dict[str | None, list[tuple]] = {}
    for device_id, dropped in per_device.items():
        names = carriers(device_id)
        low, high = min(r[0] for r in dropped), max(r[0] for r in dropped)
        acked = {name: claims.acked_ranges(conn, name, device_id, low, high)
                 for name in names} if len(names) > 1 else {}
        if not any(acked.values()):
            groups.setdefault(None, []).extend(dropped)
            continue
        for row in dropped:
            missing = [name for name in names
                       if not any(a <= row[0] <= b for a, b in acked[name])]
            for name in missing if len(missing) < len(names) else (None,):
                groups.setdefault(name, []).append(row)
        claims.drop_empty_claims(conn, device_id, low, high)
    return list(groups.items())


def _contiguous_runs(rows: list[tuple]) -> list[tuple[str, list[tuple]]]:
    """Dropped rows (id, device, at, seq) split per device into runs of consecutive seq:
    a claimed sample between two dropped ones must stay outside every gap's range."""
    per_device: dict[str, list[tuple]] = {}
    for row in rows:
        per_device.setdefault(row[1], []).append(row)
    runs: list[tuple[str, list[tuple]]] = []
    for device_id, dropped in per_device.items():
        dropped.sort(key=lambda row: row[3])
        current = [dropped[0]]
        for row in dropped[1:]:
            if row[3] == current[-1][3] + 1:
                current.append(row)
            else:
                runs.append((device_id, current))
                current = [row]
        runs.append((device_id, current))
    return runs


class Enforcer:
    """Keeps the outbox inside its retention limits; state lives in the writer thread.

    It also keeps the number of sample and gap rows, counted once at start-up and then
    kept up to date, so that depth can be read at every metrics scrape without a scan.
    """

    def __init__(self, limits: Retention, clock: Callable[[], float]) -> None:
        self.limits = limits
        self._clock = clock
        self._samples = 0
        self._gaps = 0
        #: Sample rows per device (per-uplink depth without a scan; store/uplinks.py).
        self.per_device: dict[str, int] = {}
        self._saved_per_device: dict[str, int] = {}
        #: The uplinks that carry a device (store/uplinks.py), for addressing gap events.
        self.carriers: Callable[[str], tuple[str, ...]] = lambda _device: ()
        self._dropping = False
        self._episode_drops = 0
        self._next_age_check = 0.0
        self._grew = True  # rows were added since the last check (see ``enforce``)
        self._saved = (0, 0, True)  # counts at the start of the write transaction
        self._checked_limits: Retention | None = None
        self._budget = MAX_DROPS_PER_TRANSACTION  # drops left in this transaction
        #: The last ``enforce`` stopped at the per-transaction cap with more to drop.
        self.behind = False

    def load(self, conn: sqlite3.Connection) -> None:
        """Count rows once at start-up; afterwards the counts are kept incrementally."""
        counts = dict(conn.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind"))
        self._samples, self._gaps = counts.get("sample", 0), counts.get("gap", 0)
        self.per_device = dict(conn.execute(
            "SELECT device_id, COUNT(*) FROM outbox WHERE kind = 'sample' GROUP BY device_id"))
        self._grew = True

    reload_after_rollback = load

    def begin(self) -> None:
        """A write transaction begins: remember the counts it may have to give back."""
        self._saved = (self._samples, self._gaps, self._grew)
        self._saved_per_device = dict(self.per_device)

    def rollback(self) -> None:
        """The transaction rolled back: its operations' counts are void."""
        self._samples, self._gaps, self._grew = self._saved
        self.per_device = self._saved_per_device

    @property
    def samples(self) -> int:
        """Sample rows in the outbox, as of the writer's current transaction."""
        return self._samples

    @property
    def gaps(self) -> int:
        """Gap rows in the outbox, as of the writer's current transaction."""
        return self._gaps

    def note_appended(self, count: int, device_id: str) -> None:
        self._samples += count
        self.per_device[device_id] = self.per_device.get(device_id, 0) + count
        self._grew = True

    def note_gap_added(self) -> None:
        self._gaps += 1
        self._grew = True

    def note_deleted(self, count: int, gaps: int = 0, device_id: str | None = None) -> None:
        self._samples -= count
        self._gaps -= gaps
        if count and device_id is not None:
            self.per_device[device_id] = self.per_device.get(device_id, 0) - count

    def _due(self) -> bool:
        """Whether this transaction can have crossed a limit. Only added rows (and new
        limits) can cross the row and byte limits; a transaction that only claimed or
        deleted skips their checks (issue 11: three PRAGMAs per acknowledgement batch).
        The age limit is checked once a second regardless; an episode being dropped is
        checked every time, for its end."""
        limits = self.limits
        return (self._grew or self.behind or self._dropping
                or limits is not self._checked_limits
                or (limits.max_age_s is not None
                    and time.monotonic() >= self._next_age_check))

    def enforce(self, conn: sqlite3.Connection) -> None:
        """Drop what the limits require, inside the caller's transaction, at most
        ``MAX_DROPS_PER_TRANSACTION`` samples; sets ``behind`` when more is due."""
        if not self._due():
            return
        limits = self.limits
        self._grew, self._checked_limits = False, limits
        self._budget = MAX_DROPS_PER_TRANSACTION
        age_behind, self.behind = self.behind, False
        if limits.max_rows is not None and self._samples > limits.max_rows:
            self._drop_oldest(conn, self._samples - limits.max_rows, "max_rows")
        if limits.max_age_s is not None and (age_behind or time.monotonic()
                                             >= self._next_age_check):
            self._next_age_check = time.monotonic() + 1.0  # monotonic: immune to clock steps
            self._drop_expired(conn, self._clock() - limits.max_age_s)
        if limits.max_bytes is not None:
            self._drop_for_bytes(conn, limits.max_bytes)
        if self._dropping and not self.behind and self._below_low_water(conn):
            log.info("outbox back under its retention limits; %d samples were dropped in "
                     "this episode and announced as gap events", self._episode_drops)
            self._dropping = False
            self._episode_drops = 0

    def _drop_for_bytes(self, conn: sqlite3.Connection, max_bytes: int) -> None:
        for _ in range(_MAX_BYTE_ROUNDS):
            if self.behind or not over_bytes(conn, max_bytes):
                return
            chunk = max(10, self._samples // 100)
            if self._drop_oldest(conn, chunk, "max_bytes") == 0:
                return

    def _drop_expired(self, conn: sqlite3.Connection, cutoff: float) -> None:
        while True:
            if self._budget == 0:
                self.behind = True  # maybe more expired: the next transaction looks
                return
            limit = min(_AGE_CHUNK, self._budget)
            rows = conn.execute(
                "SELECT id, device_id, acquired_at, seq FROM outbox WHERE kind = 'sample' "
                f"AND {NOT_IN_FLIGHT} ORDER BY id LIMIT ?",
                [limit],
            ).fetchall()
            expired = []
            for row in rows:
                if row[2] >= cutoff:
                    break
                expired.append(row)
            if expired:
                self._drop_rows(conn, expired, "max_age")
            if len(expired) < limit:
                return

    def _drop_oldest(self, conn: sqlite3.Connection, count: int, reason: str) -> int:
        """Drop up to ``count`` samples, within this transaction's budget; sets
        ``behind`` when the budget, not the droppable rows, stopped it short."""
        take = min(count, self._budget)
        rows = conn.execute(
            "SELECT id, device_id, acquired_at, seq FROM outbox WHERE kind = 'sample' "
            f"AND {NOT_IN_FLIGHT} ORDER BY id LIMIT ?",
            [take],
        ).fetchall()
        self._drop_rows(conn, rows, reason)
        if take < count and len(rows) == take:
            self.behind = True
        return len(rows)

    def _drop_rows(self, conn: sqlite3.Connection, rows: list[tuple], reason: str) -> None:
        if not rows:
            return
        conn.executemany("DELETE FROM outbox WHERE id = ?", [(row[0],) for row in rows])
        for target, addressed in addressees(conn, rows, self.carriers):
            for device_id, run in _contiguous_runs(addressed):
                times = [row[2] for row in run]
                if merge_gap(conn, device_id, min(times), max(times), len(run),
                             run[0][3], run[-1][3], reason, target):
                    self._gaps += 1
        for row in rows:
            self.per_device[row[1]] = self.per_device.get(row[1], 0) - 1
        conn.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key = 'dropped_total'",
            [len(rows)],
        )
        self._samples -= len(rows)
        self._budget -= len(rows)
        self._episode_drops += len(rows)
        if not self._dropping:
            self._dropping = True
            log.warning("outbox retention limit reached (%s, limits: %s): dropping the oldest "
                        "undelivered samples; every drop is counted and published as a gap "
                        "event", reason, self.limits)

    def _below_low_water(self, conn: sqlite3.Connection) -> bool:
        limits = self.limits
        if limits.max_rows is not None and self._samples > _LOW_WATER * limits.max_rows:
            return False
        if limits.max_bytes is not None and bytes_in_use(conn) > _LOW_WATER * limits.max_bytes:
            return False
        if limits.max_age_s is not None:
            oldest = conn.execute(
                "SELECT acquired_at FROM outbox WHERE kind = 'sample' ORDER BY id LIMIT 1"
            ).fetchone()
            if oldest and self._clock() - oldest[0] > _LOW_WATER * limits.max_age_s:
                return False
        return True
