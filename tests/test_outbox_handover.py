"""Standing claim offers and deferred acknowledgements (store/handover.py), on a real
SQLite outbox: the storing transaction claims for a caught-up uplink and hands the
message over before the append returns; an acknowledgement rides on the next write;
nothing is offered twice, lost, or handed to an uplink that withdrew."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.waiting import wait_until

from edge_agent.config.schema import Retention
from edge_agent.model import Quality, Reading, Sample
from edge_agent.store.claims import Claimed
from edge_agent.store.handover import ACK_DELAY_S, ClaimOffer
from edge_agent.store.outbox import Outbox, OutboxError

UPLINK = "default"


def sample(device: str = "dev", value: float = 1.0) -> Sample:
    now = datetime.now(UTC)
    return Sample(device, now, (Reading(device, "v", value, "ppm", Quality.GOOD, now),))


class Receiver:
    """An uplink's side of an offer: what the outbox handed over, in order."""

    def __init__(self) -> None:
        self.handed: list[tuple[Claimed, int]] = []
        self.threads: set[str] = set()

    def deliver(self, claimed: Claimed, wanted: int) -> None:
        self.handed.append((claimed, wanted))
        self.threads.add(threading.current_thread().name)

    def offer(self, outbox: Outbox, wanted: int = 5, seen_row_id: int = 0) -> ClaimOffer:
        offer = ClaimOffer(UPLINK, 0, wanted, 50, 1_000_000, seen_row_id,
                           lambda: time.time() - 3600, self.deliver)
        outbox.offer_claims(offer)
        return offer


@pytest.fixture
def outbox(tmp_path: Path):
    box = Outbox(tmp_path / "o.sqlite3", Retention(None, None, None))
    yield box
    box.close()


def rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]


def test_the_append_hands_its_sample_over_before_it_returns_in_the_same_commit(outbox):
    receiver = Receiver()
    receiver.offer(outbox)
    commits = outbox._writer.commits
    accepted = outbox.append(sample())
    assert outbox._writer.commits == commits + 1  # the claim rode on the append
    assert len(receiver.handed) == 1
    claimed, wanted = receiver.handed[0]
    assert wanted == 5
    assert [e.row_id for m in claimed.messages for e in m.entries] == [accepted.row_id]
    assert claimed.row_id_high == accepted.row_id
    assert receiver.threads == {"outbox-writer"}
    assert not outbox.offer_stands(UPLINK)  # used once
    # In flight now: an ordinary claim does not offer it again.
    assert outbox.claim_batch(0, 10, 50, 1_000_000).messages == ()


def test_an_offer_waits_for_rows_it_has_not_seen(outbox):
    first = outbox.append(sample())
    receiver = Receiver()
    receiver.offer(outbox, seen_row_id=first.row_id)
    outbox.run_transaction(lambda conn: None)  # writes, adds no row: no claim
    assert receiver.handed == [] and outbox.offer_stands(UPLINK)
    second = outbox.append(sample())
    (claimed, _), = receiver.handed
    # The claim takes what is unclaimed, the earlier row too, in one message.
    assert [e.row_id for e in claimed.messages[0].entries] == [first.row_id, second.row_id]


def test_a_withdrawn_offer_gets_nothing_and_its_rows_are_claimed_later(outbox):
    receiver = Receiver()
    receiver.offer(outbox)
    outbox.withdraw_offer(UPLINK)
    accepted = outbox.append(sample())
    assert receiver.handed == []
    message, = outbox.claim_batch(0, 10, 50, 1_000_000).messages
    assert message.entries[0].row_id == accepted.row_id


def test_a_widened_offer_claims_more_messages(outbox):
    receiver = Receiver()
    receiver.offer(outbox, wanted=1)
    assert outbox.widen_offer(UPLINK, 2)

    def three_devices(conn: sqlite3.Connection) -> None:
        for device in ("a", "b", "c"):
            outbox._insert_sample(conn, sample(device))

    outbox.run_transaction(three_devices)
    (claimed, wanted), = receiver.handed
    assert wanted == 3 and len(claimed.messages) == 3
    assert not outbox.widen_offer(UPLINK, 1)  # used: nothing to widen


def test_an_acknowledgement_rides_on_the_next_append_and_is_never_offered_again(outbox):
    outbox.append(sample())
    message, = outbox.claim_batch(0, 10, 50, 1_000_000).messages
    outbox.ack_delay_s = 3600  # no delete of its own in this test: only the append's
    outbox.ack_later([message.msg_id])
    outbox.release_in_flight()  # the session ends: still not offered again
    assert outbox.claim_batch(0, 10, 50, 1_000_000).messages == ()
    commits = outbox._writer.commits
    outbox.append(sample())  # one commit deletes and appends
    assert outbox._writer.commits == commits + 1
    assert rows(outbox.path) == 1


def test_an_acknowledgement_alone_is_applied_within_the_delay(outbox):
    outbox.append(sample())
    message, = outbox.claim_batch(0, 10, 50, 1_000_000).messages
    outbox.ack_later([message.msg_id])
    wait_until(lambda: rows(outbox.path) == 0, 10 * ACK_DELAY_S + 5, "the deferred delete")
    assert outbox.stats().samples == 0


def test_close_applies_waiting_acknowledgements(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", Retention(None, None, None))
    box.append(sample())
    message, = box.claim_batch(0, 10, 50, 1_000_000).messages
    box.ack_later([message.msg_id])
    box.close()
    assert rows(tmp_path / "o.sqlite3") == 0


def test_a_failing_claim_for_an_offer_drops_the_offer_and_stores_the_sample(outbox, caplog):
    def broken(conn_claimed: Claimed, wanted: int) -> None:
        raise AssertionError("never delivered")

    offer = ClaimOffer(UPLINK, 0, 5, 50, 1_000_000, 0, lambda: 1 / 0, broken)
    outbox.offer_claims(offer)  # its live_cutoff raises inside the storing transaction
    accepted = outbox.append(sample())
    assert accepted.seq == 1 and rows(outbox.path) == 1
    assert not outbox.offer_stands(UPLINK)
    assert "claims for itself instead" in caplog.text
    message, = outbox.claim_batch(0, 10, 50, 1_000_000).messages
    assert message.entries[0].row_id == accepted.row_id


def test_a_rolled_back_transaction_keeps_the_acknowledgement_waiting(outbox):
    outbox.append(sample())
    message, = outbox.claim_batch(0, 10, 50, 1_000_000).messages
    outbox.ack_later([message.msg_id])

    def fails(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(OutboxError):
        outbox.run_transaction(fails)
    # Not deleted by the failed transaction, and not offered again meanwhile.
    assert outbox.claim_batch(0, 10, 50, 1_000_000).messages == ()
    wait_until(lambda: rows(outbox.path) == 0, 10 * ACK_DELAY_S + 5, "the retried delete")


def test_live_samples_through_a_real_broker_cost_one_commit_each(tmp_path, broker, collector):
    """A caught-up forwarder and a live device: each sample is claimed by its own append
    and its acknowledgement rides on a later one, so commits per sample stay near one
    (three before: append, claim, acknowledgement). Every sample arrives, the outbox
    empties, and the forwarder's figures count every message."""
    from edge_agent.config.schema import MqttConfig
    from edge_agent.forward.forwarder import Forwarder

    box = Outbox(tmp_path / "o.sqlite3", Retention(None, None, None))
    forwarder = Forwarder("st", MqttConfig("127.0.0.1", broker.port, client_id="live"), box)
    box.on_append = forwarder.wake  # as the agent wires it
    forwarder.start()
    count = 60
    try:
        wait_until(lambda: forwarder.stats.connected, 30, "the forwarder's session")
        commits = box._writer.commits
        for i in range(count):
            box.append(sample(value=float(i)))
            time.sleep(0.03)
        collector.wait_for(lambda c: c.has_seqs("dev", count), 30, "every live sample")
        wait_until(lambda: box.stats().rows == 0, 30, "the outbox to empty")
        per_sample = (box._writer.commits - commits) / count
    finally:
        forwarder.stop(1)
        box.close()
    assert per_sample < 2.0, f"{per_sample:.2f} commits per live sample"
    assert forwarder.stats.published == count
    assert forwarder.stats.acknowledged == count
