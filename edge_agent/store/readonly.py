"""Reading an outbox file without the agent, and without ever changing it.

For ``edge-agent status`` (when the agent is stopped) and ``edge-agent export`` (also
while it runs). The file is opened with SQLite's ``mode=ro`` and ``query_only``: no
statement can write to it, and in WAL mode a reader neither blocks the running agent's
writer nor is blocked by it. Each query below is one statement, so it reads one
consistent snapshot even while the agent appends and deletes. Reading a WAL database
needs its ``-wal`` and ``-shm`` files; when the agent is stopped they do not exist, the
reader creates them and hands them to the outbox's owner (``_hand_over``). While a long
export reads, the agent's WAL cannot be checkpointed past the export's snapshot: the
``-wal`` file grows meanwhile and is reused afterwards.

Plain ``sqlite3`` rather than sqlite-utils: these are a few SELECTs on a read-only
connection, and the schema's owner (schema.py) stays the only module that imports it.
What the file can tell is limited to what it keeps: undelivered rows, the per-device
sequence counter and the drop counter. Delivered samples are gone from it by design.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from edge_agent.payload import StoredEntry
from edge_agent.store.schema import SCHEMA_VERSION


class OutboxUnreadable(Exception):
    """The file is missing, not an outbox, of a newer format, or not readable by us."""


@dataclass(frozen=True)
class DeviceBacklog:
    """What the file holds for one device. Times are unix seconds."""

    device_id: str
    last_seq: int | None  # samples numbered so far (None: never stored one)
    samples: int  # undelivered
    oldest_at: float | None
    newest_at: float | None
    newest_body: dict | None  # the newest undelivered sample, as stored (payload v1)
    gap_events: int
    gap_samples: int  # samples those gap events announce as lost


@dataclass(frozen=True)
class FileBacklog:
    """The whole file: per device, and the persistent drop counter."""

    path: Path
    devices: tuple[DeviceBacklog, ...]
    dropped_total: int
    claimed_rows: int  # in a message at the last stop: sent again first at start
    corrupt_lost_total: int = 0  # samples lost with corrupt files set aside before it

    @property
    def samples(self) -> int:
        return sum(device.samples for device in self.devices)

    @property
    def gap_events(self) -> int:
        return sum(device.gap_events for device in self.devices)

    @property
    def oldest_at(self) -> float | None:
        return min((d.oldest_at for d in self.devices if d.oldest_at is not None),
                   default=None)


@dataclass(frozen=True)
class Row:
    """One undelivered outbox row, for export."""

    kind: str  # sample | gap
    device_id: str
    acquired_at: float  # a gap event's first_at
    entry: StoredEntry


def open_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write to ``path``; raises OutboxUnreadable with a message
    saying what is wrong."""
    if not path.is_file():
        raise OutboxUnreadable(f"no outbox file at {path}")
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    companions = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    missing = [companion for companion in companions if not companion.exists()]
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA busy_timeout = 5000")
        version = _schema_version(conn)
    except sqlite3.Error as err:
        raise OutboxUnreadable(f"cannot read {path}: {err} (the outbox belongs to the "
                               "service's user: run this as that user or as root)") from err
    finally:
        _hand_over(path, [companion for companion in missing if companion.exists()])
    if version is None:
        conn.close()
        raise OutboxUnreadable(f"{path} is not an edge-agent outbox")
    if version > SCHEMA_VERSION:
        conn.close()
        raise OutboxUnreadable(f"{path} was written by a newer edge-agent (schema "
                               f"{version}, this one reads up to {SCHEMA_VERSION})")
    return conn


def _hand_over(path: Path, created: list[Path]) -> None:
    """Give the WAL companion files that reading created (a stopped agent leaves none) the
    outbox's owner and mode. Created by root (``sudo edge-agent status``) and left so,
    they would keep the service's own user from opening its outbox at the next start."""
    try:
        owner = path.stat()
        for companion in created:
            if companion.stat().st_uid != owner.st_uid or companion.stat().st_gid != owner.st_gid:
                os.chown(companion, owner.st_uid, owner.st_gid)
            os.chmod(companion, owner.st_mode & 0o666)
    except OSError:
        pass  # not root and not the owner: then they are ours, as the directory allowed


def _schema_version(conn: sqlite3.Connection) -> int | None:
    tables = {name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not {"meta", "outbox", "device_seq"} <= tables:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else None


def read_backlog(conn: sqlite3.Connection, path: Path) -> FileBacklog:
    """Per device: undelivered samples, their time span, the newest one, gap events."""
    spans: dict[str, tuple[int, float, float, int]] = {}
    for device_id, count, oldest, newest, newest_id in conn.execute(
            "SELECT device_id, COUNT(*), MIN(acquired_at), MAX(acquired_at), MAX(id) "
            "FROM outbox WHERE kind = 'sample' GROUP BY device_id"):
        spans[device_id] = (count, oldest, newest, newest_id)
    gaps: dict[str, list[int]] = {}
    for device_id, body in conn.execute("SELECT device_id, body FROM outbox WHERE kind = 'gap'"):
        gaps.setdefault(device_id, []).append(int(json.loads(body)["count"]))
    last_seqs = dict(conn.execute("SELECT device_id, last_seq FROM device_seq"))
    devices = []
    for device_id in sorted(set(spans) | set(gaps) | set(last_seqs)):
        count, oldest, newest, newest_id = spans.get(device_id, (0, None, None, None))
        body = None
        if newest_id is not None:
            row = conn.execute("SELECT body FROM outbox WHERE id = ?", [newest_id]).fetchone()
            body = json.loads(row[0]) if row else None
        device_gaps = gaps.get(device_id, [])
        devices.append(DeviceBacklog(device_id, last_seqs.get(device_id), count, oldest,
                                     newest, body, len(device_gaps), sum(device_gaps)))
    meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN "
                             "('dropped_total', 'corrupt_lost_total')"))
    claimed = conn.execute(_claimed_rows_sql(conn)).fetchone()
    return FileBacklog(path, tuple(devices), int(meta.get("dropped_total", 0)), claimed[0],
                       int(meta.get("corrupt_lost_total", 0)))


# Rows inside a claim's range (schema v3, claims.py), counted once however many uplinks
# claimed them, and from v4 only claims not yet acknowledged (an acknowledged claim's rows
# wait for another uplink; they are not sent again by the one that has them). A file the
# agent has not yet migrated from v2 still marks them with a message id per row.
_CLAIMED_ROWS_V3 = ("SELECT COUNT(*) FROM outbox o WHERE EXISTS (SELECT 1 FROM claims c "
                    "WHERE c.device_id = o.device_id AND o.id BETWEEN c.first_row AND "
                    "c.last_row{})")
_CLAIMED_ROWS_V2 = "SELECT COUNT(*) FROM outbox WHERE msg_id IS NOT NULL"


def _claimed_rows_sql(conn: sqlite3.Connection) -> str:
    if not _has_claims(conn):
        return _CLAIMED_ROWS_V2
    columns = {row[1] for row in conn.execute("PRAGMA table_info(claims)")}
    return _CLAIMED_ROWS_V3.format(" AND c.acked_at IS NULL" if "acked_at" in columns else "")


def _has_claims(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'claims'"
                        ).fetchone() is not None


def iter_rows(conn: sqlite3.Connection, start_at: float | None, end_at: float | None,
              devices: Collection[str] = ()) -> Iterator[Row]:
    """Undelivered rows in outbox order (per device: acquisition order). Samples acquired
    in [start_at, end_at); gap events whose span [first_at, last_at] overlaps it. Alarm
    events are not rows of an export (they go out on their own topic; the export's
    formats are those of samples). One statement: one consistent snapshot, however long
    the caller takes."""
    where: list[str] = ["kind != 'alarm'"]
    params: list[object] = []
    if start_at is not None:
        where.append("(kind = 'gap' OR acquired_at >= ?)")
        params.append(start_at)
    if end_at is not None:
        where.append("acquired_at < ?")
        params.append(end_at)
    if devices:
        where.append(f"device_id IN ({','.join('?' * len(devices))})")
        params.extend(devices)
    cursor = conn.execute(
        "SELECT id, kind, device_id, seq, entry_id, body, acquired_at FROM outbox "
        f"WHERE {' AND '.join(where)} ORDER BY id", params)
    for row_id, kind, device_id, seq, entry_id, body, acquired_at in cursor:
        if kind == "gap" and start_at is not None and _gap_ends_before(body, start_at):
            continue
        yield Row(kind, device_id, acquired_at,
                  StoredEntry(row_id, kind, device_id, seq, entry_id, body))


def _gap_ends_before(body: str, start_at: float) -> bool:
    last_at = datetime.fromisoformat(json.loads(body)["last_at"]).timestamp()
    return last_at < start_at
