"""The transaction engine's invariants (edge_agent/store/writer.py), on real SQLite files.

The participant here is a minimal real owner that records what the engine asked of it;
nothing of sqlite3 or the engine is replaced.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.store.writer import (
    ConnectionLost,
    Participant,
    Writer,
    WriterClosed,
    WriterNotAnswering,
)
from edge_agent.watchdog import WRITER_BOUND_S, Heartbeat
from tests.support.waiting import wait_until

log = logging.getLogger("tests.writer")


class BatchFailed(Exception):
    """What the participant gives every operation of a failed batch."""


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")
    return conn


class Owner:
    """Counts the engine's calls; optional behaviours are switched on by the tests."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.begins: list[bool] = []  # ``writes`` of each transaction begun
        self.before_commits = 0
        self.commits = 0
        self.rollbacks = 0
        self.failed_with: list[sqlite3.Connection | None] = []
        self.extra_transactions = 0  # how many empty write transactions to ask for
        self.replace_with: Callable[[], sqlite3.Connection] | None = None
        self.replacements = 0
        self.lose_connection = False
        self.reconnects = 0
        self.before_commit_error: Exception | None = None

    def hooks(self) -> Participant:
        return Participant(self.wants_transaction, self.reconnect, self.begin,
                           self.before_commit, self.committed, self.rolled_back,
                           self.replacement, self.failed)

    def wants_transaction(self) -> bool:
        if self.extra_transactions:
            self.extra_transactions -= 1
            return True
        return False

    def reconnect(self) -> sqlite3.Connection:
        self.reconnects += 1
        return connect(self.path)

    def begin(self, conn: sqlite3.Connection, writes: bool) -> None:
        self.begins.append(writes)

    def before_commit(self, conn: sqlite3.Connection) -> None:
        self.before_commits += 1
        if self.before_commit_error is not None:
            raise self.before_commit_error

    def committed(self) -> None:
        self.commits += 1

    def rolled_back(self) -> None:
        self.rollbacks += 1

    def replacement(self, conn: sqlite3.Connection,
                    err: BaseException) -> sqlite3.Connection | None:
        self.replacements += 1
        if self.lose_connection:
            conn.close()
            raise ConnectionLost
        if self.replace_with is None:
            return None
        conn.close()
        return self.replace_with()

    def failed(self, conn: sqlite3.Connection | None, err: BaseException) -> Exception:
        self.failed_with.append(conn)
        return BatchFailed(str(err))


@pytest.fixture
def owner(tmp_path: Path) -> Owner:
    return Owner(tmp_path / "engine.db")


@pytest.fixture
def writer(owner: Owner) -> Iterator[Writer]:
    engine = Writer(connect(owner.path), owner.hooks(), "test", log, max_ops=512)
    engine.start()
    yield engine
    engine.close()


def insert(value: str) -> Callable[[sqlite3.Connection], int]:
    return lambda conn: int(conn.execute("INSERT INTO t (v) VALUES (?)", [value]).lastrowid or 0)


def committed_values(path: Path) -> list[str]:
    """What another connection sees: only what has committed."""
    other = sqlite3.connect(path)
    try:
        return [v for (v,) in other.execute("SELECT v FROM t ORDER BY rowid")]
    finally:
        other.close()


class Held:
    """Holds the writer inside a transaction until released, so others queue behind."""

    def __init__(self, writer: Writer) -> None:
        self.inside, self.gate = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=writer.submit, args=(self._hold,), daemon=True)
        self.thread.start()
        assert self.inside.wait(10), "the writer did not start the holding operation"

    def _hold(self, conn: sqlite3.Connection) -> None:
        self.inside.set()
        self.gate.wait(60)

    def release(self) -> None:
        self.gate.set()
        self.thread.join(10)


class Calls:
    """Submissions made from threads; their results or errors, in submission order."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.results: dict[int, Any] = {}
        self.threads: list[threading.Thread] = []

    def submit(self, run: Callable[[sqlite3.Connection], Any], reads_only: bool = False) -> int:
        index = len(self.threads)

        def call() -> None:
            try:
                self.results[index] = self.writer.submit(run, reads_only)
            except Exception as err:  # the test inspects it
                self.results[index] = err

        before = self.writer._ops.qsize()
        thread = threading.Thread(target=call, daemon=True)
        self.threads.append(thread)
        thread.start()
        wait_until(lambda: self.writer._ops.qsize() > before, 10, "the operation to queue")
        return index

    def join(self) -> dict[int, Any]:
        for thread in self.threads:
            thread.join(10)
        return self.results


def test_operations_queued_during_a_transaction_commit_together_in_the_next(writer, owner):
    held = Held(writer)
    calls = Calls(writer)
    for n in range(5):
        calls.submit(insert(f"v{n}"))
    held.release()
    results = calls.join()
    assert all(isinstance(value, int) for value in results.values())
    # The holding transaction, then one transaction for all five.
    assert owner.commits == 2 and owner.begins == [True, True]
    assert committed_values(owner.path) == [f"v{n}" for n in range(5)]


def test_a_batch_holds_at_most_max_ops_operations(owner):
    writer = Writer(connect(owner.path), owner.hooks(), "test", log, max_ops=2)
    writer.start()
    try:
        held = Held(writer)
        calls = Calls(writer)
        for n in range(5):
            calls.submit(insert(f"v{n}"))
        held.release()
        calls.join()
        assert owner.commits == 1 + 3  # the holder, then 2 + 2 + 1
    finally:
        writer.close()


def test_submit_returns_only_once_another_connection_sees_the_commit(writer, owner):
    for n in range(3):
        writer.submit(insert(f"v{n}"))
        assert committed_values(owner.path) == [f"v{m}" for m in range(n + 1)]


def test_submit_nowait_returns_at_once_and_its_future_holds_the_value_after_the_commit(
        writer, owner):
    held = Held(writer)
    futures = [writer.submit_nowait(insert(f"v{n}")) for n in range(3)]
    assert not any(future.done() for future in futures)  # queued behind the holder
    assert committed_values(owner.path) == []
    held.release()
    values = [future.result(timeout=10) for future in futures]
    assert all(isinstance(value, int) for value in values)
    assert committed_values(owner.path) == ["v0", "v1", "v2"]  # in the order queued
    bad = writer.submit_nowait(lambda conn: conn.execute("INSERT INTO nowhere VALUES (1)"))
    with pytest.raises(BatchFailed):
        bad.result(timeout=10)


def test_reads_run_after_the_writes_in_a_read_transaction_without_write_hooks(writer, owner):
    held = Held(writer)
    calls = Calls(writer)
    read = calls.submit(lambda conn: [v for (v,) in conn.execute("SELECT v FROM t")],
                        reads_only=True)
    calls.submit(insert("written"))
    held.release()
    results = calls.join()
    assert results[read] == ["written"], "the read ran after the write of its batch"
    assert owner.begins == [True, True, False]
    assert owner.before_commits == 2, "a read transaction runs no write hook"


def test_reads_still_answer_while_writes_cannot_commit(writer, owner):
    pages = writer.submit(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
    writer.submit(lambda conn: conn.execute(f"PRAGMA max_page_count={pages}"))
    with pytest.raises(BatchFailed, match="full"):
        writer.submit(insert("x" * 100_000))
    assert writer.submit(lambda conn: conn.execute("SELECT COUNT(*) FROM t").fetchone()[0],
                         reads_only=True) == 0
    assert writer.submit_read(lambda conn: 42, timeout_s=10) == 42


def test_an_operation_raising_fails_alone_and_the_rest_of_its_batch_commits(writer, owner):
    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (v) VALUES ('from the bad one')")
        raise ValueError("bad operation")

    held = Held(writer)
    calls = Calls(writer)
    first = calls.submit(insert("first"))
    broken = calls.submit(bad)
    last = calls.submit(insert("last"))
    held.release()
    results = calls.join()
    assert isinstance(results[broken], ValueError)
    assert isinstance(results[first], int) and isinstance(results[last], int)
    assert committed_values(owner.path) == ["first", "last"]


def test_a_bad_operation_reruns_its_batch_with_savepoints_after_a_rollback(writer, owner):
    """Operations run without savepoints; the first bad one rolls the transaction back
    (the owner is told, to undo its operations' memory) and the batch runs once more,
    each operation in a savepoint: the good ones run twice and commit once."""
    runs: list[str] = []

    def good(conn: sqlite3.Connection) -> None:
        runs.append("good")
        conn.execute("INSERT INTO t (v) VALUES ('good')")

    def bad(conn: sqlite3.Connection) -> None:
        runs.append("bad")
        raise ValueError("bad operation")

    held = Held(writer)
    calls = Calls(writer)
    calls.submit(good)
    calls.submit(bad)
    held.release()
    calls.join()
    assert runs == ["good", "bad", "good", "bad"]
    assert (owner.rollbacks, owner.commits) == (1, 2)  # the Held op's commit, then ours
    assert committed_values(owner.path) == ["good"]


def test_a_sqlite_error_fails_every_operation_of_the_batch_and_commits_none(writer, owner):
    held = Held(writer)
    calls = Calls(writer)
    first = calls.submit(insert("first"))
    broken = calls.submit(lambda conn: conn.execute("INSERT INTO missing VALUES (1)"))
    held.release()
    results = calls.join()
    assert isinstance(results[first], BatchFailed)
    assert isinstance(results[broken], BatchFailed)
    assert committed_values(owner.path) == []
    assert owner.rollbacks == 1 and owner.commits == 1  # only the holder committed
    assert owner.failed_with == [writer.conn], "failed() may reconcile with the connection"


def test_an_error_in_a_hook_fails_the_batch_and_is_logged_as_a_bug(writer, owner, caplog):
    owner.before_commit_error = RuntimeError("hook bug")
    with caplog.at_level(logging.ERROR, logger="tests.writer"), \
            pytest.raises(BatchFailed, match="hook bug"):
        writer.submit(insert("never"))
    assert "unexpected error in a transaction" in caplog.text
    owner.before_commit_error = None
    writer.submit(insert("after"))
    assert committed_values(owner.path) == ["after"]


def test_a_replacement_connection_gets_the_batch_once(writer, owner, tmp_path):
    other = tmp_path / "replacement.db"
    prepared = connect(other)
    prepared.execute("CREATE TABLE only_here (v)")
    prepared.close()
    owner.replace_with = lambda: connect(other)
    writer.submit(lambda conn: conn.execute("INSERT INTO only_here VALUES (1)"))
    assert owner.replacements == 1
    assert writer.conn.execute("SELECT COUNT(*) FROM only_here").fetchone()[0] == 1
    # Failing again on the replacement: no second retry.
    with pytest.raises(BatchFailed):
        writer.submit(lambda conn: conn.execute("INSERT INTO nowhere VALUES (1)"))
    assert owner.replacements == 2  # one per batch, the retry itself asks for none


def test_a_lost_connection_fails_the_batch_and_is_reopened_for_the_next(writer, owner):
    owner.lose_connection = True
    with pytest.raises(BatchFailed):
        writer.submit(lambda conn: conn.execute("INSERT INTO missing VALUES (1)"))
    assert owner.failed_with == [None], "a lost connection is not reconciled with"
    owner.lose_connection = False
    writer.submit(insert("on the new connection"))
    assert owner.reconnects == 1
    assert committed_values(owner.path) == ["on the new connection"]


def test_a_read_gives_up_at_its_deadline_while_the_writer_is_held(writer, owner):
    held = Held(writer)
    try:
        with pytest.raises(WriterNotAnswering, match="test writer did not answer"):
            writer.submit_read(lambda conn: 1, timeout_s=0.01)
    finally:
        held.release()
    assert writer.submit_read(lambda conn: 2, timeout_s=10) == 2


def test_the_owner_can_ask_for_a_transaction_with_nothing_queued(owner):
    owner.extra_transactions = 2
    writer = Writer(connect(owner.path), owner.hooks(), "test", log)
    writer.start()  # nothing is ever submitted
    try:
        wait_until(lambda: owner.commits == 2, 10, "the owner's two empty transactions")
        assert owner.begins == [True, True], "write transactions, with the write hooks"
        assert owner.before_commits == 2
    finally:
        writer.close()


def test_the_heartbeat_is_idle_while_waiting_and_bound_during_a_transaction(writer, owner):
    writer.submit(insert("bind"))
    wait_until(lambda: writer.heartbeat.stuck(time.monotonic() + 3600) is None, 10,
               "the writer to wait for work, unable to be late")
    held = Held(writer)
    try:
        assert writer.heartbeat.stuck(time.monotonic() + WRITER_BOUND_S + 1) is not None
    finally:
        held.release()


def test_a_watched_worker_waiting_in_submit_is_not_late_meanwhile(writer, owner):
    now = [0.0]
    worker_heartbeat = Heartbeat("worker", lambda: now[0])
    held = Held(writer)
    outcome: list[int] = []

    def worker() -> None:
        worker_heartbeat.beat(1.0)
        outcome.append(writer.submit(insert("from the worker")))

    thread = threading.Thread(target=worker, daemon=True)
    try:
        thread.start()
        now[0] = 3600.0  # far past the worker's promise, had it not been waiting
        wait_until(lambda: worker_heartbeat.stuck(now[0]) is None, 10,
                   "the worker to wait for the writer, paused")
        assert not outcome, "the worker is still waiting"
    finally:
        held.release()
    thread.join(10)
    assert outcome


def test_close_runs_what_was_queued_truncates_the_log_and_refuses_more(owner):
    writer = Writer(connect(owner.path), owner.hooks(), "test", log)
    writer.start()
    held = Held(writer)
    calls = Calls(writer)
    for n in range(3):
        calls.submit(insert(f"v{n}"))
    closer = threading.Thread(target=writer.close)
    closer.start()
    held.release()
    closer.join(10)
    assert all(isinstance(value, int) for value in calls.join().values())
    assert committed_values(owner.path) == ["v0", "v1", "v2"]
    assert not writer.alive
    wal = owner.path.with_name(owner.path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    with pytest.raises(WriterClosed):
        writer.submit(insert("late"))
    with pytest.raises(WriterClosed):
        writer.submit_read(lambda conn: 1, timeout_s=1)


class CloseWhileQueueing:
    """The writer's queue, with ``close`` run from another thread at the moment a caller
    has found the engine open and is about to queue its operation: the race of a poller
    that missed its stop deadline handing a sample over while the agent closes the outbox.
    ``close`` is given up to 3 s to get through; an engine that makes it wait for the
    caller (the fix) is then let go on, so the bound only decides whether the race is
    exercised, never the assertions."""

    def __init__(self, writer: Writer) -> None:
        self._queue = writer._ops
        self.closer = threading.Thread(target=writer.close, daemon=True)

    def put(self, item: Any) -> None:
        if item is not None and self.closer.ident is None:  # the first operation only
            self.closer.start()
            self.closer.join(3)
        self._queue.put(item)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)


@pytest.mark.parametrize("call", ["submit_nowait", "submit"])
def test_an_operation_racing_close_is_run_or_refused_never_left_unanswered(owner, call):
    writer = Writer(connect(owner.path), owner.hooks(), "test", log)
    writer.start()
    race = CloseWhileQueueing(writer)
    writer._ops = race  # type: ignore[assignment]
    if call == "submit_nowait":
        future = writer.submit_nowait(insert("racing"))
        race.closer.join(10)
        assert future.done(), "queued after close's end marker: its caller would hang"
        assert isinstance(future.result(), int)
    else:
        result: dict[str, Any] = {}
        caller = threading.Thread(
            target=lambda: result.setdefault("value", writer.submit(insert("racing"))),
            daemon=True)
        caller.start()
        wait_until(lambda: race.closer.ident is not None, 10, "the caller to queue")
        race.closer.join(10)
        caller.join(10)
        assert not caller.is_alive(), "submit queued after close's end marker hangs"
        assert isinstance(result["value"], int)
    assert committed_values(owner.path) == ["racing"]
    assert not writer.alive
