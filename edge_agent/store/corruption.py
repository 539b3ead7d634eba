"""A corrupt outbox file: recognised, set aside (renamed, kept), surveyed, and the samples
it still held announced as lost in the new file that replaces it.

Corrupt means: SQLite says so (``database disk image is malformed``, SQLITE_CORRUPT, or
``file is not a database``, SQLITE_NOTADB) when the file is opened or at any later
statement, or the file is an outbox missing its tables (``NotAnOutbox``). Only a file
known to be an outbox is ever set aside: the outbox refuses to open any other
(pathcheck.py decides, before SQLite touches the file), so a station file or another
program's database named by mistake in ``store.path`` is never renamed. A file written
by a newer release is *not* corrupt either: it is refused (``SchemaError``) and left
alone.

The file and its ``-wal``/``-shm`` companions are renamed to ``<name>.corrupt-<UTC time>``
(companions first: a crash half-way must never leave a stale WAL beside a new file) and
kept for a person; ``sqlite3 FILE .recover`` may get more out of it. The samples in it are
not re-sent: SQLite keeps no checksums, so a damaged page can hold a wrong value that
still looks valid, and the platform must not receive that as a measurement.

What can still be read (read-only) goes into the new file's first transaction:

* each device's last sequence number and driver state, so numbering continues and a GC
  does not publish its last analysis again; the lost samples are a hole in ``seq``;
* the highest row id (the file's, or the highest this process saw, whichever is larger):
  row ids continue above it, so a forwarder's backlog boundary taken from the old file
  still separates old rows from new ones (ids never go backwards, schema.py);
* one gap event (reason ``store_error``) per run of consecutive lost samples, with their
  sequence and time range and count. Every sample row still in the file counts: none was
  acknowledged, though one in flight at that moment may have reached the broker (so such a
  gap may cover a sample the platform also has; it never misses one that it lacks);
* gap events not yet delivered, as they were (same id), queued to be sent first;
* ``meta.dropped_total``, and ``meta.corrupt_lost_total`` increased by the announced loss.

What cannot be read is lost without a count; the log line says so.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.store import retention
from edge_agent.store.schema import DEFAULT_UPLINK, NotAnOutbox

log = logging.getLogger("edge_agent.store.outbox")

MAX_SET_ASIDE = 3  # per run: more means the storage itself is failing
_CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_COMPANIONS = ("-wal", "-shm", "-journal")


def is_corrupt(err: BaseException) -> bool:
    """True when ``err`` says the file is damaged or not an outbox (see the docstring)."""
    if isinstance(err, NotAnOutbox):
        return True
    code = getattr(err, "sqlite_errorcode", None)
    return isinstance(err, sqlite3.DatabaseError) and code is not None \
        and code & 0xFF in _CORRUPT_CODES


class Replacements:
    """The corrupt files of one outbox path set aside in this run (at most MAX_SET_ASIDE)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: list[Path] = []
        self.attempts = 0

    def may_replace(self, err: BaseException) -> bool:
        return is_corrupt(err) and self.attempts < MAX_SET_ASIDE

    def start_over(self, err: BaseException, open_new: Callable[[], sqlite3.Connection],
                   known_seqs: Mapping[str, int], known_row_id: int,
                   now: float) -> sqlite3.Connection:
        """Set the file aside, open a new one with ``open_new``, carry over what can be
        read, log the one ERROR line. ``known_seqs`` and ``known_row_id``: the last
        sequence numbers and the highest row id this process saw, for when the file's
        own are unreadable. Raises (OSError, sqlite3.Error) if it cannot."""
        self.attempts += 1
        aside = set_aside(self.path, now)
        self.files.append(aside)
        found = survey(aside)
        conn = open_new()
        try:
            seeded = carry_over(conn, found, known_seqs, known_row_id)
        except BaseException:
            conn.close()
            raise
        log.error("%s", report(self.path, aside, err, found, seeded))
        if self.attempts == MAX_SET_ASIDE:
            log.critical("outbox %s: %d corrupt files set aside since start; the storage is "
                         "probably failing. No more are set aside: writes fail until a "
                         "person replaces the disk and restarts the agent", self.path,
                         MAX_SET_ASIDE)
        return conn


def set_aside(path: Path, now: float) -> Path:
    """Rename ``path`` and its companions to ``<name>.corrupt-<UTC time>[-n]``; return the
    new path of the database file. Nothing is deleted."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    number = 1
    while any(_with(aside, suffix).exists() for suffix in ("", *_COMPANIONS)):
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{number}")
        number += 1
    for suffix in _COMPANIONS:
        if _with(path, suffix).exists():
            _with(path, suffix).rename(_with(aside, suffix))
    if path.exists():
        path.rename(aside)
    return aside


def _with(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


@dataclass
class LostRun:
    """Consecutive samples of one device found in a corrupt file."""

    device_id: str
    first_seq: int
    last_seq: int
    first_at: float
    last_at: float
    count: int = 1


@dataclass
class Survey:
    """What could be read from a file set aside as corrupt; ``problems`` says what not."""

    last_seqs: dict[str, int] = field(default_factory=dict)
    driver_states: dict[str, str] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    runs: list[LostRun] = field(default_factory=list)
    gaps: list[tuple[str, float, str]] = field(default_factory=list)  # device, at, body
    last_row_id: int = 0  # the highest outbox row id the file had handed out
    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Samples found in the file: none of them was acknowledged by the broker."""
        return sum(run.count for run in self.runs)

    @property
    def devices(self) -> int:
        return len({run.device_id for run in self.runs})


def survey(path: Path) -> Survey:
    """Read what can be read from the set-aside file ``path`` without changing it."""
    found = Survey()
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        # Lets SQLite read a file shorter than its header says (truncated) instead of
        # refusing it outright; harmless here, the connection is read-only.
        conn.execute("PRAGMA writable_schema=ON")
    except sqlite3.Error as err:
        found.problems.append(str(err))
        return found
    try:
        for step in (_read_meta, _read_seqs, _read_last_row_id, _read_rows):
            try:
                step(conn, found)
            except sqlite3.Error as err:
                found.problems.append(str(err))
    finally:
        conn.close()
    return found


def _read_meta(conn: sqlite3.Connection, found: Survey) -> None:
    found.meta.update((str(k), str(v)) for k, v in conn.execute("SELECT key, value FROM meta"))


def last_row_id(conn: sqlite3.Connection) -> int:
    """The highest outbox row id the file on ``conn`` has handed out (AUTOINCREMENT keeps
    it in sqlite_sequence, also after that row was deleted); 0 for none."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    return int(row[0]) if row and isinstance(row[0], int) else 0


def _read_last_row_id(conn: sqlite3.Connection, found: Survey) -> None:
    """sqlite_sequence and the table's largest id, each where readable."""
    problem = None
    for read in (last_row_id, lambda c: c.execute("SELECT MAX(id) FROM outbox").fetchone()[0]):
        try:
            value = read(conn)
        except sqlite3.Error as err:
            problem = err
            continue
        if isinstance(value, int):
            found.last_row_id = max(found.last_row_id, value)
    if problem is not None:
        raise problem


def _read_seqs(conn: sqlite3.Connection, found: Survey) -> None:
    for device_id, last_seq, state in conn.execute(
            "SELECT device_id, last_seq, driver_state FROM device_seq"):
        if isinstance(device_id, str) and isinstance(last_seq, int):
            found.last_seqs[device_id] = last_seq
            if isinstance(state, str):
                found.driver_states[device_id] = state


def _read_rows(conn: sqlite3.Connection, found: Survey) -> None:
    """Stream the rows in commit order (per device that is seq order), keeping one open
    run per device, so memory grows with the number of runs, not of rows."""
    open_runs: dict[str, LostRun] = {}
    try:
        for kind, device_id, seq, at, body in conn.execute(
                "SELECT kind, device_id, seq, acquired_at, "
                "CASE kind WHEN 'gap' THEN body END FROM outbox ORDER BY id"):
            if not isinstance(device_id, str) or not isinstance(at, int | float):
                found.problems.append("a row with unreadable fields")
            elif kind == "gap":
                _keep_gap(found, device_id, float(at), body)
            elif kind == "sample" and isinstance(seq, int):
                run = open_runs.get(device_id)
                if run is not None and seq == run.last_seq + 1:
                    run.last_seq, run.last_at, run.count = seq, max(run.last_at, at), \
                        run.count + 1
                else:
                    if run is not None:
                        found.runs.append(run)
                    open_runs[device_id] = LostRun(device_id, seq, seq, at, at)
            else:
                found.problems.append("a row with unreadable fields")
    finally:
        found.runs.extend(open_runs.values())


def _keep_gap(found: Survey, device_id: str, at: float, body: object) -> None:
    try:
        entry = json.loads(body) if isinstance(body, str) else None
    except ValueError:
        entry = None
    if isinstance(entry, dict) and isinstance(entry.get("id"), str):
        found.gaps.append((device_id, at, body))  # type: ignore[arg-type]
    else:
        found.problems.append("an unreadable gap event")


def carry_over(conn: sqlite3.Connection, found: Survey,
               known_seqs: Mapping[str, int], known_row_id: int = 0) -> dict[str, int]:
    """Write into the new outbox (on ``conn``) what ``found`` says, in one transaction
    (see the module docstring). ``known_seqs`` and ``known_row_id``: last sequence
    numbers this process committed and the highest row id it saw, for when the file's own
    are unreadable. Returns the seeded last sequence numbers per device."""
    seqs = dict(found.last_seqs)
    for device_id, seq in [*known_seqs.items(),
                           *((run.device_id, run.last_seq) for run in found.runs)]:
        seqs[device_id] = max(seq, seqs.get(device_id, 0))
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Row ids continue above the old file's: a forwarder's backlog boundary (a row
        # id taken from the old file) must not make every new sample look old.
        conn.execute("DELETE FROM sqlite_sequence WHERE name = 'outbox'")
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)",
                     [max(found.last_row_id, known_row_id)])
        conn.executemany(
            "INSERT INTO device_seq (device_id, last_seq, driver_state) VALUES (?, ?, ?)",
            [(d, seq, found.driver_states.get(d)) for d, seq in seqs.items()])
        for run in found.runs:
            retention.merge_gap(conn, run.device_id, run.first_at, run.last_at, run.count,
                                run.first_seq, run.last_seq, "store_error")
        # Carried gap events may have been delivered already, so their bodies must never
        # change: a message id of their own keeps merge_gap away and sends them first.
        for d, at, body in found.gaps:
            row_id = conn.execute(
                "INSERT INTO outbox (kind, device_id, seq, entry_id, acquired_at, body) "
                "VALUES ('gap', ?, NULL, ?, ?, ?)", [d, json.loads(body)["id"], at, body]
            ).lastrowid
            conn.execute("INSERT INTO claims (uplink, msg_id, device_id, kind, historical, "
                         "first_row, last_row) VALUES (?, ?, ?, 'gap', 1, ?, ?)",
                         [DEFAULT_UPLINK, uuid.uuid4().hex, d, row_id, row_id])
        conn.execute("UPDATE meta SET value = ? WHERE key = 'dropped_total'",
                     [str(_count(found.meta.get("dropped_total")))])
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('corrupt_lost_total', ?)",
                     [str(_count(found.meta.get("corrupt_lost_total")) + found.lost)])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return seqs


def _count(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0


def report(path: Path, aside: Path, err: BaseException, found: Survey,
           seeded: Mapping[str, int]) -> str:
    """The one ERROR line that announces a set-aside file and what was lost with it."""
    head = (f"outbox {path} is corrupt ({err}); set aside as {aside} (kept, for recovery "
            "by a person) and a new outbox started, polling goes on")
    if not found.problems:
        if not found.lost:
            return f"{head}; it held no undelivered samples"
        return (f"{head}; {found.lost} undelivered samples of {found.devices} device(s) in "
                "it are lost and announced as gap events (reason store_error)")
    what = f"it could not be read completely ({found.problems[0]})"
    if found.lost:
        what += (f": at least {found.lost} undelivered samples are lost (those read are "
                 "announced as gap events), the exact number is unknown")
    else:
        what += ": the number of undelivered samples lost is unknown"
    if not seeded:
        what += "; sequence numbers start again at 1"
    return f"{head}; {what}"
