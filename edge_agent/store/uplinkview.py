"""One uplink's view of the outbox: what an uplink kind (forward/uplink.py) works with.

An uplink claims messages, publishes them its own way, and reports each outcome here:
acknowledged (``ack_many``), impossible to deliver (``set_aside_unpublishable``), or not
delivered after all (``forget_in_flight`` for messages it did not hand over,
``release_in_flight`` when its connection is gone). Everything is keyed by the uplink's
name, so one uplink's claims, in-flight set and acknowledgements never touch another's;
the outbox deletes a row when every uplink carrying its device is past it (claims.py).
The guarantees are the outbox's (store/outbox.py); this class only binds the name.
"""

from __future__ import annotations

from edge_agent.store import claims, unpublishable
from edge_agent.store.outbox import Outbox
from edge_agent.store.uplinks import UplinkDepth


class UplinkOutbox:
    """The outbox as seen by the uplink ``name``."""

    def __init__(self, outbox: Outbox, name: str) -> None:
        self.outbox = outbox
        self.name = name

    def backlog_boundary(self, acquired_before: float) -> int:
        """Highest row id acquired before ``acquired_before`` (unix s): the backlog's end."""
        return self.outbox.backlog_boundary(acquired_before)

    def claim_batch(self, boundary_row_id: int, max_messages: int, max_entries: int,
                    max_body_bytes: int, live_cutoff: float | None = None,
                    acked: list[str] | None = None) -> claims.Claimed:
        """``Outbox.claim_batch`` for this uplink: only rows of devices it carries."""
        return self.outbox.claim_batch(boundary_row_id, max_messages, max_entries,
                                       max_body_bytes, live_cutoff, uplink=self.name,
                                       acked=acked)

    def ack_many(self, msg_ids: list[str]) -> int:
        """This uplink's broker has these messages; returns rows deleted (the rows the
        other uplinks carrying them are past too)."""
        return self.outbox.ack_many(msg_ids, uplink=self.name)

    def set_aside_unpublishable(self, msg_id: str) -> unpublishable.SetAside:
        """This uplink gives up on ``msg_id``: a gap event for this uplink only."""
        return self.outbox.set_aside_unpublishable(msg_id, uplink=self.name)

    def forget_in_flight(self, msg_ids: list[str]) -> None:
        """Claimed messages not handed over after all: offered again (same id)."""
        self.outbox.forget_in_flight(msg_ids, uplink=self.name)

    def release_in_flight(self) -> None:
        """This uplink's connection is gone: its in-flight messages become resendable."""
        self.outbox.release_in_flight(uplink=self.name)

    def open_claims(self) -> set[str]:
        """Ids of this uplink's claims not acknowledged yet. What an uplink remembers per
        message (sent once, failed once) keeps only these: a claim whose rows retention
        dropped is gone, and its id never comes back."""
        return self.outbox.run_read(lambda conn: {msg_id for (msg_id,) in conn.execute(
            "SELECT msg_id FROM claims WHERE uplink = ? AND acked_at IS NULL",
            [self.name])})

    def depth(self, timeout_s: float = 5.0) -> UplinkDepth:
        """Backlog, oldest waiting sample and in flight of this uplink (store/uplinks.py)."""
        return self.outbox.uplink_depth(self.name, timeout_s)
