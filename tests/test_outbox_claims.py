"""Claims as row ranges (store/claims.py), on a real SQLite outbox: several messages per
transaction, acknowledgement by range, and live rows that fall behind moving to the
backlog (forward/overload.py tells the operator)."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.config.schema import Retention
from edge_agent.forward.overload import Overload
from edge_agent.model import Quality, Reading, Sample
from edge_agent.store.outbox import Outbox

UNLIMITED = Retention(max_rows=None, max_bytes=None, max_age_s=None)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def sample(device: str, value: float, at: datetime = T0) -> Sample:
    return Sample(device, at, (Reading(device, "ch", value, "ppm", Quality.GOOD, at),))


def seqs(message) -> list[int]:
    return [json.loads(e.body)["seq"] for e in message.entries]


@pytest.fixture
def box(tmp_path: Path):
    outbox = Outbox(tmp_path / "outbox.sqlite3", UNLIMITED)
    yield outbox
    outbox.close()


def claim_rows(box: Outbox) -> list[tuple]:
    conn = sqlite3.connect(box.path)
    try:
        return conn.execute("SELECT uplink, device_id, kind, historical, first_row, last_row "
                            "FROM claims ORDER BY rowid").fetchall()
    finally:
        conn.close()


def test_one_claim_fills_the_window_with_one_claim_row_per_message(box):
    """Interleaved devices: each message holds consecutive rows of one device, its claim
    is one row (uplink, device, lane, first..last), and no sample row is written."""
    for index in range(12):
        box.append(sample("ab"[index % 2], index))
    claimed = box.claim_batch(0, 3, 4, 10_000)
    assert [(m.device_id, seqs(m)) for m in claimed.messages] == [
        ("a", [1, 2, 3, 4]), ("b", [1, 2, 3, 4]), ("a", [5, 6])]
    assert claim_rows(box) == [("default", "a", "sample", 0, 1, 7),
                               ("default", "b", "sample", 0, 2, 8),
                               ("default", "a", "sample", 0, 9, 11)]
    assert box.claim_batch(0, 3, 4, 10_000).messages[0].device_id == "b", \
        "rows inside other messages' ranges were offered twice"


def test_ack_deletes_only_its_devices_rows_in_the_range(box):
    """A range spans other devices' rows; acknowledging it leaves those alone."""
    for index in range(6):
        box.append(sample("ab"[index % 2], index))
    first = box.claim_batch(0, 1, 3, 10_000).messages[0]
    assert (first.device_id, [e.row_id for e in first.entries]) == ("a", [1, 3, 5])
    assert box.ack_many([first.msg_id]) == 3
    rest = box.claim_batch(0, 5, 10, 10_000).messages
    assert [(m.device_id, seqs(m)) for m in rest] == [("b", [1, 2, 3])]
    assert box.stats().samples == 3 and claim_rows(box)[0][1] == "b"


def test_unacknowledged_claims_come_back_first_after_restart_in_claim_order(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path, UNLIMITED)
    for index in range(6):
        box.append(sample("ab"[index % 2], index))
    before = box.claim_batch(0, 2, 2, 10_000).messages
    box.close()
    box = Outbox(path, UNLIMITED)
    after = box.claim_batch(0, 3, 2, 10_000).messages
    assert [(m.msg_id, m.entries) for m in after[:2]] == [(m.msg_id, m.entries) for m in before]
    assert (after[2].device_id, seqs(after[2])) == ("a", [3])
    box.close()


def test_a_live_run_stops_before_a_claimed_range_of_its_device(box):
    """A resent claim of a device lies ahead of unclaimed rows of that device: the new
    message must end before it, or the two ranges would overlap."""
    for index in range(4):
        box.append(sample("a", index))
    box.claim_batch(2, 1, 10, 10_000)  # session 1, boundary 2: live rows 3, 4
    box.release_in_flight()
    resent, live = box.claim_batch(0, 3, 10, 10_000).messages  # session 2: all live
    assert (seqs(resent), resent.historical) == ([3, 4], False)
    assert (seqs(live), live.historical) == ([1, 2], False)
    assert [row[4:] for row in claim_rows(box)] == [(3, 4), (1, 2)]


def test_live_rows_behind_the_live_window_move_to_the_backlog(box):
    """Past the limit: live rows acquired before the cutoff are claimed as historical,
    the newer ones stay live and go first; nothing is lost."""
    for index in range(3):
        box.append(sample("a", index, T0))
    for index in range(3, 5):
        box.append(sample("a", index, T0 + timedelta(minutes=5)))
    cutoff = (T0 + timedelta(minutes=1)).timestamp()
    claimed = box.claim_batch(0, 4, 10, 10_000, live_cutoff=cutoff)
    assert (claimed.boundary, claimed.moved) == (3, 3)
    assert [(seqs(m), m.historical) for m in claimed.messages] == [
        ([4, 5], False), ([1, 2, 3], True)]
    again = box.claim_batch(claimed.boundary, 4, 10, 10_000, live_cutoff=cutoff)
    assert (again.messages, again.boundary, again.moved) == ((), 3, 0)


def test_overload_is_logged_once_when_it_starts_and_once_when_it_ends(caplog):
    overload = Overload(live_window_s=30)
    with caplog.at_level(logging.INFO, logger="edge_agent.forward.forwarder"):
        for now in (100.0, 101.0, 110.0):
            overload.observe(50, now)
        overload.observe(0, 120.0)  # quiet, but less than a live window since the last
        assert overload.active
        overload.observe(0, 140.0)
        overload.observe(0, 141.0)
    assert not overload.active
    assert (overload.moved_total, overload.episodes) == (150, 1)
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert "150 samples were moved" in caplog.records[1].getMessage()


def test_counts_stay_exact_when_a_bad_operation_reruns_its_batch(box):
    """A bad operation makes the writer roll back and run the batch again (writer.py):
    the appends of that batch must be counted once, not twice."""
    import threading

    from support.waiting import wait_until

    gate, inside = threading.Event(), threading.Event()

    def hold(conn) -> None:
        inside.set()
        gate.wait(60)

    def bad(conn) -> None:
        raise ValueError("bad operation")

    writer = box._writer
    threads = [threading.Thread(target=writer.submit, args=(hold,), daemon=True)]
    threads[0].start()
    assert inside.wait(10)
    for target in (lambda: box.append(sample("a", 1)), lambda: writer.submit(bad),
                   lambda: box.append(sample("a", 2))):
        before = writer._ops.qsize()
        thread = threading.Thread(target=lambda t=target: _swallow(t), daemon=True)
        thread.start()
        threads.append(thread)
        wait_until(lambda b=before: writer._ops.qsize() > b, 10, "the operation to queue")
    gate.set()
    for thread in threads:
        thread.join(10)
    depth, stats = box.depth(), box.stats()
    assert (depth.rows, depth.samples) == (stats.rows, stats.samples) == (2, 2)


def _swallow(call) -> None:
    with contextlib.suppress(ValueError):
        call()
