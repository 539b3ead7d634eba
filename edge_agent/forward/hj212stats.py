"""One HJ 212 uplink's minute/hourly/daily statistics at run time: a thread that folds
the outbox's samples and closes periods (statsstore.py), the sending of closed records
as 2051/2061/2031, and the answer to history pulls.

Why a thread of its own: statistics must be made while the platform is down too (the
uplink does not claim while its session is down), and in acquisition order, so folding
follows the outbox's row ids, not the uplink's claims. Every ``FOLD_EVERY_S`` it folds
until it has caught up with the outbox, then closes the periods that are due. The
uplink's acknowledgements go through ``FoldingOutbox``, which folds first: the outbox
deletes a row only when every uplink carrying it acknowledged it, so a row is always
folded before it can go (exactly once: statsstore.py's invariants).

Sending: closed records wait in ``hj212_stats``; the uplink thread sends them through its
session (``send_waiting``) before its 2011 backlog, newest first, with the same
acknowledgement and retry rules as 2011 (session.py). A record sent again after a failed
send, or sent later than its first upload could have taken, is marked re-sent (``RF=1``
under HJ 212-2025), as 2011 samples are.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime

from edge_agent.hj212 import statsstore
from edge_agent.hj212.periods import DAILY_CN, HOURLY_CN, KINDS, MINUTE_CN
from edge_agent.hj212.session import Session
from edge_agent.hj212.session_types import Upload
from edge_agent.hj212.statsstore import Plan
from edge_agent.i18n import _
from edge_agent.store import claims
from edge_agent.store.outbox import Outbox, OutboxError
from edge_agent.store.uplinkview import UplinkOutbox
from edge_agent.watchdog import Heartbeat

log = logging.getLogger(__name__)

FOLD_EVERY_S = 1.0
# The longest the statistics thread may go between beats (watchdog.py): one wait plus
# the Python work between two fold transactions (waits for the outbox writer are
# covered by the writer's own heartbeat).
STATS_BOUND_S = 60.0
PRUNE_EVERY_S = 3600.0
SEND_AT_ONCE = 4  # records sent per turn of the uplink loop before its 2011 data
# Late periods remembered so each is logged once. An instrument whose clock lags more
# than the grace makes every period late, one more each minute for weeks: past this
# many the memory starts again (a period may then be logged twice; all are counted).
LOGGED_LATE_MAX = 1000


class StatsKeeper:
    """Folds, closes and sends one uplink's statistics. ``plan`` is called for the
    settings in force at each fold (the minute interval may change by 1064)."""

    def __init__(self, outbox: Outbox, uplink: str, plan: Callable[[], Plan],
                 clock: Callable[[], float] = time.time,
                 fold_batch: int = statsstore.FOLD_BATCH) -> None:
        self._outbox = outbox
        self._fold_batch = fold_batch  # outbox rows per fold transaction
        self.uplink = uplink
        self._plan = plan
        self._clock = clock
        self._fold_lock = threading.Lock()
        self._stopping = threading.Event()
        self._logged: set[tuple[str, str]] = set()
        self._failing = False
        self._pruned_at = 0.0
        self.folded_to = 0  # outbox row id every sample up to which is folded
        self.counts = {"late": 0, "unreadable": 0, "closed": 0, "sent": 0}
        self.thread = threading.Thread(target=self._run, name=f"hj212-stats-{uplink}",
                                       daemon=True)
        # watched like every worker: a hung or ended statistics thread stops the records
        # while 2011 data still flows, which nobody would notice otherwise
        self.heartbeat = Heartbeat(self.thread.name)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self.thread.ident is not None:
            self.thread.join(timeout=10)

    # -- folding and closing ----------------------------------------------------------
    def fold_now(self) -> None:
        """Fold every sample in the outbox now (OutboxError when the outbox fails)."""
        with self._fold_lock:
            plan = self._plan()
            while True:
                done = self._outbox.run_transaction(
                    lambda conn: statsstore.fold(conn, plan, self._clock(), self._fold_batch))
                self._report(done)
                if done.caught_up:
                    return

    def step(self) -> list[tuple[str, str]]:
        """Fold until caught up, then close what is due (in one transaction with the last
        fold, so nothing acquired in a closing period is left out); (cn, DataTime) of the
        records closed. A stop ends it between two batches (each commits its cursor, so
        the rest folds on the next start): a backlog of hours is not folded past the
        10 s ``stop`` waits for the thread."""
        with self._fold_lock:
            plan = self._plan()
            while True:
                self._beat()
                now = self._clock()
                done, closed = self._outbox.run_transaction(
                    lambda conn, n=now: self._fold_and_close(conn, plan, n))
                self._report(done)
                if done.caught_up:
                    break
                if self._stopping.is_set():
                    return []
        if closed:
            self.counts["closed"] += len(closed)
            log.info(_("HJ 212 uplink {uplink}: statistics closed: {records}").format(
                uplink=self.uplink, records=", ".join(f"{cn} {start}" for cn, start in closed)))
        if now - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = now
            self._outbox.run_transaction(lambda conn: statsstore.prune(conn, self.uplink, now))
        return closed

    def _fold_and_close(self, conn: sqlite3.Connection, plan: Plan, now: float
                        ) -> tuple[statsstore.Folded, list[tuple[str, str]]]:
        done = statsstore.fold(conn, plan, now, self._fold_batch)
        return done, statsstore.close_due(conn, plan, now) if done.caught_up else []

    def _report(self, done: statsstore.Folded) -> None:
        self.folded_to = max(self.folded_to, done.last_row)
        for cn, start, device in done.late:
            self.counts["late"] += 1
            if (cn, start) not in self._logged:
                if len(self._logged) >= LOGGED_LATE_MAX:
                    self._logged.clear()
                self._logged.add((cn, start))
                log.warning(_("HJ 212 uplink {uplink}: a sample of {device} belongs to the "
                              "{kind} period {start}, which is closed already; it is not "
                              "added to that record (late samples are counted: {count})"
                              ).format(uplink=self.uplink, device=device, kind=KINDS[cn],
                                       start=start, count=self.counts["late"]))
        for device, row in done.unreadable:
            self.counts["unreadable"] += 1
            log.error(_("HJ 212 uplink {uplink}: outbox row {row} of {device} cannot be "
                        "read; left out of the statistics").format(
                            uplink=self.uplink, row=row, device=device))

    def _beat(self) -> None:
        """Beat when on the statistics thread (``step`` is also run by tests, and the
        first beat binds the heartbeat to its thread)."""
        if threading.current_thread() is self.thread:
            self.heartbeat.beat(STATS_BOUND_S)

    def _run(self) -> None:
        failing = False
        self._beat()
        while not self._stopping.wait(FOLD_EVERY_S):
            self._beat()
            try:
                self.step()
                if failing:
                    failing = False
                    log.info("HJ 212 uplink %s: statistics are kept again", self.uplink)
            except OutboxError as err:
                if not failing:
                    failing = True
                    log.error(_("HJ 212 uplink {uplink}: statistics cannot read the outbox: "
                                "{error}; retrying").format(uplink=self.uplink, error=err))
            except Exception:  # a bug must not end the statistics: log, go on
                log.exception("HJ 212 uplink %s: statistics failed", self.uplink)

    # -- sending and history ----------------------------------------------------------
    def send_waiting(self, session: Session, beat: Callable[[], None] | None = None) -> bool:
        """Send up to ``SEND_AT_ONCE`` waiting records; True when all of them went (the
        caller goes on with its 2011 data), False when one was not delivered. ``beat``
        is called before each send (the caller's watchdog heartbeat: a send may take
        ``timeout_s × (retries + 1)``)."""
        records = self._outbox.run_read(
            lambda conn: statsstore.waiting(conn, self.uplink, SEND_AT_ONCE))
        for record in records:
            if beat is not None:
                beat()
            live = session.live()
            late = self._clock() - record.closed_at > live.timeout_s * (live.retries + 1)
            result = session.send(Upload(record.cn, record.cp,
                                         resent=record.failures > 0 or late))
            if not result.delivered:
                self._outbox.run_transaction(lambda conn, r=record: statsstore.mark_failed(
                    conn, self.uplink, r.cn, r.period_start))
                if not self._failing:
                    self._failing = True
                    log.warning(_("HJ 212 uplink {uplink}: {kind} record {start} not "
                                  "delivered ({reason}); kept and sent again later").format(
                                      uplink=self.uplink, kind=KINDS[record.cn],
                                      start=record.period_start, reason=result.reason))
                return False
            self._failing = False
            at = self._clock()
            self._outbox.run_transaction(lambda conn, r=record, t=at: statsstore.mark_delivered(
                conn, self.uplink, r.cn, r.period_start, t))
            self.counts["sent"] += 1
        return True

    def history(self, cn: str, begin: datetime, end: datetime) -> list[str]:
        """The stored records a history pull asks for (responder.py's ``History``)."""
        return self._outbox.run_read(
            lambda conn: statsstore.history(conn, self.uplink, cn, begin, end))


def statistics_cns(hourly: bool, daily: bool) -> tuple[str, ...]:
    """The CNs an uplink keeps: minute data always, hourly and daily when enabled."""
    return (MINUTE_CN,) + ((HOURLY_CN,) if hourly else ()) + ((DAILY_CN,) if daily else ())


class FoldingOutbox(UplinkOutbox):
    """The uplink's view of the outbox whose acknowledgements fold first: a row is in
    the statistics before this uplink lets the outbox delete it."""

    def __init__(self, outbox: Outbox, name: str, keeper: StatsKeeper) -> None:
        super().__init__(outbox, name)
        self.keeper = keeper
        self._last_rows: dict[str, int] = {}  # claimed msg_id -> its last outbox row

    def claim_batch(self, boundary_row_id: int, max_messages: int, max_entries: int,
                    max_body_bytes: int, live_cutoff: float | None = None,
                    acked: list[str] | None = None) -> claims.Claimed:
        claimed = super().claim_batch(boundary_row_id, max_messages, max_entries,
                                      max_body_bytes, live_cutoff, acked)
        if len(self._last_rows) > 10_000:  # claims given back and never acknowledged
            self._last_rows.clear()  # forgotten: their acknowledgement then folds first
        for message in claimed.messages:
            self._last_rows[message.msg_id] = max(e.row_id for e in message.entries)
        return claimed

    def ack_many(self, msg_ids: list[str]) -> int:
        """Fold first when a message holds a row the statistics have not passed yet
        (always, for a message claimed before a restart: its rows are not known here)."""
        needed = [self._last_rows.pop(msg_id, None) for msg_id in msg_ids]
        if any(row is None or row > self.keeper.folded_to for row in needed):
            self.keeper.fold_now()
        return super().ack_many(msg_ids)
