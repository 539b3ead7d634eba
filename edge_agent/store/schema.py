"""Outbox schema creation and migration (the operator side of the database, via sqlite-utils).

The schema version lives in ``meta.schema_version``. A release that changes the schema adds
a step to ``_MIGRATIONS``; opening an older file runs the missing steps in one transaction.
A file newer than this release is refused rather than misread, and so is another
program's database (``ForeignDatabase``: never renamed or changed, it is not ours); an
outbox missing its tables raises ``NotAnOutbox`` (damage: set aside as corrupt). Every
outbox carries ``APPLICATION_ID`` in its SQLite header, so that it can be told
from another program's file even when its tables cannot be read (``stamp_application_id``).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable

import sqlite_utils

SCHEMA_VERSION = 2
APPLICATION_ID = 0x45414F42  # "EAOB": Edge-Agent OutBox, in the SQLite header (pathcheck.py)
_TABLES = ("meta", "device_seq", "outbox")


class SchemaError(Exception):
    """The outbox file was written by a newer release, or is not an outbox at all."""


class NotAnOutbox(SchemaError):
    """The file is an outbox missing its tables: treated as corrupt, set aside
    (corruption.py)."""


class ForeignDatabase(SchemaError):
    """The file is a healthy SQLite database with tables but no edge-agent ``meta``:
    another program's. Refused and left alone: renaming it would break that program."""


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
    for statement in _V1_DDL.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('outbox_uuid', ?), ('dropped_total', '0')",
        [uuid.uuid4().hex],
    )


def _migrate_to_v2(db: sqlite_utils.Database) -> None:
    """v2: a driver's state, committed with its device's samples (a GC's last published
    analysis, so it is published exactly once across restarts)."""
    db.execute("ALTER TABLE device_seq ADD COLUMN driver_state TEXT")


_MIGRATIONS: dict[int, Callable[[sqlite_utils.Database], None]] = {
    1: _migrate_to_v1,
    2: _migrate_to_v2,
}


def current_version(db: sqlite_utils.Database) -> int:
    """Schema version of an open database; 0 for a new, empty file."""
    if "meta" not in db.table_names():
        if tables := db.table_names():
            raise ForeignDatabase(
                f"is a SQLite database of another program (tables: {', '.join(tables)}), "
                "not an edge-agent outbox; it is left as it is. Point station.store.path at "
                "a file of its own")
        return 0
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def refuse_foreign(conn: sqlite3.Connection) -> None:
    """Raise ``ForeignDatabase`` for another program's database, before anything (even
    ``journal_mode``) changes its file."""
    current_version(sqlite_utils.Database(conn, execute_plugins=False))


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
    db = sqlite_utils.Database(conn, execute_plugins=False)
    version = current_version(db)
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"outbox schema version {version} is newer than this release supports "
            f"({SCHEMA_VERSION}); upgrade edge-agent or move the file aside"
        )
    if version == SCHEMA_VERSION:
        missing = sorted(set(_TABLES) - set(db.table_names()))
        if missing:
            raise NotAnOutbox(f"outbox tables missing: {', '.join(missing)}")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for step in range(version + 1, SCHEMA_VERSION + 1):
            _MIGRATIONS[step](db)
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
            [str(SCHEMA_VERSION)],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
