"""A single-writer, group-commit transaction engine over one SQLite connection.

The outbox (outbox.py) says what a sample's life is; this module says how its operations
reach the file. It knows nothing of samples: an operation is a function of the
connection, and the owner adds what every transaction must carry through ``Participant``.

Invariants (each has a test in tests/test_writer.py, on a real SQLite file):

* **One writer.** Every operation runs in the one writer thread, on the one connection;
  callers never touch the connection. So no two transactions ever overlap and SQLite's
  own locking never decides an order.
* **Group commit.** Operations that queue while a transaction runs are committed together
  in the next one (at most ``max_ops`` each), so throughput does not fall to one fsync
  per operation. Write operations share a ``BEGIN IMMEDIATE`` transaction; operations
  that only read run after them in a read transaction (``BEGIN``) of their own, which
  writes nothing and so still answers when writes cannot commit (a full disk).
* **Committed means returned.** ``submit`` returns an operation's value only after the
  transaction holding it has committed; its caller never learns of success earlier.
  ``submit_nowait`` returns a future at once, which holds the value only then.
* **One bad operation fails alone.** An operation that raises an exception that is not a
  ``sqlite3.Error`` is rolled back and that exception is its caller's; the others of the
  batch commit. Operations run without a savepoint each (two statements per operation
  saved, issue 11); when one raises, the transaction is rolled back (``rolled_back``
  undoes the in-memory effects of its operations too) and the batch runs again with a
  savepoint per operation, where the bad one is rolled back to its savepoint alone.
* **A failed transaction fails every operation in it.** A ``sqlite3.Error`` (disk full,
  I/O error, corruption), or an error in the owner's hooks, rolls the whole transaction
  back; unless the owner supplies a replacement connection (``Participant.replacement``,
  at most one retry per batch), every operation of the batch gets the exception
  ``Participant.failed`` returns. Nothing of the batch is committed.
* **No deadline on writes, a deadline on reads.** ``submit`` waits as long as the commit
  takes: a write that timed out for its caller would still commit later, and the caller
  would report as failed what succeeded. ``submit_read`` gives up after its timeout
  (``WriterNotAnswering``): giving up on a read misreports nothing, and a hung writer must
  not hang its reader.
* **Watched.** The writer beats its ``heartbeat`` with ``WRITER_BOUND_S`` before each
  batch and is idle while the queue is empty (watchdog.py); a watched worker waiting in
  ``submit`` does not count the wait against its own promise.
* **Close drains.** ``close`` runs every operation queued before it, then checkpoints the
  write-ahead log (TRUNCATE) and closes the connection. After ``close``, ``submit``,
  ``submit_nowait`` and ``submit_read`` raise ``WriterClosed``. Every operation is either
  queued before close's end marker (and so runs) or refused: a caller racing ``close``
  (a poller that missed its stop deadline) is never left waiting on a future nobody
  answers.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import Any, TypeVar

from edge_agent.watchdog import WRITER_BOUND_S, Heartbeat, waiting_for_watched_worker

T = TypeVar("T")
MAX_OPS_PER_TRANSACTION = 512


class WriterClosed(Exception):
    """The engine is closed: nothing more is run."""


class WriterNotAnswering(Exception):
    """The writer thread did not run a read within its deadline (hung, or stuck in a very
    long transaction)."""


class _BadOperation(Exception):
    """An operation raised (not a sqlite3.Error) in a batch run without savepoints."""


class ConnectionLost(Exception):
    """Raised by ``Participant.replacement`` when it closed the connection and could not
    open a new one: the engine calls ``Participant.reconnect`` before the next
    transaction."""


@dataclass(frozen=True)
class Participant:
    """What the engine's owner adds to every transaction. Every hook runs in the writer
    thread, so owner state that only hooks touch needs no lock."""

    #: True to run a (write) transaction even with no operation queued: work of the
    #: owner's own is left over (the outbox's retention running behind).
    wants_transaction: Callable[[], bool]
    #: A new connection after ``ConnectionLost``; may raise (the batch then fails).
    reconnect: Callable[[], sqlite3.Connection]
    #: Before ``BEGIN``, between transactions (PRAGMAs that need no transaction);
    #: ``writes`` says whether a write transaction follows.
    begin: Callable[[sqlite3.Connection, bool], None]
    #: In a write transaction, after its operations and before ``COMMIT``.
    before_commit: Callable[[sqlite3.Connection], None]
    #: The transaction committed (before any caller is answered).
    committed: Callable[[], None]
    #: The transaction rolled back: undo the in-memory effects of its hooks and of its
    #: operations (a batch may run again, see "One bad operation fails alone").
    rolled_back: Callable[[], None]
    #: A connection to retry the rolled-back batch on (the file was replaced), or None to
    #: fail the batch; raises ``ConnectionLost`` if it closed the connection and could not
    #: make a new one.
    replacement: Callable[[sqlite3.Connection, BaseException], sqlite3.Connection | None]
    #: The batch failed for good: reconcile with what the connection has committed (None:
    #: the connection is lost) and return the exception every operation gets.
    failed: Callable[[sqlite3.Connection | None, BaseException], Exception]


@dataclass
class _Op:
    run: Callable[[sqlite3.Connection], Any]
    future: Future
    reads_only: bool = False  # runs in a read transaction, after the writes


class Writer:
    """The writer thread, its queue and its connection (see the module docstring)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        participant: Participant,
        name: str,
        logger: logging.Logger,
        expected_errors: tuple[type[BaseException], ...] = (sqlite3.Error,),
        max_ops: int = MAX_OPS_PER_TRANSACTION,
    ) -> None:
        """``conn``: opened with ``isolation_level=None`` (the engine writes ``BEGIN`` and
        ``COMMIT``) and ``check_same_thread=False``. ``name`` names the thread
        (``<name>-writer``) and the messages; ``expected_errors`` end a transaction
        without a traceback in the log (anything else is logged as a bug)."""
        self.conn = conn
        self._participant = participant
        self._name = name
        self._log = logger
        self._expected = expected_errors
        self._max_ops = max_ops
        self._lost = False  # set by ConnectionLost, cleared by a successful reconnect
        self._ops: SimpleQueue[_Op | None] = SimpleQueue()
        self._closed = threading.Event()
        # Held to queue an operation and to mark the engine closed: see "Close drains".
        self._gate = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"{name}-writer", daemon=True)
        self.heartbeat = Heartbeat(self._thread.name)  # the service watchdog's (watchdog.py)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        """False once the writer thread has ended (only ``close`` should end it)."""
        return self._thread.is_alive()

    # -- callers' side --------------------------------------------------------------------

    def submit(self, run: Callable[[sqlite3.Connection], T], reads_only: bool = False) -> T:
        """Run ``run`` in the writer's next transaction and return its value once that
        has committed; raises what ``run`` raised or the batch's failure. ``reads_only``:
        ``run`` only reads (it then runs in a read transaction). No deadline (see the
        module docstring)."""
        op = _Op(run, Future(), reads_only)
        self._queue(op)
        with waiting_for_watched_worker():  # the writer's own heartbeat covers this wait
            return op.future.result()

    def submit_nowait(self, run: Callable[[sqlite3.Connection], T]) -> Future[T]:
        """Queue ``run`` like ``submit`` and return its future at once: it holds
        ``run``'s value only once the transaction holding it has committed ("Committed
        means returned" holds for the future), else the exception ``submit`` raises."""
        op: _Op = _Op(run, Future())
        self._queue(op)
        return op.future

    def submit_read(self, run: Callable[[sqlite3.Connection], T], timeout_s: float) -> T:
        """Like ``submit`` for an operation that writes nothing, with a deadline."""
        op = _Op(run, Future(), reads_only=True)
        self._queue(op)
        try:
            return op.future.result(timeout=timeout_s)
        except TimeoutError as err:
            raise WriterNotAnswering(
                f"{self._name} writer did not answer within {timeout_s:g} s") from err

    def close(self) -> None:
        """Run what is queued, stop the thread, checkpoint and close the connection."""
        with self._gate:
            if self._closed.is_set():
                return
            self._closed.set()
            self._ops.put(None)
        self._thread.join()
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as err:
            self._log.warning("%s checkpoint on close failed: %s", self._name, err)
        self.conn.close()

    def _queue(self, op: _Op) -> None:
        """Queue ``op``, or raise WriterClosed. Checking and queueing under the gate
        ``close`` holds to queue its end marker: an operation queued after the marker
        would never run, and its caller would wait on its future forever."""
        with self._gate:
            if self._closed.is_set():
                raise WriterClosed(f"{self._name} is closed")
            self._ops.put(op)

    # -- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self.heartbeat.idle()
            first = self._next_op()
            if first is None:
                return
            self.heartbeat.beat(WRITER_BOUND_S)
            batch = [first]
            while len(batch) < self._max_ops:
                try:
                    nxt = self._ops.get_nowait()
                except Empty:
                    break
                if nxt is None:
                    self._ops.put(None)
                    break
                batch.append(nxt)
            writes = [op for op in batch if not op.reads_only]
            reads = [op for op in batch if op.reads_only]
            if writes:
                self._transaction(writes)
            if reads:
                self._transaction(reads, writes=False)

    def _next_op(self) -> _Op | None:
        """The next queued operation; when the owner wants a transaction and none is
        queued, an empty write operation."""
        if self._participant.wants_transaction():
            try:
                return self._ops.get_nowait()
            except Empty:
                return _Op(lambda conn: None, Future())
        return self._ops.get()

    def _transaction(self, batch: list[_Op], retry: bool = True, writes: bool = True,
                     savepoints: bool = False) -> None:
        """Run ``batch`` in one transaction and answer its callers."""
        results: list[tuple[_Op, Any, BaseException | None]] = []
        try:
            if self._lost:
                self.conn = self._participant.reconnect()
                self._lost = False
            self._participant.begin(self.conn, writes)
            self.conn.execute("BEGIN IMMEDIATE" if writes else "BEGIN")
            for index, op in enumerate(batch):
                if not savepoints:
                    try:
                        results.append((op, op.run(self.conn), None))
                    except sqlite3.Error:
                        raise
                    except Exception as err:
                        raise _BadOperation from err
                    continue
                savepoint = f"op{index}"
                self.conn.execute(f"SAVEPOINT {savepoint}")
                try:
                    results.append((op, op.run(self.conn), None))
                    self.conn.execute(f"RELEASE {savepoint}")
                except sqlite3.Error:
                    raise
                except Exception as err:  # a bad op fails alone, the rest commit
                    self.conn.execute(f"ROLLBACK TO {savepoint}")
                    self.conn.execute(f"RELEASE {savepoint}")
                    results.append((op, None, err))
            if writes:
                self._participant.before_commit(self.conn)
            self.conn.execute("COMMIT")
        except _BadOperation:  # again, with a savepoint per operation
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            self._participant.rolled_back()
            self._transaction(batch, retry, writes, savepoints=True)
            return
        except Exception as err:  # sqlite3.Error, or a bug: either way nothing committed
            self._abort(batch, err, retry, writes)
            return
        self._participant.committed()
        for op, value, error in results:
            if error is not None:
                op.future.set_exception(error)
            else:
                op.future.set_result(value)

    def _abort(self, batch: list[_Op], err: Exception, retry: bool, writes: bool) -> None:
        """Nothing committed: retry once on a replacement connection, else fail ``batch``."""
        if not isinstance(err, self._expected):
            self._log.exception("%s: unexpected error in a transaction; rolled back",
                                self._name)
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("ROLLBACK")
        self._participant.rolled_back()
        if retry:
            try:
                replacement = self._participant.replacement(self.conn, err)
            except ConnectionLost:
                self._lost, replacement = True, None
            if replacement is not None:
                self.conn = replacement
                self._transaction(batch, retry=False, writes=writes)
                return
        failure = self._participant.failed(None if self._lost else self.conn, err)
        for op in batch:
            op.future.set_exception(failure)
