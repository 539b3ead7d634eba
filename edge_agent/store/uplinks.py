"""Which uplinks the outbox serves, and what changes when that set changes (issue 12).

The outbox keeps one sample until every uplink that carries its device is past it
(claims.py has the delete rule). For that it must know the active uplinks and which
devices each carries: ``Routes``, set at start and on every reload
(``Outbox.set_uplinks``). Until then it serves the one uplink ``default`` carrying every
device, which is exactly the single-uplink behaviour of earlier releases.

Changing the set (``apply``, one transaction in the writer thread):

* **An uplink removed** (gone from the configuration, or found with claims in the file
  at start although it is no longer configured): its claims go, the gap rows addressed to
  it go, and every row that the remaining carriers are already past, or that no uplink
  carries any more, is deleted; the log says how many. Nothing another uplink still
  needs is touched.
* **An uplink added**: it starts from the rows still in the outbox (it has no claims, so
  every row of its devices is new to it); the log says how many samples and from when.
* **An uplink's devices changed**: claims of devices it no longer carries go, and the
  sweep above runs, so rows held only for it leave.

``depth`` is one uplink's part of the backlog for metrics and status, without a table
scan: the sample count per device kept by retention.Enforcer, minus the samples in the
uplink's acknowledged ranges (rows it delivered that wait for another uplink), and the
first unacknowledged sample of each device it carries.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from edge_agent.model import iso_utc
from edge_agent.store import claims
from edge_agent.store.schema import DEFAULT_UPLINK

log = logging.getLogger("edge_agent.store.outbox")

_LAST_ROW = 2**63 - 1


class Routes:
    """The active uplinks and the devices each carries (None: every device). Read by the
    writer thread on every acknowledgement, replaced whole by ``Outbox.set_uplinks``."""

    def __init__(self, routes: Mapping[str, Iterable[str] | None] | None = None) -> None:
        given = {DEFAULT_UPLINK: None} if routes is None else routes
        self.routes: dict[str, frozenset[str] | None] = {
            name: None if devices is None else frozenset(devices)
            for name, devices in given.items()}
        self._carriers: dict[str, tuple[str, ...]] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.routes)

    def carries(self, uplink: str, device_id: str) -> bool:
        devices = self.routes.get(uplink, frozenset())
        return devices is None or device_id in devices

    def carrier_filter(self, uplink: str) -> Callable[[str], bool] | None:
        """For claims.claim: None when ``uplink`` carries every device."""
        if uplink in self.routes and self.routes[uplink] is None:
            return None
        return lambda device_id: self.carries(uplink, device_id)

    def carriers(self, device_id: str) -> tuple[str, ...]:
        """The uplinks that carry ``device_id``, in configuration order (cached)."""
        found = self._carriers.get(device_id)
        if found is None:
            found = tuple(name for name in self.routes if self.carries(name, device_id))
            self._carriers[device_id] = found
        return found

    def others(self, uplink: str, device_id: str) -> tuple[str, ...]:
        """The uplinks other than ``uplink`` that carry ``device_id`` (the delete rule)."""
        return tuple(name for name in self.carriers(device_id) if name != uplink)


@dataclass
class Change:
    """What ``apply`` did, for the log and tests."""

    removed: dict[str, tuple[int, int]] = field(default_factory=dict)  # claims, rows
    added: dict[str, tuple[int, float | None]] = field(default_factory=dict)  # samples, oldest
    rows_deleted: int = 0
    changed: tuple[str, ...] = ()  # uplinks kept whose devices changed


def apply(conn: sqlite3.Connection, old: Routes, new: Routes,
          per_device: Mapping[str, int], announce_added: bool) -> Change:
    """Switch the outbox from ``old`` to ``new`` inside the caller's transaction (module
    docstring). ``per_device``: sample rows per device before the change."""
    change = Change(changed=tuple(name for name in new.names if name in old.routes
                                  and old.routes[name] != new.routes[name]))
    known = {name for (name,) in conn.execute("SELECT DISTINCT uplink FROM claims")}
    for name in sorted((known | set(old.names)) - set(new.names)):
        released = conn.execute("DELETE FROM claims WHERE uplink = ?", [name]).rowcount
        gaps = conn.execute("DELETE FROM outbox WHERE uplink = ?", [name]).rowcount
        change.removed[name] = (released, gaps)
    devices = claims.devices(conn)
    for device_id in devices:
        change.rows_deleted += _sweep(conn, new, device_id)
    held = announce_added or change.rows_deleted or any(map(any, change.removed.values()))
    if change.removed and held:  # at start, the placeholder 'default' holding nothing is no news
        total = sum(rows for _claims, rows in change.removed.values()) + change.rows_deleted
        for name, (released, _rows) in change.removed.items():
            log.info("uplink %s removed: its %d claim(s) released", name, released)
        log.info("uplinks removed (%s): %d row(s) that only they were holding deleted",
                 ", ".join(change.removed), total)
    elif change.rows_deleted:
        _log_swept(change)
    for name in new.names:
        if name in old.names or not announce_added:
            continue
        carried = [d for d in devices if new.carries(name, d)]
        samples = sum(per_device.get(d, 0) for d in carried)
        oldest = _oldest(conn, name, carried)
        change.added[name] = (samples, oldest)
        log.info("uplink %s: starting from %d samples still in the outbox, oldest %s",
                 name, samples, "none" if oldest is None
                 else iso_utc(datetime.fromtimestamp(oldest, UTC)))
    return change


def _log_swept(change: Change) -> None:
    """Rows left because an uplink's ``devices:`` changed (or, at start, because the
    file held rows every carrier is past): never silently, say how many and why."""
    why = ("devices of uplink " + ", ".join(change.changed) + " changed") \
        if change.changed else "uplinks set at start"
    log.info("%s: %d row(s) left the outbox: every uplink still carrying their device "
             "had delivered them, or no uplink carries their device any more",
             why, change.rows_deleted)


def _sweep(conn: sqlite3.Connection, routes: Routes, device_id: str) -> int:
    """Delete ``device_id``'s rows that no uplink carries, or that every carrier is past,
    and claims of uplinks that no longer carry it. Returns rows deleted."""
    carriers = routes.carriers(device_id)
    if not carriers:
        conn.execute("DELETE FROM claims WHERE device_id = ?", [device_id])
        return conn.execute("DELETE FROM outbox WHERE device_id = ?", [device_id]).rowcount
    conn.execute(f"DELETE FROM claims WHERE device_id = ? AND uplink NOT IN "
                 f"({', '.join('?' * len(carriers))})", [device_id, *carriers])
    deleted = 0
    for name in carriers:
        for first, last in claims.acked_ranges(conn, name, device_id):
            deleted += claims.delete_passed(conn, name, device_id, first, last,
                                            routes.others(name, device_id))
    claims.drop_empty_claims(conn, device_id)
    return deleted


def _oldest(conn: sqlite3.Connection, uplink: str, devices: Iterable[str]) -> float | None:
    """Acquisition time of the oldest sample ``uplink`` has not acknowledged, over
    ``devices``: per device, seeks of ``outbox_device`` past its acknowledged ranges."""
    oldest: float | None = None
    for device_id in devices:
        ranges = claims.acked_ranges(conn, uplink, device_id)
        at = 0
        while True:
            row = conn.execute("SELECT id, acquired_at FROM outbox WHERE device_id = ? AND "
                               "id >= ? AND kind = 'sample' ORDER BY id LIMIT 1",
                               [device_id, at]).fetchone()
            if row is None:
                break
            covering = [last for first, last in ranges if first <= row[0] <= last]
            if not covering:
                oldest = row[1] if oldest is None else min(oldest, row[1])
                break
            at = covering[0] + 1
    return oldest


@dataclass(frozen=True)
class UplinkDepth:
    """One uplink's part of the outbox: ``backlog`` samples of its devices it has not
    acknowledged (in flight included), the oldest of them (unix s), and its messages in
    flight."""

    uplink: str
    backlog: int
    oldest_waiting_at: float | None
    in_flight_messages: int


def depth(conn: sqlite3.Connection, routes: Routes, uplink: str,
          per_device: Mapping[str, int], in_flight: int) -> UplinkDepth:
    """``uplink``'s depth (module docstring); cost: one seek per device it carries, and
    one index range count per acknowledged range it holds (few: they merge)."""
    carried = [d for d in per_device if per_device[d] > 0 and routes.carries(uplink, d)]
    backlog = sum(per_device[d] for d in carried)
    for device_id in carried:
        for first, last in claims.acked_ranges(conn, uplink, device_id):
            (passed,) = conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE device_id = ? AND id BETWEEN ? AND ? "
                "AND kind = 'sample'", [device_id, first, last]).fetchone()
            backlog -= passed
    return UplinkDepth(uplink, backlog, _oldest(conn, uplink, carried), in_flight)
