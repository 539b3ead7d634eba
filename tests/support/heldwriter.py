"""Holding an outbox's write lock from a second connection, as another program or a slow
disk would: the outbox writer's next ``BEGIN IMMEDIATE`` waits (up to its busy timeout)
until ``release``. Tests see "nothing committed yet" this way, never in seconds."""

from __future__ import annotations

import sqlite3
from pathlib import Path


class HeldWriter:
    """A second connection holding the outbox's write lock until ``release``."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()
