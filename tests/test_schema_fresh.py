"""A new outbox's schema, written in plain SQL, is the schema the migrations build (issue 11).

A new file no longer runs migration steps 1 to 5 through sqlite-utils (3.5 MiB held for
the life of the process): ``schema._CURRENT_DDL`` creates the result directly. These tests
hold the two equal, so that a file created today and one upgraded from release 0.1 can
never differ: same tables, columns (type, NOT NULL, default, key), CHECK constraints,
indexes (columns, uniqueness, partial WHERE) and meta keys.
"""

from __future__ import annotations

import re
import sqlite3
import sys
from pathlib import Path

import pytest
import sqlite_utils

from edge_agent.config.schema import Retention
from edge_agent.store import schema
from edge_agent.store.outbox import Outbox


def _normalised(sql: str | None) -> str | None:
    """SQL text as SQLite keeps it, without what ALTER TABLE changes and means nothing:
    quotes a RENAME adds around the name, whitespace, IF NOT EXISTS."""
    if sql is None:
        return None
    sql = sql.replace('"', "").replace(" IF NOT EXISTS", "")
    sql = re.sub(r"\s+", " ", sql)
    return re.sub(r"\s*([(),])\s*", r"\1", sql).strip()


def _describe(path: Path) -> dict[str, object]:
    """Everything of a file's schema that decides what it accepts and how it is read."""
    conn = sqlite3.connect(path)
    try:
        master = sorted((kind, name, table, _normalised(sql)) for kind, name, table, sql in
                        conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
        tables = [name for kind, name, _, _ in master if kind == "table"]
        columns = {t: conn.execute(f"PRAGMA table_xinfo({t})").fetchall() for t in tables}
        indexes = {t: sorted(row[1:] for row in conn.execute(f"PRAGMA index_list({t})"))
                   for t in tables}
        index_columns = {name: conn.execute(f"PRAGMA index_xinfo({name})").fetchall()
                         for kind, name, _, _ in master if kind == "index"}
        meta = sorted(key for (key,) in conn.execute("SELECT key FROM meta"))
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return {"master": master, "columns": columns, "indexes": indexes,
                "index_columns": index_columns, "meta": meta, "version": version}
    finally:
        conn.close()


def _migrated_from_v1(path: Path) -> None:
    """A file as release 0.1 left it (schema 1), then opened by this release."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    schema._migrate_to_v1(sqlite_utils.Database(conn))
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    conn.execute("COMMIT")
    conn.close()
    Outbox(path, Retention()).close()


def test_new_outbox_schema_equals_the_schema_migrated_from_v1(tmp_path: Path) -> None:
    fresh, migrated = tmp_path / "fresh.sqlite3", tmp_path / "migrated.sqlite3"
    Outbox(fresh, Retention()).close()
    _migrated_from_v1(migrated)
    described = _describe(fresh)
    assert described["version"] == (str(schema.SCHEMA_VERSION),)
    assert {name for kind, name, _, _ in described["master"]} >= set(schema._TABLES)
    assert described == _describe(migrated)


def test_the_comparison_sees_a_constraint_that_differs(tmp_path: Path) -> None:
    """The normalisation above drops quotes and spacing only: a CHECK that accepts other
    kinds, a missing column or index would fail the test above."""
    fresh, other = tmp_path / "fresh.sqlite3", tmp_path / "other.sqlite3"
    Outbox(fresh, Retention()).close()
    Outbox(other, Retention()).close()
    conn = sqlite3.connect(other, isolation_level=None)
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("UPDATE sqlite_master SET sql = replace(sql, '''alarm''', '''event''') "
                 "WHERE name = 'claims'")
    conn.execute("PRAGMA writable_schema = OFF")
    conn.close()
    assert _describe(fresh)["master"] != _describe(other)["master"]


def test_new_outbox_is_created_without_sqlite_utils(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The migration steps take a sqlite-utils database; a new file must not need one:
    with sqlite-utils unimportable, ``ensure_schema`` still builds the current schema."""
    monkeypatch.setitem(sys.modules, "sqlite_utils", None)  # import sqlite_utils fails
    conn = sqlite3.connect(tmp_path / "new.sqlite3", isolation_level=None)
    try:
        schema.ensure_schema(conn)
        assert schema.current_version(conn) == schema.SCHEMA_VERSION
    finally:
        conn.close()
