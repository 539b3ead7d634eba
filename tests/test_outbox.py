"""The outbox against a real SQLite file: numbering, claims, acks, restarts, retention."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.waiting import wait_until

from edge_agent.config.schema import Retention, Synchronous
from edge_agent.model import Quality, Reading, Sample
from edge_agent.payload import encode_message
from edge_agent.store import retention
from edge_agent.store.outbox import Outbox, OutboxError
from edge_agent.store.schema import SchemaError

UNLIMITED = Retention(max_rows=None, max_bytes=None, max_age_s=None)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def sample(device: str, value: float, at: datetime = T0) -> Sample:
    return Sample(device, at, (Reading(device, "ch", value, "ppm", Quality.GOOD, at),))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.sqlite3"


def values(message) -> list[float]:
    return [json.loads(e.body)["values"]["ch"]["value"] for e in message.entries]


def test_sequence_numbers_are_per_device_and_survive_restart(path):
    box = Outbox(path, UNLIMITED)
    assert [box.append(sample("a", i)).seq for i in range(3)] == [1, 2, 3]
    assert box.append(sample("b", 0)).seq == 1
    box.close()
    box = Outbox(path, UNLIMITED)
    assert box.append(sample("a", 9)).seq == 4
    box.close()


def test_acked_rows_are_deleted_and_sequence_continues(path):
    box = Outbox(path, UNLIMITED)
    box.append(sample("a", 1))
    message = box.claim(0, 10, 10_000)
    assert box.ack_many([message.msg_id]) == 1
    assert box.stats().rows == 0
    assert box.append(sample("a", 2)).seq == 2
    box.close()


def test_unacked_message_resent_with_same_id_and_bytes_after_restart(path):
    box = Outbox(path, UNLIMITED)
    for i in range(3):
        box.append(sample("a", i))
    first = box.claim(0, 2, 10_000)
    original = encode_message(first, "st")
    box.close()  # as if the process died before the PUBACK
    box = Outbox(path, UNLIMITED)
    again = box.claim(0, 10, 10_000)
    assert again.msg_id == first.msg_id
    assert encode_message(again, "st") == original
    rest = box.claim(0, 10, 10_000)
    assert values(rest) == [2]
    box.close()


def test_in_flight_messages_are_not_claimed_twice_until_released(path):
    box = Outbox(path, UNLIMITED)
    box.append(sample("a", 1))
    first = box.claim(0, 10, 10_000)
    assert box.claim(0, 10, 10_000) is None
    box.release_in_flight()
    assert box.claim(0, 10, 10_000).msg_id == first.msg_id
    box.close()


def test_live_rows_are_claimed_before_backlog_and_flagged_live(path):
    box = Outbox(path, UNLIMITED)
    for i in range(3):
        box.append(sample("a", i))
    boundary = box.backlog_boundary(datetime.now(UTC).timestamp() + 1)
    box.append(sample("a", 99))
    live = box.claim(boundary, 10, 10_000)
    backlog = box.claim(boundary, 10, 10_000)
    assert (live.historical, values(live)) == (False, [99])
    assert (backlog.historical, values(backlog)) == (True, [0, 1, 2])
    box.close()


def test_messages_hold_one_device_and_respect_count_and_byte_limits(path):
    box = Outbox(path, UNLIMITED)
    for i in range(5):
        box.append(sample("a", i))
        box.append(sample("b", i))
    one_body = len(box.claim(0, 1, 10_000).entries[0].body.encode())
    by_count = box.claim(0, 2, 10_000)
    by_bytes = box.claim(0, 100, 2 * (one_body + 1))
    too_small = box.claim(0, 100, 1)
    assert len(by_count.entries) == 2 and len({e.device_id for e in by_count.entries}) == 1
    assert len(by_bytes.entries) == 2
    assert len(too_small.entries) == 1, "a sample larger than the limit still goes, alone"
    box.close()


def test_message_size_counts_utf8_bytes_not_characters(path):
    box = Outbox(path, UNLIMITED)
    for i in range(3):
        box.append(Sample("a", T0, (Reading("a", "硫化氢浓度" * 20, i, "毫克/立方米",
                                            Quality.GOOD, T0),)))
    body = box.claim(0, 1, 1_000_000).entries[0].body
    assert len(body.encode()) > len(body) + 200
    # Room for two bodies by character count, but not by bytes:
    message = box.claim(0, 100, 2 * (len(body) + 1))
    assert len(message.entries) == 1
    box.close()


def test_retention_drops_oldest_unclaimed_counts_them_and_records_one_gap(path):
    box = Outbox(path, Retention(max_rows=5, max_bytes=None, max_age_s=None))
    box.append(sample("a", 0))
    claimed = box.claim(0, 1, 10_000)  # in flight: must survive
    for i in range(1, 10):
        box.append(sample("a", i, T0 + timedelta(seconds=i)))
    stats = box.stats()
    assert (stats.samples, stats.gaps, stats.dropped_total) == (5, 1, 5)
    box.ack_many([claimed.msg_id])
    messages = {m.kind: m for m in (box.claim(0, 100, 1_000_000) for _ in range(2))}
    assert values(messages["sample"]) == [6, 7, 8, 9]
    gap = messages["gap"]
    body = json.loads(gap.entries[0].body)
    assert (gap.kind, body["count"], body["first_seq"], body["last_seq"], body["reasons"]) == \
        ("gap", 5, 2, 6, ["max_rows"])
    assert body["first_at"] == "2026-01-01T00:00:01.000Z"
    box.close()


def test_retention_by_age_drops_only_expired_samples(path):
    now = [T0.timestamp() + 100]
    box = Outbox(path, Retention(max_rows=None, max_bytes=None, max_age_s=50),
                 clock=lambda: now[0])
    box.append(sample("a", 1, T0))  # 100 s old: expired
    box.append(sample("a", 2, T0 + timedelta(seconds=90)))
    stats = box.stats()
    assert (stats.samples, stats.gaps, stats.dropped_total) == (1, 1, 1)
    box.close()


def test_retention_by_bytes_keeps_database_pages_under_the_limit(path):
    # NORMAL: no fsync per append (400 took 2.5 s); retention counts the same pages
    box = Outbox(path, Retention(max_rows=None, max_bytes=400_000, max_age_s=None),
                 synchronous=Synchronous.NORMAL)
    big = "x" * 2000
    for i in range(400):
        at = T0 + timedelta(seconds=i)
        box.append(Sample("a", at, (Reading("a", big, i, "", Quality.GOOD, at),)))
    stats = box.stats()
    assert stats.bytes_in_use <= 400_000
    assert stats.dropped_total > 0 and stats.samples + stats.dropped_total == 400
    box.close()


def test_failed_appends_are_counted_into_one_gap_event_once_storage_works(path):
    box = Outbox(path, UNLIMITED)
    box.append(sample("a", 0))
    # Make SQLite itself report "database or disk is full" for the next writes.
    pages = box._submit(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
    box._submit(lambda conn: conn.execute(f"PRAGMA max_page_count={pages}"))
    failures = 0
    for i in range(60):
        try:
            box.append(Sample("a", T0, (Reading("a", "x" * 4000, i, "", Quality.GOOD, T0),)))
        except OutboxError as err:
            assert "full" in str(err)
            failures += 1
    assert failures >= 2, "later failing transactions must keep the earlier losses"
    box._submit(lambda conn: conn.execute("PRAGMA max_page_count=1073741823"))
    box.append(sample("a", 1))
    gaps = [m for m in iter(lambda: box.claim(0, 100, 10_000_000), None) if m.kind == "gap"]
    assert len(gaps) == 1
    body = json.loads(gaps[0].entries[0].body)
    assert (body["reasons"], body["count"], body["first_seq"]) == (["store_error"], failures,
                                                                   None)
    box.close()


def test_gap_ranges_never_cover_a_claimed_sample(path):
    box = Outbox(path, Retention(max_rows=3, max_bytes=None, max_age_s=None))
    box.append(sample("a", 1))
    box.append(sample("a", 2))
    claimed = box.claim(1, 1, 10_000)  # the live lane first: seq 2 in flight, seq 1 not
    for i in range(3, 9):
        box.append(sample("a", i))
    gaps = [json.loads(e.body) for m in iter(lambda: box.claim(0, 100, 10_000_000), None)
            if m.kind == "gap" for e in m.entries]
    dropped = set()
    for gap in gaps:
        span = set(range(gap["first_seq"], gap["last_seq"] + 1))
        assert len(span) == gap["count"]
        dropped |= span
    assert values(claimed) == [2] and 2 not in dropped
    assert 1 in dropped and len(gaps) == 2
    assert box.stats().dropped_total == len(dropped)
    box.close()


def test_outbox_from_a_newer_release_is_refused(path):
    Outbox(path, UNLIMITED).close()
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match="newer"):
        Outbox(path, UNLIMITED)


def test_v1_outbox_is_migrated_and_keeps_its_samples(path):
    """A file written by release 0.1 (schema 1, no driver state) opens after an upgrade:
    its waiting samples are still there and numbering continues."""
    import sqlite3

    import sqlite_utils

    from edge_agent.store import schema

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    schema._migrate_to_v1(sqlite_utils.Database(conn))
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    conn.execute("INSERT INTO device_seq (device_id, last_seq) VALUES ('a', 7)")
    conn.execute("INSERT INTO outbox (kind, device_id, seq, entry_id, acquired_at, body) "
                 "VALUES ('sample', 'a', 7, 'e7', 0, '{\"id\":\"e7\"}')")
    conn.execute("COMMIT")
    conn.close()
    box = Outbox(path, UNLIMITED)
    assert box.stats().samples == 1
    assert box.driver_state("a") is None
    assert box.append(sample("a", 1)).seq == 8
    box.close()


def _v2_outbox(path, rows):
    """An outbox file as release 0.2 (schema 2) left it: claimed rows carry their
    message id and lane in columns of their own. ``rows``: (device, seq, msg_id, historical)."""
    import sqlite3

    import sqlite_utils

    from edge_agent.store import schema

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    schema._migrate_to_v1(sqlite_utils.Database(conn))
    conn.execute("ALTER TABLE device_seq ADD COLUMN driver_state TEXT")
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '2')")
    for device, seq, msg_id, historical in rows:
        body = json.dumps({"id": f"{device}-{seq}", "seq": seq})
        conn.execute("INSERT INTO outbox (kind, device_id, seq, entry_id, acquired_at, body, "
                     "msg_id, historical) VALUES ('sample', ?, ?, ?, ?, ?, ?, ?)",
                     [device, seq, f"{device}-{seq}", seq, body, msg_id, historical])
        conn.execute("INSERT OR REPLACE INTO device_seq (device_id, last_seq) VALUES (?, ?)",
                     [device, seq])
    conn.execute("COMMIT")
    conn.close()


def test_v2_claims_survive_the_upgrade_and_are_resent_with_same_id_and_bytes(path):
    """A station upgrading with messages in flight (schema 2: a message id in every
    claimed row) re-sends them first, each with its id, lane, rows and so its bytes;
    the unclaimed rows follow in new messages."""
    from edge_agent.payload import Message, StoredEntry, encode_message

    _v2_outbox(path, [("a", 1, "m-hist", 1), ("b", 1, "m-live", 0), ("a", 2, "m-hist", 1),
                      ("b", 2, "m-live", 0), ("a", 3, None, None)])
    expected = {
        "m-hist": Message("m-hist", "sample", "a", True, tuple(
            StoredEntry(row, "sample", "a", seq, f"a-{seq}", json.dumps({"id": f"a-{seq}",
                                                                         "seq": seq}))
            for row, seq in ((1, 1), (3, 2)))),
        "m-live": Message("m-live", "sample", "b", False, tuple(
            StoredEntry(row, "sample", "b", seq, f"b-{seq}", json.dumps({"id": f"b-{seq}",
                                                                         "seq": seq}))
            for row, seq in ((2, 1), (4, 2)))),
    }
    box = Outbox(path, UNLIMITED)
    first, second, rest = box.claim_batch(0, 3, 10, 10_000).messages
    for message in (first, second):
        assert encode_message(message, "ST") == encode_message(expected[message.msg_id], "ST")
    assert {first.msg_id, second.msg_id} == set(expected)
    assert rest.msg_id not in expected and [e.seq for e in rest.entries] == [3]
    assert box.ack_many([first.msg_id, second.msg_id, rest.msg_id]) == 5
    box.close()


def test_v2_claim_that_cannot_be_a_range_is_released_not_lost(path):
    """An old message whose rows straddle another message's rows cannot become a range:
    its samples are sent again in a new message, and none is lost or sent twice."""
    _v2_outbox(path, [("a", 1, "outer", 1), ("a", 2, "inner", 1), ("a", 3, "outer", 1)])
    box = Outbox(path, UNLIMITED)
    messages = list(iter(lambda: box.claim(0, 10, 10_000), None))
    assert messages[0].msg_id == "inner"
    assert sorted(e.seq for m in messages for e in m.entries) == [1, 2, 3]
    assert "outer" not in {m.msg_id for m in messages}
    box.close()


def test_driver_state_is_committed_with_its_sample_and_survives_restart(path):
    box = Outbox(path, UNLIMITED)
    box.append(sample("gc", 1))
    assert box.driver_state("gc") is None
    stateful = Sample("gc", T0, sample("gc", 2).readings, driver_state='{"key": "5"}')
    box.append(stateful)
    box.append(sample("gc", 3))  # a sample without state leaves the last one in place
    box.close()
    box = Outbox(path, UNLIMITED)
    assert box.driver_state("gc") == '{"key": "5"}'
    assert box.driver_state("other") is None
    box.close()


def test_large_retention_excess_is_dropped_over_several_capped_transactions(path,
                                                                             monkeypatch):
    """Lowering max_rows far below the depth: no transaction deletes more than the cap,
    and the drops add up to one exact gap event per device and an exact counter."""
    monkeypatch.setattr(retention, "MAX_DROPS_PER_TRANSACTION", 100)
    box = Outbox(path, UNLIMITED, synchronous=Synchronous.NORMAL)
    for i in range(350):
        box.append(sample("ab"[i % 2], i, T0 + timedelta(seconds=i)))
    box.close()
    conn = sqlite3.connect(path, isolation_level=None)
    enforcer = retention.Enforcer(Retention(max_rows=20, max_bytes=None, max_age_s=None),
                                  time.time)
    enforcer.load(conn)
    per_transaction = []
    while True:
        conn.execute("BEGIN IMMEDIATE")
        enforcer.enforce(conn)
        conn.execute("COMMIT")
        per_transaction.append(int(conn.execute(
            "SELECT value FROM meta WHERE key = 'dropped_total'").fetchone()[0]))
        if not enforcer.behind:
            break
    gaps = {device: json.loads(body) for device, body in conn.execute(
        "SELECT device_id, body FROM outbox WHERE kind = 'gap'")}
    left = conn.execute("SELECT COUNT(*) FROM outbox WHERE kind = 'sample'").fetchone()[0]
    conn.close()
    assert per_transaction == [100, 200, 300, 330]
    assert left == 20 == enforcer.samples
    for device in "ab":
        assert (gaps[device]["first_seq"], gaps[device]["last_seq"], gaps[device]["count"]) \
            == (1, 165, 165)


def test_retention_excess_is_worked_off_by_the_writer_without_more_appends(path,
                                                                          monkeypatch):
    monkeypatch.setattr(retention, "MAX_DROPS_PER_TRANSACTION", 100)
    box = Outbox(path, UNLIMITED, synchronous=Synchronous.NORMAL)
    for i in range(350):
        box.append(sample("a", i, T0 + timedelta(seconds=i)))
    box.reconfigure(Retention(max_rows=20, max_bytes=None, max_age_s=None),
                    Synchronous.NORMAL)
    box.append(sample("a", 350, T0 + timedelta(seconds=350)))  # one transaction: 100 drops
    wait_until(lambda: box.stats().samples == 20, 30, "the writer to finish the drops")
    stats = box.stats()
    messages = list(iter(lambda: box.claim(10**12, 1000, 10**8), None))
    box.close()
    assert stats.dropped_total == 331
    [gap] = [json.loads(e.body) for m in messages if m.kind == "gap" for e in m.entries]
    assert (gap["first_seq"], gap["last_seq"], gap["count"]) == (1, 331, 331)


@pytest.mark.real_parts
def test_run_path_does_not_load_sqlite_utils_for_a_current_outbox(path):
    """sqlite-utils (with click, pluggy, dateutil: about 6 MiB) serves creating and
    migrating the file only; an agent restarting on its outbox never loads it."""
    import subprocess
    import sys

    Outbox(path, UNLIMITED).close()  # created (and so migrated) by another process
    code = ("import sys; from pathlib import Path; import edge_agent.agent, edge_agent.cli; "
            "from edge_agent.config.schema import Retention; "
            "from edge_agent.store.outbox import Outbox; "
            f"Outbox(Path({str(path)!r}), Retention()).close(); "
            "print(sorted(m for m in ('sqlite_utils', 'click', 'pluggy', 'dateutil') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_the_byte_check_agrees_with_bytes_in_use_whatever_the_free_pages(tmp_path):
    """``retention.over_bytes`` looks at the free pages only when the file is larger than
    the limit; it must answer as ``bytes_in_use > max_bytes`` would, in a file that has
    grown, shrunk (free pages) and grown again."""
    import sqlite3

    from edge_agent.store.retention import bytes_in_use, over_bytes

    conn = sqlite3.connect(tmp_path / "pages.sqlite3")
    conn.execute("CREATE TABLE t (body TEXT)")
    checked = 0
    for rows, delete in ((400, False), (0, True), (150, False), (600, False), (0, True)):
        conn.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * rows)
        if delete:
            conn.execute("DELETE FROM t WHERE rowid % 3 != 0")
        conn.commit()
        used = bytes_in_use(conn)
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        whole = conn.execute("PRAGMA page_count").fetchone()[0] * page_size
        for limit in sorted({0, used - 1, used, used + 1, whole - 1, whole, whole + 1}):
            assert over_bytes(conn, limit) == (used > limit), (rows, delete, limit)
            checked += 1
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] > 0  # shrunk at the end
    assert checked >= 20
    conn.close()
