"""Setting aside a message that can never be published (runs in the writer thread).

A message the MQTT client refuses (a topic MQTT cannot carry) or the broker keeps
rejecting would otherwise be re-sent first on every session, forever, and block every
other device's data behind it. The forwarder gives up on it (forward/poison.py); here
its rows leave the outbox in one transaction, and its samples are announced the way
retention drops are: merged into the device's unsent gap row (retention.merge_gap) with
the reason ``unpublishable`` and their time and sequence range. The gap event then goes
out like any other. A gap event that is itself unpublishable is removed and not
announced again (that would loop); the caller logs what it said.

An alarm message never vanishes silently either (issue 17): its alarm events are
announced the same way, in the device's unsent gap row, with ``count`` 0 (no sample
lost) and one reason ``unpublishable_alarm:<event id>`` per event, over the events' time
range; the caller logs their ids at ERROR. Keeping the rows instead would block the
device's alarms behind one that can never go out.

With several uplinks carrying the device, only the uplink that gave up is affected: its
claim is marked acknowledged (it is past those rows and never claims them again), the
gap event is addressed to it alone, and the rows stay for the others (they leave by the
delete rule, claims.delete_passed, like acknowledged ones).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from edge_agent.store import claims
from edge_agent.store.retention import merge_gap

REASON = "unpublishable"
ALARM_REASON = "unpublishable_alarm"  # + ":<event id>", one reason per alarm event


@dataclass(frozen=True)
class SetAside:
    """What left the outbox with one message. ``gap_rows_added``: new gap rows written to
    announce the samples (0 when they extended an unsent one); ``gap_bodies``: the stored
    JSON of gap events removed unannounced, for the log."""

    device_id: str | None
    kind: str | None
    samples: int
    gaps: int
    gap_rows_added: int
    first_seq: int | None = None
    last_seq: int | None = None
    gap_bodies: tuple[str, ...] = ()
    #: Rows that left the outbox, (samples, gaps), when not those above: with other
    #: carriers, only the rows they are past too.
    deleted: tuple[int, int] | None = None
    #: The ids of the alarm events the message held (announced, see the module docstring).
    alarm_ids: tuple[str, ...] = ()

    @property
    def rows_deleted(self) -> tuple[int, int]:
        """(sample rows, gap rows) deleted from the outbox."""
        return self.deleted if self.deleted is not None else (self.samples, self.gaps)


def set_aside(conn: sqlite3.Connection, uplink: str, msg_id: str,
              others: Sequence[str] = (), now: float = 0.0) -> SetAside:
    """Delete ``uplink``'s claim ``msg_id`` and its rows and announce its samples (inside
    the caller's transaction). Nothing to do (already acknowledged or set aside): zeros.
    ``others``: the other uplinks carrying the device (module docstring)."""
    if others:
        return _set_aside_for_one(conn, uplink, msg_id, others, now)
    claimed = claims.remove(conn, uplink, msg_id)
    rows = [] if claimed is None else conn.execute(
        "DELETE FROM outbox WHERE device_id = ? AND id BETWEEN ? AND ? "
        "RETURNING kind, device_id, seq, acquired_at, body, entry_id",
        [claimed[0], *claimed[2:]]).fetchall()
    if not rows:
        return SetAside(None, None, 0, 0, 0)
    samples = sorted((row for row in rows if row[0] == "sample"), key=lambda row: row[2])
    gap_bodies = tuple(row[4] for row in rows if row[0] == "gap")
    added = 0
    for device_id, run in _contiguous_runs(samples):
        times = [row[3] for row in run]
        if merge_gap(conn, device_id, min(times), max(times), len(run), run[0][2],
                     run[-1][2], REASON):
            added += 1
    alarm_ids, alarm_rows = _announce_alarms(conn, rows, None)
    seqs = [row[2] for row in samples]
    return SetAside(rows[0][1], rows[0][0], len(samples), len(gap_bodies), added + alarm_rows,
                    min(seqs, default=None), max(seqs, default=None), gap_bodies,
                    alarm_ids=alarm_ids)


def _set_aside_for_one(conn: sqlite3.Connection, uplink: str, msg_id: str,
                       others: Sequence[str], now: float) -> SetAside:
    """``uplink`` gives up on ``msg_id``; the other carriers keep its rows."""
    claimed = claims.mark_acknowledged(conn, uplink, msg_id, now)
    if claimed is None:
        return SetAside(None, None, 0, 0, 0)
    device_id, kind, first, last = claimed
    rows = conn.execute("SELECT kind, device_id, seq, acquired_at, body, entry_id FROM "
                        "outbox WHERE device_id = ? AND id BETWEEN ? AND ?",
                        [device_id, first, last]).fetchall()
    samples = sorted((row for row in rows if row[0] == "sample"), key=lambda row: row[2])
    gap_bodies = tuple(row[4] for row in rows if row[0] == "gap")
    added = 0
    for device, run in _contiguous_runs(samples):
        times = [row[3] for row in run]
        added += merge_gap(conn, device, min(times), max(times), len(run), run[0][2],
                           run[-1][2], REASON, uplink)
    alarm_ids, alarm_rows = _announce_alarms(conn, rows, uplink)
    added += alarm_rows
    counts = dict(conn.execute(
        "SELECT kind, COUNT(*) FROM outbox WHERE device_id = ? AND id BETWEEN ? AND ? "
        "GROUP BY kind", [device_id, first, last]))
    claims.delete_passed(conn, uplink, device_id, first, last, others)
    left = dict(conn.execute(
        "SELECT kind, COUNT(*) FROM outbox WHERE device_id = ? AND id BETWEEN ? AND ? "
        "GROUP BY kind", [device_id, first, last]))
    seqs = [row[2] for row in samples]
    return SetAside(device_id, kind, len(samples), len(gap_bodies), added,
                    min(seqs, default=None), max(seqs, default=None), gap_bodies,
                    (counts.get("sample", 0) - left.get("sample", 0),
                     counts.get("gap", 0) - left.get("gap", 0)), alarm_ids)


def _announce_alarms(conn: sqlite3.Connection, rows: list[tuple],
                     uplink: str | None) -> tuple[tuple[str, ...], int]:
    """Announce the alarm rows among ``rows`` (kind, device, seq, at, body, entry_id) in
    the device's gap row for ``uplink`` (None: every carrier). Returns their event ids
    and the gap rows added (0 or 1 per device)."""
    alarms = [row for row in rows if row[0] == "alarm"]
    added = 0
    for device_id in sorted({row[1] for row in alarms}):
        mine = [row for row in alarms if row[1] == device_id]
        first, last = min(row[3] for row in mine), max(row[3] for row in mine)
        for row in mine:  # the first may start a gap row, the others extend it
            added += merge_gap(conn, device_id, first, last, 0, None, None,
                               f"{ALARM_REASON}:{row[5]}", uplink)
    return tuple(row[5] for row in alarms), added


def _contiguous_runs(samples: list[tuple]) -> list[tuple[str, list[tuple]]]:
    """Sample rows (kind, device, seq, at, body) sorted by seq, split into runs of
    consecutive seq per device: a gap's range must never cover a delivered sample."""
    runs: list[tuple[str, list[tuple]]] = []
    for row in samples:
        if runs and runs[-1][0] == row[1] and runs[-1][1][-1][2] + 1 == row[2]:
            runs[-1][1].append(row)
        else:
            runs.append((row[1], [row]))
    return runs
