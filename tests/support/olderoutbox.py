"""An outbox file as an older release left it, for the tests of the schema migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

from edge_agent.store import schema


def older_outbox(path: Path, version: int) -> sqlite3.Connection:
    """Create ``path`` with migration steps 1..``version`` and ``meta.schema_version``
    set, inside an open transaction: the caller adds the rows that release would have
    written, then COMMITs and closes. Opening it with ``Outbox`` runs the later steps."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    db = sqlite_utils.Database(conn)
    for step in range(1, version + 1):
        schema._MIGRATIONS[step](db)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", [str(version)])
    return conn
