"""Outbox schema creation and migration.

A new file gets the current schema from plain SQL (``_CURRENT_DDL``), in one transaction.
sqlite-utils (with click, pluggy and dateutil: 3.5 MiB held for the life of the process,
issue 11) is imported only to migrate a file of an older release; opening a current
outbox, which every start of ``edge-agent run`` does, reads the version with plain SQL.
tests/test_schema_fresh.py holds ``_CURRENT_DDL`` equal to what the migrations build.

The schema version lives in ``meta.schema_version``. A release that changes the schema adds
a step to ``_MIGRATIONS``; opening an older file runs the missing steps in one transaction.
A file newer than this release is refused rather than misread, and so is another
program's database (``ForeignDatabase``: never renamed or changed, it is not ours); an
outbox missing its tables raises ``NotAnOutbox`` (damage: set aside as corrupt). Every
outbox carries ``APPLICATION_ID`` in its SQLite header, so that it can be told
from another program's file even when its tables cannot be read (``stamp_application_id``).
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite_utils

SCHEMA_VERSION = 7
APPLICATION_ID = 0x45414F42  # "EAOB": Edge-Agent OutBox, in the SQLite header (pathcheck.py)
DEFAULT_UPLINK = "default"  # the uplink of the ``mqtt:`` section (claims.py)
_TABLES = ("meta", "device_seq", "outbox", "claims", "alarm_state", "hj212_fold",
           "hj212_open", "hj212_stats")

log = logging.getLogger("edge_agent.store.outbox")


class SchemaError(Exception):
    """The outbox file was written by a newer release, or is not an outbox at all."""


class NotAnOutbox(SchemaError):
    """The file is an outbox missing its tables: treated as corrupt, set aside
    (corruption.py)."""


class ForeignDatabase(SchemaError):
    """The file is a healthy SQLite database with tables but no edge-agent ``meta``:
    another program's. Refused and left alone: renaming it would break that program."""


def _execute_script(execute: Callable[[str], object], ddl: str) -> None:
    """Run each ``;``-separated statement of ``ddl`` with ``execute`` (a sqlite3
    connection's or a sqlite-utils database's): ``executescript`` would COMMIT first, and
    every step must stay inside ensure_schema's one transaction."""
    for statement in ddl.split(";"):
        if statement.strip():
            execute(statement)


# No BEGIN/COMMIT inside: ensure_schema wraps all steps in one transaction.
_V1_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS device_seq (
    device_id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
);
-- AUTOINCREMENT: ids never go backwards after deletes, so "id <= boundary" means
-- "accepted before the boundary was taken" (the forwarder's backlog rule relies on it).
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('sample', 'gap')),
    device_id TEXT NOT NULL,
    seq INTEGER,
    entry_id TEXT NOT NULL,
    acquired_at REAL NOT NULL,
    body TEXT NOT NULL,
    msg_id TEXT,
    historical INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_device ON outbox (device_id, id);
CREATE INDEX IF NOT EXISTS outbox_msg ON outbox (msg_id) WHERE msg_id IS NOT NULL;
"""


def _migrate_to_v1(db: sqlite_utils.Database) -> None:
    _execute_script(db.execute, _V1_DDL)
    db.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('outbox_uuid', ?), ('dropped_total', '0')",
        [uuid.uuid4().hex],
    )


def _migrate_to_v2(db: sqlite_utils.Database) -> None:
    """v2: a driver's state, committed with its device's samples (a GC's last published
    analysis, so it is published exactly once across restarts)."""
    db.execute("ALTER TABLE device_seq ADD COLUMN driver_state TEXT")


# A claim is one message of one uplink: the rows of ``device_id`` with ids from
# ``first_row`` to ``last_row`` (claims.py). The claims of all uplinks are few (each
# uplink's in-flight window), so "is this row claimed" is a probe of ``claims_rows``.
_V3_DDL = """
CREATE TABLE IF NOT EXISTS claims (
    uplink TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('sample', 'gap')),
    historical INTEGER NOT NULL,
    first_row INTEGER NOT NULL,
    last_row INTEGER NOT NULL,
    PRIMARY KEY (uplink, msg_id)
);
CREATE INDEX IF NOT EXISTS claims_rows ON claims (device_id, first_row)
"""


def _migrate_to_v3(db: sqlite_utils.Database) -> None:
    """v3: claims as row ranges in their own table, keyed by uplink, instead of a
    message id written into every claimed row (issue 11: that UPDATE and its index were
    16 % of a drain). Messages claimed by an older release keep their id, rows and bytes:
    each becomes a claim of the default uplink. One whose row range holds rows of other
    messages (possible only with an older release's resend order) cannot be a range: it
    is released, its samples go out again in a new message with their own sample ids,
    and the log says so."""
    _execute_script(db.execute, _V3_DDL)
    columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)").fetchall()}
    if "msg_id" not in columns:
        return
    released = 0
    for msg_id, device_id, kind, historical, first, last, count in db.execute(
            "SELECT msg_id, MIN(device_id), MIN(kind), MIN(historical), MIN(id), MAX(id), "
            "COUNT(*) FROM outbox WHERE msg_id IS NOT NULL GROUP BY msg_id "
            "ORDER BY MIN(id)").fetchall():
        (in_range,) = db.execute(
            "SELECT COUNT(*) FROM outbox WHERE device_id = ? AND id BETWEEN ? AND ?",
            [device_id, first, last]).fetchone()
        if in_range != count:
            released += 1
            continue
        db.execute("INSERT INTO claims (uplink, msg_id, device_id, kind, historical, "
                   "first_row, last_row) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [DEFAULT_UPLINK, msg_id, device_id, kind, int(bool(historical)), first, last])
    if released:
        log.warning("outbox migration: %d message(s) claimed by the earlier release could "
                    "not keep their message id; their samples are sent again in new "
                    "messages (same sample ids)", released)
    db.execute("DROP INDEX IF EXISTS outbox_msg")
    db.execute("ALTER TABLE outbox DROP COLUMN msg_id")
    db.execute("ALTER TABLE outbox DROP COLUMN historical")


# v4 rebuilds both tables (SQLite cannot change a CHECK constraint in place). Row ids are
# kept, and so is the AUTOINCREMENT high-water mark: ids must never go backwards.
_V4_DDL = """
CREATE TABLE outbox_v4 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('sample', 'gap', 'alarm')),
    device_id TEXT NOT NULL,
    seq INTEGER,
    entry_id TEXT NOT NULL,
    acquired_at REAL NOT NULL,
    body TEXT NOT NULL,
    uplink TEXT
);
INSERT INTO outbox_v4 (id, kind, device_id, seq, entry_id, acquired_at, body)
    SELECT id, kind, device_id, seq, entry_id, acquired_at, body FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v4 RENAME TO outbox;
CREATE INDEX outbox_device ON outbox (device_id, id);
CREATE TABLE claims_v4 (
    uplink TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('sample', 'gap', 'alarm')),
    historical INTEGER NOT NULL,
    first_row INTEGER NOT NULL,
    last_row INTEGER NOT NULL,
    acked_at REAL,
    PRIMARY KEY (uplink, msg_id)
);
INSERT INTO claims_v4 (uplink, msg_id, device_id, kind, historical, first_row, last_row)
    SELECT uplink, msg_id, device_id, kind, historical, first_row, last_row FROM claims;
DROP TABLE claims;
ALTER TABLE claims_v4 RENAME TO claims;
CREATE INDEX claims_rows ON claims (device_id, first_row)
"""


def _migrate_to_v4(db: sqlite_utils.Database) -> None:
    """v4, several uplinks (issue 12): an outbox row may be addressed to one uplink only
    (``uplink``, NULL: every uplink that carries its device; a gap event that only one
    uplink must announce), a claim can be acknowledged and kept (``acked_at``: its uplink
    is past those rows, which wait for the other uplinks; claims.py), and ``kind`` also
    accepts ``alarm`` (alarm events stored as rows, issue 17). Existing claims are not
    acknowledged: they are re-sent with the same id and bytes as before."""
    high = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    _execute_script(db.execute, _V4_DDL)
    if high is not None:
        db.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'outbox'",
                   [high[0]])
        db.execute("INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox', ? WHERE NOT "
                   "EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox')", [high[0]])


# The last event of each alarm, kept after its outbox row is delivered and deleted: what
# the alarm engine is restored from at start (issue 17). One row per alarm (a handful per
# channel with rules), written in the transaction that commits the event.
_V5_DDL = """
CREATE TABLE IF NOT EXISTS alarm_state (
    device_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    alarm_group TEXT NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (device_id, channel, alarm_group)
);
CREATE INDEX IF NOT EXISTS outbox_alarms ON outbox (id) WHERE kind = 'alarm'
"""


def _migrate_to_v5(db: sqlite_utils.Database) -> None:
    """v5, alarms kept like data (issue 17 item 3): ``alarm_state`` holds the last event
    of each alarm as JSON (``AlarmEvent.as_dict``), and a partial index finds the alarm
    rows the claims send first without reading the samples. An alarm row a v4 file may
    hold already is taken into ``alarm_state`` (the latest per alarm), so an alarm active
    before the upgrade is not raised twice."""
    _execute_script(db.execute, _V5_DDL)
    db.execute(
        "INSERT OR REPLACE INTO alarm_state (device_id, channel, alarm_group, event) "
        "SELECT device_id, json_extract(body, '$.channel'), json_extract(body, '$.group'), "
        "body FROM outbox WHERE kind = 'alarm' AND json_valid(body) "
        "AND json_extract(body, '$.channel') IS NOT NULL "
        "AND json_extract(body, '$.group') IS NOT NULL ORDER BY id")


# The HJ 212 period tables, the same in v6 and in the current schema (only hj212_fold
# gained a column since): one text, so the two cannot drift. SQLite stores a table's SQL
# without IF NOT EXISTS, so a new file's schema reads the same as a migrated one's.
_HJ212_PERIOD_DDL = """
CREATE TABLE IF NOT EXISTS hj212_open (
    uplink TEXT NOT NULL,
    cn TEXT NOT NULL,
    period_start TEXT NOT NULL,
    code TEXT NOT NULL,
    period_end REAL NOT NULL,
    acc TEXT NOT NULL,
    PRIMARY KEY (uplink, cn, period_start, code)
);
CREATE TABLE IF NOT EXISTS hj212_stats (
    uplink TEXT NOT NULL,
    cn TEXT NOT NULL,
    period_start TEXT NOT NULL,
    cp TEXT NOT NULL,
    closed_at REAL NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    delivered_at REAL,
    PRIMARY KEY (uplink, cn, period_start)
);
CREATE INDEX IF NOT EXISTS hj212_stats_waiting ON hj212_stats (uplink, closed_at)
    WHERE delivered_at IS NULL
"""


# HJ 212 statistics (issue 13 item 2; hj212/statsstore.py says how they are used). Per HJ
# 212 uplink: ``hj212_fold`` how far its statistics have taken in the outbox (row id), the
# observed lag of each device's instrument time and the late samples counted;
# ``hj212_open`` the running statistics of each open period and code; ``hj212_stats`` the
# closed records (their CP region as sent) and whether the platform has them.
_V6_DDL = """
CREATE TABLE IF NOT EXISTS hj212_fold (
    uplink TEXT PRIMARY KEY,
    last_row INTEGER NOT NULL,
    lags TEXT NOT NULL DEFAULT '{}',
    late INTEGER NOT NULL DEFAULT 0
);
""" + _HJ212_PERIOD_DDL


def _migrate_to_v6(db: sqlite_utils.Database) -> None:
    """v6, HJ 212 minute/hourly/daily statistics kept durably (issue 13 item 2): three new
    tables, empty. An HJ 212 uplink's statistics start from the rows still in the outbox
    (those already sent as 2011 and deleted are gone: their periods get no record)."""
    _execute_script(db.execute, _V6_DDL)


def _migrate_to_v7(db: sqlite_utils.Database) -> None:
    """v7, a 1064 minute-interval change applies from the next period, not to the open one
    (review of issue 13): ``hj212_fold.intervals`` is each uplink's schedule of minute
    intervals, ``[[local ISO time from which it applies, minutes], ...]``. Empty on an
    older file: the station's interval in force then applies from the beginning, as it
    did in v6."""
    db.execute("ALTER TABLE hj212_fold ADD COLUMN intervals TEXT NOT NULL DEFAULT '[]'")


# The current schema (v7), created on a new file in one go: what steps 1 to 7 leave
# behind (same tables, columns, constraints and indexes; test_schema_fresh.py), so that a
# first start does not load sqlite-utils and keep it for the life of the process.
# AUTOINCREMENT: ids never go backwards after deletes (see _V1_DDL).
_CURRENT_DDL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE device_seq (
    device_id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    driver_state TEXT
);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('sample', 'gap', 'alarm')),
    device_id TEXT NOT NULL,
    seq INTEGER,
    entry_id TEXT NOT NULL,
    acquired_at REAL NOT NULL,
    body TEXT NOT NULL,
    uplink TEXT
);
CREATE INDEX outbox_device ON outbox (device_id, id);
CREATE INDEX outbox_alarms ON outbox (id) WHERE kind = 'alarm';
CREATE TABLE claims (
    uplink TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('sample', 'gap', 'alarm')),
    historical INTEGER NOT NULL,
    first_row INTEGER NOT NULL,
    last_row INTEGER NOT NULL,
    acked_at REAL,
    PRIMARY KEY (uplink, msg_id)
);
CREATE INDEX claims_rows ON claims (device_id, first_row);
CREATE TABLE alarm_state (
    device_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    alarm_group TEXT NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (device_id, channel, alarm_group)
);
CREATE TABLE hj212_fold (
    uplink TEXT PRIMARY KEY,
    last_row INTEGER NOT NULL,
    lags TEXT NOT NULL DEFAULT '{}',
    late INTEGER NOT NULL DEFAULT 0,
    intervals TEXT NOT NULL DEFAULT '[]'
);
""" + _HJ212_PERIOD_DDL


def _create_current(conn: sqlite3.Connection) -> None:
    """A new file: the current schema and the meta rows step 1 writes (plain SQL)."""
    _execute_script(conn.execute, _CURRENT_DDL)
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('outbox_uuid', ?), ('dropped_total', '0')",
        [uuid.uuid4().hex],
    )


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Run the missing steps on a file of an older release (schema ``version`` >= 1)."""
    import sqlite_utils  # the operator side only: an older file (module docstring)

    db = sqlite_utils.Database(conn, execute_plugins=False)
    for step in range(version + 1, SCHEMA_VERSION + 1):
        _MIGRATIONS[step](db)


_MIGRATIONS: dict[int, Callable[[sqlite_utils.Database], None]] = {
    1: _migrate_to_v1,
    2: _migrate_to_v2,
    3: _migrate_to_v3,
    4: _migrate_to_v4,
    5: _migrate_to_v5,
    6: _migrate_to_v6,
    7: _migrate_to_v7,
}


def _table_names(conn: sqlite3.Connection) -> list[str]:
    return [name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name")]


def current_version(conn: sqlite3.Connection) -> int:
    """Schema version of an open database; 0 for a new, empty file."""
    if "meta" not in (names := _table_names(conn)):
        if tables := names:
            raise ForeignDatabase(
                f"is a SQLite database of another program (tables: {', '.join(tables)}), "
                "not an edge-agent outbox; it is left as it is. Point station.store.path at "
                "a file of its own")
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def refuse_foreign(conn: sqlite3.Connection) -> None:
    """Raise ``ForeignDatabase`` for another program's database, before anything (even
    ``journal_mode``) changes its file."""
    current_version(conn)


def stamp_application_id(conn: sqlite3.Connection) -> bool:
    """Write the outbox's application id into the header of the file on ``conn`` (a new
    file, or an outbox of an older release); True if it was missing. Called before WAL
    mode is set, so a new file's header has it on disk at once (pathcheck.py, rule 1)."""
    (current,) = conn.execute("PRAGMA application_id").fetchone()
    if current == APPLICATION_ID:
        return False
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    return True


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create or migrate the outbox schema on ``conn`` (outside any open transaction)."""
    version = current_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"outbox schema version {version} is newer than this release supports "
            f"({SCHEMA_VERSION}); upgrade edge-agent or move the file aside"
        )
    if version == SCHEMA_VERSION:
        missing = sorted(set(_TABLES) - set(_table_names(conn)))
        if missing:
            raise NotAnOutbox(f"outbox tables missing: {', '.join(missing)}")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if version == 0:
            _create_current(conn)
        else:
            _migrate(conn, version)
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
            [str(SCHEMA_VERSION)],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
