"""Claiming, acknowledging and the uplinks the outbox serves: the delivery half of
``Outbox`` (store/outbox.py holds the guarantees, the connection and appending).

Every method runs its SQL in the outbox's writer thread through ``_submit`` and keys
everything by uplink: claims, the in-flight sets (in memory, changed only after a commit
or when a session ends) and acknowledgements. ``Outbox`` inherits this class; nothing
else should.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from edge_agent.payload import Message
from edge_agent.store import claims, retention, unpublishable, uplinks
from edge_agent.store.schema import DEFAULT_UPLINK

T = TypeVar("T")


class Delivery:
    """What the uplinks call on the outbox (through store/uplinkview.py)."""

    # Set by Outbox.__init__ (see there).
    _in_flight: dict[str, set[str]]
    _in_flight_lock: threading.Lock
    _scans: dict[str, claims.Scan]
    _routes: uplinks.Routes
    _routes_set: bool
    _txn_routes: uplinks.Routes | None
    _retention: retention.Enforcer
    _clock: Callable[[], float]

    def _submit(self, run: Callable[[sqlite3.Connection], T], reads_only: bool = False) -> T:
        raise NotImplementedError

    def _submit_read(self, run: Callable[[sqlite3.Connection], T], timeout_s: float) -> T:
        raise NotImplementedError

    def backlog_boundary(self, acquired_before: float) -> int:
        """Highest row id acquired before ``acquired_before`` (unix s): the backlog's end.

        Row ids grow in commit order, so rows above the boundary are the newer ones.
        """
        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT MAX(id) FROM outbox WHERE acquired_at < ?",
                               [acquired_before]).fetchone()
            return int(row[0] or 0)

        return self._submit(run, reads_only=True)

    def claim_batch(self, boundary_row_id: int, max_messages: int, max_entries: int,
                    max_body_bytes: int, live_cutoff: float | None = None,
                    uplink: str = DEFAULT_UPLINK, acked: list[str] | None = None,
                    ) -> claims.Claimed:
        """Claim up to ``max_messages`` messages in one transaction and return them; each
        is in flight from then until ``ack_many``, ``set_aside_unpublishable`` or
        ``release_in_flight``. Claims not in flight come first (re-sent as they are), then
        live rows, then backlog rows; ``live_cutoff`` moves live rows acquired before it
        to the backlog (claims.py).

        ``acked``: messages the broker acknowledged, deleted first in the same
        transaction (as ``ack_many`` would), so a drain commits once per turn of the
        window, not twice. On OutboxError nothing is claimed nor deleted, and the acked
        messages leave the in-flight set all the same (offered again: a duplicate with
        the same id, never a loss)."""
        acked = acked or []

        def run(conn: sqlite3.Connection) -> claims.Claimed:
            self._delete_acknowledged(conn, acked, uplink)
            with self._in_flight_lock:
                in_flight = frozenset(self._in_flight.get(uplink, ()))
            scan = self._scans.setdefault(uplink, claims.Scan())
            try:
                return claims.claim(conn, uplink, in_flight, scan, boundary_row_id,
                                    max_messages, max_entries, max_body_bytes, live_cutoff,
                                    self._routes.carrier_filter(uplink))
            except BaseException:
                scan.reset()  # its claims are rolled back with it: look again from 0
                raise

        claimed = self._settle(acked, run, uplink)
        with self._in_flight_lock:
            self._in_flight.setdefault(uplink, set()).update(
                message.msg_id for message in claimed.messages)
        return claimed

    def claim(self, boundary_row_id: int, max_entries: int, max_body_bytes: int) -> Message | None:
        """One message, as ``claim_batch`` would give it; None when there is nothing."""
        claimed = self.claim_batch(boundary_row_id, 1, max_entries, max_body_bytes)
        return claimed.messages[0] if claimed.messages else None

    def ack_many(self, msg_ids: list[str], uplink: str = DEFAULT_UPLINK) -> int:
        """Delete the claims and rows of every acknowledged message, in one transaction;
        returns rows deleted. Either way the messages stop being in flight: if the delete
        failed, the next claim re-sends them (a duplicate with the same id, never a loss).
        """
        return self._settle(msg_ids,
                            lambda conn: self._delete_acknowledged(conn, msg_ids, uplink),
                            uplink)

    def _others_of(self, uplink: str) -> Callable[[str], tuple[str, ...]] | None:
        """For claims.acknowledge: None with a single uplink (the fast path, nothing to
        look up), else the other uplinks carrying a device."""
        routes = self._routes
        if len(routes.names) <= 1:
            return None
        return lambda device_id: routes.others(uplink, device_id)

    def _delete_acknowledged(self, conn: sqlite3.Connection, msg_ids: list[str],
                             uplink: str) -> int:
        deleted = 0
        others_of = self._others_of(uplink)
        now = self._clock()
        for msg_id in msg_ids:
            device_id, kind, rows = claims.acknowledge(conn, uplink, msg_id, others_of, now)
            deleted += rows
            if kind == "sample":
                self._retention.note_deleted(rows, 0, device_id)
            elif kind == "gap":  # alarm rows are not counted by retention (alarmrows.py)
                self._retention.note_deleted(0, rows)
        return deleted

    def set_aside_unpublishable(self, msg_id: str,
                                uplink: str = DEFAULT_UPLINK) -> unpublishable.SetAside:
        """Remove a message that can never be published and announce its samples as a
        gap event (store/unpublishable.py). On OutboxError it stays claimed and is
        offered again, like a failed acknowledgement."""
        def run(conn: sqlite3.Connection) -> unpublishable.SetAside:
            claim = conn.execute("SELECT device_id FROM claims WHERE uplink = ? AND "
                                 "msg_id = ?", [uplink, msg_id]).fetchone()
            others = self._routes.others(uplink, claim[0]) if claim is not None else ()
            result = unpublishable.set_aside(conn, uplink, msg_id, others, self._clock())
            samples, gaps = result.rows_deleted
            self._retention.note_deleted(samples, gaps, result.device_id)
            for _ in range(result.gap_rows_added):
                self._retention.note_gap_added()
            return result

        return self._settle([msg_id], run, uplink)

    def _settle(self, msg_ids: list[str], run: Callable[[sqlite3.Connection], T],
                uplink: str) -> T:
        """Run ``run`` (which ends ``uplink``'s claims of ``msg_ids``); whether it commits
        or fails, they leave the in-flight set: on failure their claims stay and the next
        ``claim_batch`` offers them again."""
        try:
            return self._submit(run)
        finally:
            self.forget_in_flight(msg_ids, uplink)

    def forget_in_flight(self, msg_ids: list[str], uplink: str = DEFAULT_UPLINK) -> None:
        """Claimed messages the caller did not publish after all: offered again (same id)."""
        with self._in_flight_lock:
            self._in_flight.get(uplink, set()).difference_update(msg_ids)

    def release_in_flight(self, uplink: str = DEFAULT_UPLINK) -> None:
        """``uplink``'s connection carrying in-flight messages is gone: they become
        resendable. In memory only, so it works while the database is locked or failing."""
        with self._in_flight_lock:
            self._in_flight.pop(uplink, None)

    def _in_flight_count(self) -> int:
        with self._in_flight_lock:
            return sum(len(ids) for ids in self._in_flight.values())

    # -- uplinks ------------------------------------------------------------------------

    @property
    def uplink_names(self) -> tuple[str, ...]:
        """The uplinks the outbox serves now (``set_uplinks``)."""
        return self._routes.names

    def set_uplinks(self, routes: Mapping[str, Iterable[str] | None]) -> uplinks.Change:
        """Serve these uplinks from now on: name -> the device ids it carries (None: every
        device). Called at start and on every reload; one transaction (store/uplinks.py:
        what a removed or added uplink means for the rows, and what is logged)."""
        new = uplinks.Routes(routes)
        announce = self._routes_set

        def run(conn: sqlite3.Connection) -> uplinks.Change:
            change = uplinks.apply(conn, self._routes, new, self._retention.per_device,
                                   announce)
            self._retention.load(conn)
            if self._txn_routes is None:  # put back by Outbox._rolled_back if no commit
                self._txn_routes = self._routes
            self._routes = new  # here, in the writer: the next ack must see the new routes
            return change

        change = self._submit(run)
        self._routes, self._routes_set = new, True
        with self._in_flight_lock:
            for name in set(self._in_flight) - set(new.names):
                del self._in_flight[name]
        self._scans.clear()  # a hint only; rows and claims changed
        return change

    def uplink_depth(self, uplink: str, timeout_s: float = 5.0) -> uplinks.UplinkDepth:
        """``uplink``'s backlog, oldest waiting sample and in flight, cheap enough for
        every scrape (store/uplinks.py ``depth``). Raises OutboxError like ``depth``."""
        def run(conn: sqlite3.Connection) -> uplinks.UplinkDepth:
            with self._in_flight_lock:
                in_flight = len(self._in_flight.get(uplink, ()))
            return uplinks.depth(conn, self._routes, uplink, self._retention.per_device,
                                 in_flight)

        return self._submit_read(run, timeout_s)

