"""Hand a sample to the outbox without waiting for its commit (issue 11, sustained rate).

``Outbox.append`` returns once the sample's transaction has committed, so a link's poller
that calls it waits one commit (an fsync, plus whatever transaction is ahead of it) per
poll. ``append_nowait`` queues the same operation on the outbox's writer and returns a
future at once; the caller polls its next device meanwhile and reads the future later.

Everything the contract says of ``append`` holds for the future (docs/architecture.md):

* The future holds ``Accepted`` (row id, sequence number, sample id) only once the
  transaction holding the sample has committed. Until then the sample is not accepted:
  the forwarder reads committed rows only, and nobody is told a sequence number.
* A sample whose transaction fails is counted and remembered as unstored exactly as a
  failed ``append`` is (the outbox writes its ``store_error`` gap row with the next
  commit), and the future raises ``OutboxError``.
* The forwarder is woken after the commit, as ``append`` wakes it.
* One caller's samples are queued in the order it hands them over, and the writer runs
  its queue in order, so a device's sequence numbers follow acquisition order.

Why a module of its own: this is an ``Outbox`` method in all but name (it uses the
outbox's writer and its sample insert), kept outside edge_agent/store/ while that
package was being reworked for fewer transactions per sample. Moving it into
``Outbox`` (and a ``submit_nowait`` into ``Writer``) changes no caller.
"""

from __future__ import annotations

from concurrent.futures import Future

from edge_agent.model import Sample
from edge_agent.store.outbox import Accepted, Outbox, OutboxError
from edge_agent.store.writer import WriterClosed, _Op


def can_append_nowait(outbox: object) -> bool:
    """Whether ``outbox`` is a real outbox (a test's stand-in only knows ``append``)."""
    return isinstance(outbox, Outbox)


def append_nowait(outbox: Outbox, sample: Sample) -> Future[Accepted]:
    """Queue ``sample``'s append on ``outbox``'s writer and return at once (module
    docstring). Raises OutboxError at once, counted as unstored, when the outbox is
    closed."""
    writer = outbox._writer
    if writer._closed.is_set():
        outbox._remember_unstored(sample)
        raise OutboxError("outbox is closed") from WriterClosed("outbox is closed")
    future: Future[Accepted] = Future()

    def done(settled: Future[Accepted]) -> None:  # writer thread, after commit or rollback
        error = settled.exception()
        if isinstance(error, OutboxError):
            outbox._remember_unstored(sample)
        elif error is None and outbox.on_append is not None:
            outbox.on_append()

    future.add_done_callback(done)
    writer._ops.put(_Op(lambda conn: outbox._insert_sample(conn, sample), future))
    return future
