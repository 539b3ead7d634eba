"""CPU of one hand-over to the outbox's writer: ``Writer.submit`` of an operation that
does nothing, on a real SQLite file, answered in a read transaction (no fsync).

Run: ``.venv/bin/python bench/handover_cost.py [--submits 20000]``. Prints the CPU
(``time.process_time``: the caller's and the writer thread's, user and system) per
submit. It isolates what a sample's hand-over costs besides its SQL and commit (queueing,
the completion signal, the two thread switches), to measure a lever on that machinery
alone; ``profile_poll.py`` and ``python -m bench --only w1`` say whether it matters per
reading. Nothing here asserts a time (shared machines are noisy).
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import tempfile
import time
from pathlib import Path

from edge_agent.store.writer import Participant, Writer

WARM_UP = 1000


def _nothing(*_args: object) -> None:
    """A participant hook with nothing to add."""


def cpu_per_submit_us(submits: int) -> float:
    """Microseconds of process CPU per ``submit`` of a read-only no-op operation."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "handover.db", isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        hooks = Participant(
            wants_transaction=lambda: False, reconnect=lambda: conn, begin=_nothing,
            before_commit=_nothing, committed=_nothing, rolled_back=_nothing,
            replacement=lambda _conn, _err: None, failed=lambda _conn, err: Exception(err))
        writer = Writer(conn, hooks, "handover", logging.getLogger("bench.handover"))
        writer.start()
        try:
            for _ in range(WARM_UP):
                writer.submit(_nothing, reads_only=True)
            start = time.process_time()
            for _ in range(submits):
                writer.submit(_nothing, reads_only=True)
            return (time.process_time() - start) / submits * 1e6
        finally:
            writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submits", type=int, default=20_000)
    args = parser.parse_args()
    print(f"{cpu_per_submit_us(args.submits):.1f} us CPU per submit "
          f"(caller and writer thread, {args.submits} submits)")


if __name__ == "__main__":
    main()
