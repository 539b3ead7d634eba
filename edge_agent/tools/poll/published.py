"""What the service last published for a triggered device, read from its outbox without
changing it: the ``driver_state`` committed with the device's last sample (trigger.py's
identity of the last analysis). ``poll`` compares the current result with it to say
whether the service will publish it as new."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge_agent.store.readonly import OutboxUnreadable, open_read_only


def published_state(outbox: Path, device_id: str) -> str | None:
    """The device's committed trigger state; None when there is no outbox, it cannot be
    read, or the device never published. Never creates the outbox."""
    if not outbox.is_file():
        return None
    try:
        conn = open_read_only(outbox)
    except OutboxUnreadable:
        return None
    try:
        row = conn.execute("SELECT driver_state FROM device_seq WHERE device_id = ?",
                           [device_id]).fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return row[0] if row else None
