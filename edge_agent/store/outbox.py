"""The outbox: a SQLite table of samples waiting for the broker's acknowledgement.

Guarantees (the reliability contract, items 1, 2, 3 and 5):

* **Accepted means committed.** ``append`` returns only after the sample's transaction
  has committed; ``append_nowait`` (a poller's plain samples, edge_agent/pollstore.py)
  returns a future that holds ``Accepted`` only then, so nobody learns a sample's
  sequence number, nor counts it stored, before its commit. With the default
  ``synchronous=FULL`` in WAL mode the commit is on disk when it returns: a power cut
  after that loses nothing. With ``synchronous=NORMAL`` a power cut (not a process
  crash) can lose the transactions committed since the last WAL checkpoint, at most
  ``wal_autocheckpoint`` (1000) pages, typically the last few seconds.
* **Group commit.** All writes go through one writer thread and one connection (the
  engine in writer.py, whose invariants its docstring states). Appends, claims and
  acknowledgements that arrive while a transaction is running are committed together in
  the next one, so throughput does not fall to one fsync per sample. Reads (depth, stats,
  the backlog boundary) run in a read transaction of their own that writes nothing, so
  they still answer while the disk is full.
* **Removed only on acknowledgement.** A row is deleted by ``ack_many`` only, which the
  forwarder calls on the broker's PUBACKs. A claim (claims.py: the message id, device,
  kind, lane and row-id range, one row in ``claims`` per message) is committed *before*
  the message is published, so after a crash the same rows are re-sent as the same
  message (same id, same bytes). Messages that were in flight when the process died are
  re-sent first after restart. Claims are keyed by uplink; with several uplinks
  (``set_uplinks``, store/uplinks.py) a row leaves when every uplink that carries its
  device has acknowledged a claim covering it (claims.py, docs/architecture.md): until
  then the acknowledged claims stay, so no uplink sends a row twice.
  The one other way out is a message that can never be published
  (``set_aside_unpublishable``, store/unpublishable.py): its rows are deleted and its
  samples, or its alarm events by id, announced as a gap event in the same transaction.
* **When full.** Retention limits (rows, bytes of database pages in use, age) are enforced
  in the transaction that crosses them: the oldest samples no uplink has in flight are
  deleted (one in flight may already be at a broker), counted in
  ``meta.dropped_total``, logged once per episode and announced by a gap row per device
  (first/last time, first/last sequence, count) that is forwarded like any sample, to
  each uplink that had not acknowledged the dropped samples (store/retention.py). A gap
  row grows while unsent as long as the next drop continues its sequence range.
* **Alarms with their sample.** Alarm events are rows of kind ``alarm`` committed in the
  transaction of the sample that caused them (a communication alarm, which has no
  sample, in one of its own), with their alarm's last state in ``alarm_state``, which
  outlives the row and restores the alarm engine at start (alarmrows.py). Claims send
  them before any sample; retention never drops them (only samples). Events whose
  transaction fails (disk full) are not lost silently: counted
  (``alarm_events_not_stored_total``), logged once per episode ("alarm events not
  stored"), kept in memory and written by the next write transaction that commits, so
  they are published with their own ids once there is room (their alarm's
  ``alarm_state`` is not rolled back by them if a newer event is already there). Like
  unstored samples, that memory does not survive a restart while the disk is full.
* **Driver state with its sample.** A sample's ``driver_state`` (a GC's last published
  analysis) is written in the sample's own transaction: after any crash the state a
  driver gets back describes exactly the samples that were accepted.
* **Loss window.** Nothing accepted is lost except by the retention rule above and a
  corrupt file (below). A sample whose append fails (disk full, I/O error) was never
  accepted: ``append`` raises, the loss is counted (``unstored_total``) and kept in memory,
  and written as a ``store_error`` gap row by the next transaction that commits, so it
  is published once space is back. That memory does not survive a restart while the disk
  is still full (a known gap). While the disk is full nothing commits: claims and
  acknowledgements fail too, and the samples already accepted stay where they are.
* **Corrupt file.** A file SQLite reports as malformed or not a database, at open or at
  any later statement, or an outbox missing its tables, is renamed to
  ``<name>.corrupt-<UTC time>`` (kept) and a new outbox started at once, in the writer
  thread; the operation that met the damage is retried on the new file. Its undelivered
  samples are lost: those that can still be read are announced as gap events and counted
  in ``meta.corrupt_lost_total``, numbering continues where it can be read, and one
  ERROR line says what was lost (corruption.py). At most ``MAX_SET_ASIDE`` files are set
  aside per run (more means failing storage); after that writes fail and are counted as
  above. A file from a newer release is not corrupt: it is refused (``SchemaError``) and
  left alone.
* **Only an outbox is ever changed.** Before anything is opened, the file at the path
  must be an edge-agent outbox or absent (pathcheck.py: the header's application id, the
  outbox's tables, or the lock file left beside it by an earlier agent). Any other file
  (a station file, a text file, another program's database) is refused
  (``StorePathRefused``) and never renamed, written or locked; so are a directory, a
  device and a place under /proc, /sys or /dev. ``check`` refuses the same.
* **One agent per outbox.** The outbox holds an exclusive ``flock`` on ``<path>.lock``
  from open to close (lock.py); a second agent is refused (``OutboxInUse``) naming the
  first. The kernel drops the lock when the holder dies, SIGKILL included.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from edge_agent.alarms.events import AlarmEvent
from edge_agent.config.schema import Retention, Synchronous
from edge_agent.model import Sample
from edge_agent.payload import encode_sample_body
from edge_agent.store import alarmrows, claims, corruption, pathcheck, retention, uplinks
from edge_agent.store.delivery import Delivery
from edge_agent.store.lock import OutboxLock
from edge_agent.store.schema import (
    ForeignDatabase,
    NotAnOutbox,
    SchemaError,
    ensure_schema,
    refuse_foreign,
    stamp_application_id,
)
from edge_agent.store.writer import (
    ConnectionLost,
    Participant,
    Writer,
    WriterClosed,
    WriterNotAnswering,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


class OutboxError(Exception):
    """The outbox could not commit (disk full, I/O error, closed)."""


class OutboxNotAnswering(OutboxError):
    """The writer thread did not run a read within its deadline (hung, or stuck in a very
    long transaction)."""


@dataclass(frozen=True)
class Accepted:
    """What ``append`` returns once the sample is durable."""

    row_id: int
    seq: int
    sample_id: str


@dataclass(frozen=True)
class OutboxStats:
    """Counts for status output and tests. ``unstored_total`` and ``set_aside`` are this
    run's (samples whose append failed; corrupt files renamed); ``corrupt_lost_total`` is
    the file's (samples announced lost with corrupt files)."""

    rows: int
    samples: int
    gaps: int
    oldest_acquired_at: float | None
    dropped_total: int
    in_flight_messages: int
    bytes_in_use: int
    unstored_total: int = 0
    set_aside: tuple[Path, ...] = ()
    corrupt_lost_total: int = 0
    alarms: int = 0  # alarm event rows waiting (not in ``rows``)
    alarm_events_not_stored_total: int = 0  # this run (``Outbox.append``, loss window)
    alarm_events_waiting_to_store: int = 0  # in memory, for the next commit


@dataclass(frozen=True)
class OutboxDepth:
    """What metrics and status read at every scrape, without scanning the table: row
    counts kept by the writer, the oldest sample by commit order (the first sample row),
    the persistent drop counter, the size of the pages in use, and the samples lost
    with corrupt files (``meta.corrupt_lost_total``, carried from file to file)."""

    rows: int
    samples: int
    oldest_acquired_at: float | None
    dropped_total: int
    in_flight_messages: int
    bytes_in_use: int
    corrupt_lost_total: int = 0
    alarms: int = 0  # alarm event rows waiting (not in ``rows``): a partial index count
    alarm_events_not_stored_total: int = 0
    alarm_events_waiting_to_store: int = 0


class Outbox(Delivery):
    """Owner of the outbox database: one writer thread, one connection. Claiming,
    acknowledging and the uplinks served are in store/delivery.py."""

    def __init__(
        self,
        path: Path,
        retention_limits: Retention,
        synchronous: Synchronous = Synchronous.FULL,
        clock: Callable[[], float] = time.time,
        on_append: Callable[[], None] | None = None,
    ) -> None:
        self.path = Path(path)
        #: Called after each committed append (the forwarder's wake-up); settable later.
        self.on_append = on_append
        self._synchronous = synchronous
        self._clock = clock
        # Per uplink: message ids published and not yet acknowledged, changed only after a
        # commit. Keyed by uplink: a message id is unique within its uplink's claims only.
        self._in_flight: dict[str, set[str]] = {}
        self._in_flight_lock = threading.Lock()
        self._scans: dict[str, claims.Scan] = {}  # per uplink (writer thread only)
        self._unstored: dict[str, retention.PendingGap] = {}
        self._routes = uplinks.Routes()  # the active uplinks (set_uplinks)
        self._routes_set = False
        # The routes before a set_uplinks of the open transaction (writer thread only):
        # restored if it rolls back, so rows, claims and routes always agree.
        self._txn_routes: uplinks.Routes | None = None
        self._retention = retention.Enforcer(retention_limits, clock)
        self._retention.carriers = lambda device_id: self._routes.carriers(device_id)
        self._unstored_lock = threading.Lock()
        self._closed = False
        self.unstored_total = 0  # samples whose append failed (disk full...), this run
        # Alarm events whose transaction failed, waiting for the next commit (with the
        # acquisition time of their row), and the count of such events, this run.
        self._unstored_alarms: list[tuple[AlarmEvent, float]] = []
        self._txn_alarms: list[tuple[AlarmEvent, float]] = []
        self.alarm_events_not_stored_total = 0
        self._corrupt = corruption.Replacements(self.path)
        self.set_aside = self._corrupt.files  # corrupt files renamed, this run
        # The open transaction's sequence numbers, samples announced as unstored and
        # highest row id (writer thread only; see ``_committed`` and ``_rolled_back``).
        self._txn_seqs: dict[str, int] = {}
        self._txn_unstored: dict[str, retention.PendingGap] = {}
        self._txn_row_id_high = 0
        self._last_seqs: dict[str, int] = {}  # sequence numbers as committed (writer only)
        # Highest outbox row id any file of this run has had (writer thread only): a new
        # file after a corrupt one continues above it (a forwarder's backlog boundary is
        # a row id, and ids never go backwards).
        self._row_id_high = 0
        # Before the lock: a lock file is never made beside another program's file.
        if (problem := pathcheck.refusal(self.path)) is not None:
            raise pathcheck.StorePathRefused(problem)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = OutboxLock(self.path)  # OutboxInUse: another agent has it
        try:
            conn = self._open_or_set_aside()
        except sqlite3.Error as err:
            self._lock.release()
            raise OutboxError(f"cannot open outbox {self.path}: {err}") from err
        except BaseException:
            self._lock.release()
            raise
        hooks = Participant(
            wants_transaction=self._wants_transaction, reconnect=self._reconnect,
            begin=self._begin, before_commit=self._before_commit, committed=self._committed,
            rolled_back=self._rolled_back, replacement=self._replacement, failed=self._failed)
        self._writer = Writer(conn, hooks, "outbox", log, (sqlite3.Error, SchemaError))
        self.heartbeat = self._writer.heartbeat  # the service watchdog's (watchdog.py)
        self._writer.start()

    # -- the connection and corrupt files -----------------------------------------------

    def _open_connection(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            try:
                refuse_foreign(conn)
            except ForeignDatabase as err:
                raise ForeignDatabase(f"{self.path} {err}") from err
            stamped = stamp_application_id(conn)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous.value}")
            self._conn_synchronous = self._synchronous
            conn.execute("PRAGMA busy_timeout=5000")
            ensure_schema(conn)
            if stamped:  # an older outbox's header: in the file itself, not only the WAL
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._retention.load(conn)
            self._row_id_high = max(self._row_id_high, corruption.last_row_id(conn))
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_or_set_aside(self) -> sqlite3.Connection:
        """Open the outbox; a corrupt one is set aside and a new one started."""
        try:
            return self._open_connection()
        except (sqlite3.DatabaseError, NotAnOutbox) as err:
            if not self._corrupt.may_replace(err):
                raise
            return self._start_over(err)

    def _start_over(self, err: BaseException) -> sqlite3.Connection:
        """A new file in place of the corrupt one (writer thread, or before it starts)."""
        conn = self._corrupt.start_over(err, self._open_connection, self._last_seqs,
                                        self._row_id_high, self._clock())
        self._row_id_high = max(self._row_id_high, corruption.last_row_id(conn))
        self._retention.load(conn)
        self._scans.clear()  # carried gap events wait as claimed messages
        return conn

    # -- the outbox's part in each transaction (writer thread; writer.Participant) -----

    def _wants_transaction(self) -> bool:
        """Retention is behind (retention.py): the next transaction drops the next share."""
        return self._retention.behind

    def _reconnect(self) -> sqlite3.Connection:
        """The connection was lost while replacing a corrupt file: open it again."""
        return self._open_or_set_aside()

    def _begin(self, conn: sqlite3.Connection, writes: bool) -> None:
        """A reload's new ``store.synchronous`` applies from the next transaction on."""
        self._apply_synchronous(conn)
        if writes:
            self._retention.begin()

    def _before_commit(self, conn: sqlite3.Connection) -> None:
        """Every write transaction also records the samples that could not be stored
        earlier and enforces retention (the reliability contract, loss window)."""
        self._txn_unstored = self._take_unstored()
        self._write_unstored_gaps(conn, self._txn_unstored)
        with self._unstored_lock:
            self._txn_alarms, self._unstored_alarms = self._unstored_alarms, []
        for event, at in self._txn_alarms:
            alarmrows.insert(conn, [event], at, late=True)
        self._retention.enforce(conn)
        self._txn_row_id_high = corruption.last_row_id(conn)

    def _committed(self) -> None:
        if self._txn_alarms:
            log.info("outbox: %d alarm event(s) that could not be stored earlier are "
                     "stored now and will be published", len(self._txn_alarms))
        self._last_seqs.update(self._txn_seqs)
        self._row_id_high = max(self._row_id_high, self._txn_row_id_high)
        self._end_transaction()

    def _rolled_back(self) -> None:
        with self._unstored_lock:
            self._unstored_alarms[:0] = self._txn_alarms
        if self._txn_routes is not None:
            self._routes = self._txn_routes
        self._restore_unstored(self._txn_unstored)
        self._scans.clear()  # a hint only; a rolled-back claim must not move it
        self._retention.rollback()
        self._retention.behind = False  # the next operation's transaction goes on
        self._end_transaction()

    def _end_transaction(self) -> None:
        self._txn_alarms = []
        self._txn_routes = None
        self._txn_seqs.clear()
        self._txn_unstored = {}
        self._txn_row_id_high = 0

    def _replacement(self, conn: sqlite3.Connection,
                     err: BaseException) -> sqlite3.Connection | None:
        """The open file turned out corrupt: a new one in its place. None if it was not
        corruption; ConnectionLost if no new file could be started (retried at the next
        transaction)."""
        if not self._corrupt.may_replace(err):
            return None
        with contextlib.suppress(sqlite3.Error):
            conn.close()
        try:
            return self._start_over(err)
        except (sqlite3.Error, OSError, NotAnOutbox) as exc:
            log.error("outbox %s: cannot start a new outbox after a corrupt one (%s); "
                      "retrying with the next write", self.path, exc)
            raise ConnectionLost from exc

    def _failed(self, conn: sqlite3.Connection | None, err: BaseException) -> Exception:
        """Recount rows after the rollback; every operation fails with OutboxError."""
        if conn is not None:
            try:
                self._retention.reload_after_rollback(conn)
            except sqlite3.Error:
                log.exception("outbox: cannot recount rows after a failed transaction")
        failure = OutboxError(self._failure_text(err))
        failure.__cause__ = err
        return failure

    def _failure_text(self, err: BaseException) -> str:
        """What a failed transaction tells the callers; a full disk says how full."""
        if (getattr(err, "sqlite_errorcode", 0) or 0) & 0xFF == sqlite3.SQLITE_FULL:
            with contextlib.suppress(OSError):
                free = shutil.disk_usage(self.path.parent).free
                return (f"outbox {self.path}: {err} ({free} bytes free on the file system "
                        f"of {self.path.parent}); nothing can be stored until space is freed")
        return f"outbox {self.path}: {err}"

    def _apply_synchronous(self, conn: sqlite3.Connection) -> None:
        """``store.synchronous`` changed by a reload; SQLite allows it between transactions."""
        if self._synchronous is not self._conn_synchronous:
            conn.execute(f"PRAGMA synchronous={self._synchronous.value}")
            self._conn_synchronous = self._synchronous

    def reconfigure(self, retention_limits: Retention, synchronous: Synchronous) -> None:
        """New retention limits and durability (a reload), from the next transaction on."""
        self._retention.limits = retention_limits
        self._synchronous = synchronous

    def _submit(self, run: Callable[[sqlite3.Connection], T], reads_only: bool = False) -> T:
        """Run ``run`` in the writer's next transaction and wait for its commit.
        ``reads_only``: ``run`` only reads (it then runs in a read transaction).

        No deadline: an operation that timed out here would still commit later, and the
        caller would have reported as failed what in fact succeeded.
        """
        try:
            return self._writer.submit(run, reads_only)
        except WriterClosed as err:
            raise OutboxError("outbox is closed") from err

    def _submit_read(self, run: Callable[[sqlite3.Connection], T], timeout_s: float) -> T:
        """Like ``_submit`` for an operation that writes nothing, with a deadline: giving
        up on a read misreports nothing, and a hung writer must not hang the caller."""
        try:
            return self._writer.submit_read(run, timeout_s)
        except WriterClosed as err:
            raise OutboxError("outbox is closed") from err
        except WriterNotAnswering as err:
            raise OutboxNotAnswering(str(err)) from err

    def run_transaction(self, run: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``run`` in one write transaction on the writer connection and wait for its
        commit: for a consumer that keeps its own tables beside the outbox (HJ 212
        statistics, hj212/statsstore.py) and must change them atomically with what it
        reads of the outbox. An exception in ``run`` rolls the transaction back."""
        return self._submit(run)

    def run_read(self, run: Callable[[sqlite3.Connection], T], timeout_s: float = 5.0) -> T:
        """Run ``run``, which only reads, in a read transaction (``OutboxNotAnswering``
        after ``timeout_s``)."""
        return self._submit_read(run, timeout_s)

    @property
    def writer_alive(self) -> bool:
        """False once the writer thread has ended (only ``close`` should end it)."""
        return self._writer.alive

    def close(self) -> None:
        """Finish queued writes, then close the database."""
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        self._lock.release()

    # -- appending ----------------------------------------------------------------------

    def append(self, sample: Sample, alarms: Sequence[AlarmEvent] = ()) -> Accepted:
        """Commit one sample, and the alarm events it caused in the same transaction
        (alarmrows.py); returns once it is durable. Raises OutboxError otherwise."""
        def run(conn: sqlite3.Connection) -> Accepted:
            accepted = self._insert_sample(conn, sample)
            if alarms:
                alarmrows.insert(conn, alarms, sample.acquired_at.timestamp())
            return accepted

        try:
            accepted = self._submit(run)
        except OutboxError as err:
            self._remember_unstored(sample)
            self._remember_unstored_alarms(alarms, sample.acquired_at.timestamp(), err)
            raise
        if self.on_append is not None:
            self.on_append()
        return accepted

    def append_nowait(self, sample: Sample) -> Future[Accepted]:
        """``append`` without the wait, for a sample with no alarm events: the sample is
        queued on the writer and the future holds ``Accepted`` once its transaction has
        committed, or raises OutboxError. A failed commit is counted and remembered as
        unstored as a failed ``append`` is (its ``store_error`` gap row goes with the next
        commit); the uplinks are woken after the commit. One caller's samples commit in
        the order it queues them. Raises OutboxError at once (counted as unstored) when
        the outbox is closed."""
        try:
            future = self._writer.submit_nowait(
                lambda conn: self._insert_sample(conn, sample))
        except WriterClosed as err:
            self._remember_unstored(sample)
            raise OutboxError("outbox is closed") from err

        def settled(done: Future[Accepted]) -> None:  # writer thread, after the transaction
            error = done.exception()
            if isinstance(error, OutboxError):
                self._remember_unstored(sample)
            elif error is None and self.on_append is not None:
                self.on_append()

        future.add_done_callback(settled)
        return future

    def _insert_sample(self, conn: sqlite3.Connection, sample: Sample) -> Accepted:
        row = conn.execute(
            "INSERT INTO device_seq (device_id, last_seq) VALUES (?, 1) "
            "ON CONFLICT (device_id) DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq",
            [sample.device_id],
        ).fetchone()
        seq = int(row[0])
        if sample.driver_state is not None:
            conn.execute("UPDATE device_seq SET driver_state = ? WHERE device_id = ?",
                         [sample.driver_state, sample.device_id])
        sample_id = uuid.uuid4().hex
        body = encode_sample_body(sample, seq, sample_id)
        cursor = conn.execute(
            "INSERT INTO outbox (kind, device_id, seq, entry_id, acquired_at, body) "
            "VALUES ('sample', ?, ?, ?, ?, ?)",
            [sample.device_id, seq, sample_id, sample.acquired_at.timestamp(), body],
        )
        self._retention.note_appended(1, sample.device_id)
        self._txn_seqs[sample.device_id] = seq
        return Accepted(int(cursor.lastrowid or 0), seq, sample_id)

    def append_alarms(self, events: Sequence[AlarmEvent]) -> None:
        """Commit alarm events that have no sample (a communication alarm): a transaction
        of their own. Raises OutboxError when it cannot commit."""
        if not events:
            return
        at = max(event.at for event in events).timestamp()
        try:
            self._submit(lambda conn: alarmrows.insert(conn, events, at))
        except OutboxError as err:
            self._remember_unstored_alarms(events, at, err)
            raise
        if self.on_append is not None:
            self.on_append()

    def alarm_state(self) -> list[AlarmEvent]:
        """The last event of every alarm (``AlarmEngine.restore`` at start), kept in
        ``alarm_state`` after the events' rows were delivered."""
        return self._submit(alarmrows.last_events, reads_only=True)

    def driver_state(self, device_id: str) -> str | None:
        """The ``driver_state`` committed with ``device_id``'s latest sample that had one."""

        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT driver_state FROM device_seq WHERE device_id = ?",
                               [device_id]).fetchone()
            return row[0] if row else None

        return self._submit(run, reads_only=True)

    def _remember_unstored(self, sample: Sample) -> None:
        at = sample.acquired_at.timestamp()
        with self._unstored_lock:
            self.unstored_total += 1
            pending = self._unstored.get(sample.device_id)
            if pending is None:
                self._unstored[sample.device_id] = retention.PendingGap(at, at, 1)
            else:
                pending.add(at)

    def _remember_unstored_alarms(self, events: Sequence[AlarmEvent], at: float,
                                  err: OutboxError) -> None:
        """Alarm events whose transaction failed: counted, logged when an episode begins,
        and kept for the next transaction that commits (module docstring)."""
        if not events:
            return
        with self._unstored_lock:
            first = not self._unstored_alarms
            self._unstored_alarms.extend((event, at) for event in events)
            self.alarm_events_not_stored_total += len(events)
        if first:
            log.error("alarm events not stored: %d event(s) (%s) could not be committed "
                      "(%s); they drive the local outputs now and are kept in memory to be "
                      "stored and published with the next write that commits (lost if the "
                      "agent stops first)", len(events),
                      ", ".join(event.id for event in events), err)

    def _alarm_counts(self) -> tuple[int, int]:
        """(events not stored this run, events waiting in memory to be stored)."""
        with self._unstored_lock:
            return self.alarm_events_not_stored_total, len(self._unstored_alarms)

    def _take_unstored(self) -> dict[str, retention.PendingGap]:
        """Samples that could not be stored earlier; put back if this transaction fails."""
        with self._unstored_lock:
            pending_gaps, self._unstored = self._unstored, {}
        return pending_gaps

    def _write_unstored_gaps(self, conn: sqlite3.Connection,
                             pending_gaps: dict[str, retention.PendingGap]) -> None:
        """Record samples that could not be stored earlier as gap events (no silent loss)."""
        for device_id, pending in pending_gaps.items():
            if retention.merge_gap(
                conn, device_id, pending.first_at, pending.last_at, pending.count,
                None, None, "store_error",
            ):
                self._retention.note_gap_added()

    def _restore_unstored(self, pending_gaps: dict[str, retention.PendingGap]) -> None:
        with self._unstored_lock:
            for device_id, pending in pending_gaps.items():
                current = self._unstored.setdefault(
                    device_id, retention.PendingGap(pending.first_at, pending.last_at, 0))
                current.first_at = min(current.first_at, pending.first_at)
                current.last_at = max(current.last_at, pending.last_at)
                current.count += pending.count

    # -- inspection ---------------------------------------------------------------------

    def stats(self) -> OutboxStats:
        """Current depth and counters (runs in the writer thread for a consistent view)."""
        def run(conn: sqlite3.Connection) -> OutboxStats:
            counts = dict(conn.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind"))
            oldest = conn.execute(
                "SELECT MIN(acquired_at) FROM outbox WHERE kind = 'sample'").fetchone()[0]
            meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN "
                                     "('dropped_total', 'corrupt_lost_total')"))
            samples, gaps = counts.get("sample", 0), counts.get("gap", 0)
            in_flight = self._in_flight_count()
            return OutboxStats(samples + gaps, samples, gaps, oldest,
                               int(meta["dropped_total"]), in_flight,
                               retention.bytes_in_use(conn), self.unstored_total,
                               tuple(self.set_aside), int(meta.get("corrupt_lost_total", 0)),
                               counts.get("alarm", 0), *self._alarm_counts())

        return self._submit(run, reads_only=True)

    def depth(self, timeout_s: float = 5.0) -> OutboxDepth:
        """Depth for metrics and status, cheap enough for every scrape (``stats`` scans
        the table). Raises OutboxError when the writer does not answer within
        ``timeout_s`` or the database fails."""
        def run(conn: sqlite3.Connection) -> OutboxDepth:
            oldest = conn.execute("SELECT acquired_at FROM outbox WHERE kind = 'sample' "
                                  "ORDER BY id LIMIT 1").fetchone()
            meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN "
                                     "('dropped_total', 'corrupt_lost_total')"))
            in_flight = self._in_flight_count()
            samples, gaps = self._retention.samples, self._retention.gaps
            (alarms,) = conn.execute(  # the partial index outbox_alarms: no table scan
                "SELECT COUNT(*) FROM outbox WHERE kind = 'alarm'").fetchone()
            return OutboxDepth(samples + gaps, samples, oldest[0] if oldest else None,
                               int(meta["dropped_total"]), in_flight,
                               retention.bytes_in_use(conn),
                               int(meta.get("corrupt_lost_total", 0)), alarms,
                               *self._alarm_counts())

        return self._submit_read(run, timeout_s)
