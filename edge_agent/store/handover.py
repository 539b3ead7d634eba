"""A forwarder's standing claim: live messages handed over by the transaction that stored them.

Issue 11's profiles found each live sample costing three write transactions at W1: its
append, the forwarder's claim after it, and the acknowledgement. A forwarder that is
caught up (its last claim found fewer messages than its window had room for) leaves a
``ClaimOffer`` with the outbox instead of claiming again: the next write transaction
that adds outbox rows (an append, an alarm, a gap) claims for it, with the same rules
as ``claims.claim``, before ``COMMIT``, and the claimed messages are handed to the
forwarder once that transaction has committed, before the appending caller is answered.
Acknowledgements of a caught-up forwarder wait for the next write transaction too
(``Delivery.ack_later``), at most ``ACK_DELAY_S``. So a live sample costs one commit.

Rules that keep the contract (store/outbox.py, store/claims.py):

* An offer is used once. The forwarder offers again after it has published what was
  handed over, or claims itself when the hand-over filled what it asked for (more may
  be waiting).
* A hand-over is made only while the offer stands, checked under the outbox's in-flight
  lock when the transaction has committed: a forwarder that withdrew its offer (its
  session ended) never receives messages it can no longer publish. Messages claimed for
  a withdrawn offer stay claimed and unacknowledged in the outbox, so the forwarder's
  next claim offers them again with the same id and rows.
* A claim for an offer that fails (an unexpected error) is rolled back to its own
  savepoint and the offer dropped: the samples of that transaction are stored all the
  same, and the forwarder claims for itself at its next turn.
* An acknowledgement waiting to be applied is never offered again: claims skip it as if
  it were in flight, also after the session that sent it ended. If the process dies
  before it is applied, the message is sent again after the restart (a duplicate with the
  same id, never a loss).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.store.claims import Claimed

#: How long an acknowledgement may wait for a write transaction to ride on (s): short
#: enough that the outbox's depth follows deliveries closely, long enough that at any
#: live rate (samples every second or faster) the next append takes it along.
ACK_DELAY_S = 0.25


@dataclass
class ClaimOffer:
    """What a caught-up uplink asks the next row-adding transaction to claim for it.

    ``wanted``: free places of its window (``Delivery.widen_offer`` adds acknowledged
    ones while the offer stands); ``seen_row_id``: the highest outbox row id its last
    claim saw, so only a transaction that added rows claims; ``live_cutoff``: called in
    that transaction, the acquisition time before which live rows move to the backlog;
    ``deliver``: called in the writer thread with the committed ``Claimed`` and the
    ``wanted`` it was claimed for, under the outbox's in-flight lock: it must only queue
    them and wake the uplink."""

    uplink: str
    boundary: int
    wanted: int
    max_entries: int
    max_body_bytes: int
    seen_row_id: int
    live_cutoff: Callable[[], float]
    deliver: Callable[[Claimed, int], None]


@dataclass(frozen=True)
class HandOver:
    """A claim made for ``offer`` in the open transaction, delivered after its commit."""

    offer: ClaimOffer
    claimed: Claimed
    wanted: int
