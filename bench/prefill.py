"""A backlog in the agent's outbox, written through its own API (``Outbox.append``).

Only the public store API is used, never SQL: the outbox's schema changes under other
work, and the backlog must be the one the agent itself would have stored. Appends come
from many threads at once so the outbox's writer commits them in groups, and the outbox
is opened with ``synchronous=NORMAL`` (this is setup, not a measured figure).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from bench.spec import UNIT, tag_name
from edge_agent.config.schema import Retention, Synchronous
from edge_agent.model import Quality, Reading, Sample
from edge_agent.store.outbox import Outbox

THREADS = 64


def agent_backlog(db: Path, samples: int, readings: int, device: str,
                  acquired_at: float) -> float:
    """Append ``samples`` samples of ``readings`` readings for ``device``, stamped
    ``acquired_at`` (older than the live window: a backlog). Returns seconds taken."""
    moment = datetime.fromtimestamp(acquired_at, UTC)
    sample = Sample(device, moment, tuple(
        Reading(device, tag_name(i), 1.0 + i * 0.25, UNIT, Quality.GOOD, moment)
        for i in range(readings)))
    started = time.monotonic()
    outbox = Outbox(db, Retention(max_rows=None, max_bytes=None, max_age_s=None),
                    Synchronous.NORMAL)
    try:
        per_thread, extra = divmod(samples, THREADS)

        def append(count: int) -> None:
            for _ in range(count):
                outbox.append(sample)

        with ThreadPoolExecutor(THREADS) as pool:
            for result in [pool.submit(append, per_thread + (1 if n < extra else 0))
                           for n in range(THREADS)]:
                result.result()
    finally:
        outbox.close()
    return time.monotonic() - started
