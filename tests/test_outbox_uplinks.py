"""The outbox serving several uplinks (issue 12), on a real SQLite outbox: a sample leaves
when every uplink carrying its device has acknowledged it, retention drops announce a
gap to each uplink that had not delivered the samples, uplinks added and removed, and the
v3 -> v4 migration."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.olderoutbox import older_outbox

from edge_agent.config.schema import Retention
from edge_agent.model import Quality, Reading, Sample
from edge_agent.store import schema
from edge_agent.store.outbox import Outbox
from edge_agent.store.uplinkview import UplinkOutbox

UNLIMITED = Retention(max_rows=None, max_bytes=None, max_age_s=None)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def sample(device: str, value: float, at: datetime = T0) -> Sample:
    return Sample(device, at, (Reading(device, "ch", value, "ppm", Quality.GOOD, at),))


def seqs(message) -> list[int]:
    return [json.loads(e.body)["seq"] for e in message.entries]


def take(view: UplinkOutbox, wanted: int = 10, per_message: int = 10):
    """Claim as a forwarder would (everything live: boundary 0)."""
    return view.claim_batch(0, wanted, per_message, 100_000).messages


def rows(box: Outbox) -> list[tuple]:
    conn = sqlite3.connect(box.path)
    try:
        return conn.execute("SELECT kind, device_id, seq, uplink FROM outbox ORDER BY id"
                            ).fetchall()
    finally:
        conn.close()


def claim_count(box: Outbox) -> int:
    conn = sqlite3.connect(box.path)
    try:
        return conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def box(tmp_path: Path):
    outbox = Outbox(tmp_path / "outbox.sqlite3", UNLIMITED)
    outbox.set_uplinks({"default": None, "city": None})
    yield outbox
    outbox.close()


def test_a_sample_stays_until_every_carrying_uplink_has_acknowledged_it(box):
    for index in range(4):
        box.append(sample("a", index))
    default, city = UplinkOutbox(box, "default"), UplinkOutbox(box, "city")
    (first,) = take(default)
    assert default.ack_many([first.msg_id]) == 0, "deleted before the other uplink had it"
    assert box.stats().samples == 4
    assert take(default) == (), "an uplink claimed rows it had already acknowledged"
    (other,) = take(city, wanted=1, per_message=2)
    assert seqs(other) == [1, 2]
    assert city.ack_many([other.msg_id]) == 2  # the intersection: rows both are past
    assert [r[2] for r in rows(box)] == [3, 4]
    (rest,) = take(city)
    assert city.ack_many([rest.msg_id]) == 2
    assert rows(box) == [] and claim_count(box) == 0, "a claim outlived its rows"


def test_acknowledgement_order_does_not_matter_and_acked_claims_merge(box):
    """One uplink acknowledges many messages while the other is away: its acknowledged
    claims merge into one per device, and the other's acknowledgement deletes them all."""
    for index in range(20):
        box.append(sample("a", index))
    default, city = UplinkOutbox(box, "default"), UplinkOutbox(box, "city")
    messages = take(default, wanted=10, per_message=2)
    assert len(messages) == 10
    default.ack_many([m.msg_id for m in reversed(messages)])
    conn = sqlite3.connect(box.path)
    acked = conn.execute("SELECT first_row, last_row FROM claims WHERE uplink = 'default' "
                         "AND acked_at IS NOT NULL").fetchall()
    conn.close()
    assert acked == [(1, 20)]
    (everything,) = take(city, per_message=50)
    assert city.ack_many([everything.msg_id]) == 20
    assert box.stats().samples == 0 and claim_count(box) == 0


def test_an_uplink_only_claims_the_devices_it_carries(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite3", UNLIMITED)
    box.set_uplinks({"default": None, "city": ("b",)})
    for index in range(4):
        box.append(sample("ab"[index % 2], index))
    default, city = UplinkOutbox(box, "default"), UplinkOutbox(box, "city")
    assert {m.device_id for m in take(city)} == {"b"}
    a, b = take(default)
    assert default.ack_many([a.msg_id]) == 2, "device a has no other carrier"
    assert default.ack_many([b.msg_id]) == 0, "city has not acknowledged b yet"
    assert box.uplink_depth("city").backlog == 2
    assert box.uplink_depth("default").backlog == 0
    box.close()


def test_two_uplinks_have_separate_in_flight_sets(box):
    """Releasing one uplink's in-flight messages (its session ended) does not make the
    other's claimable again."""
    for index in range(2):
        box.append(sample("a", index))
    default, city = UplinkOutbox(box, "default"), UplinkOutbox(box, "city")
    (mine,) = take(default)
    (theirs,) = take(city)
    city.release_in_flight()
    assert take(default) == ()
    assert [m.msg_id for m in take(city)] == [theirs.msg_id]
    assert box.uplink_depth("default").in_flight_messages == 1
    assert mine.msg_id != theirs.msg_id


def test_retention_drop_announces_a_gap_to_each_uplink_that_lacked_the_samples(tmp_path):
    """The samples one uplink already delivered are gone for the other only: the gap
    event goes to that one alone, and a drop neither had reaches both as one event."""
    box = Outbox(tmp_path / "outbox.sqlite3", Retention(max_rows=4, max_bytes=None,
                                                         max_age_s=None))
    box.set_uplinks({"default": None, "city": None})
    default, city = UplinkOutbox(box, "default"), UplinkOutbox(box, "city")
    for index in range(4):
        box.append(sample("a", index))
    (delivered,) = take(default, wanted=1, per_message=2)
    default.ack_many([delivered.msg_id])  # default has seq 1, 2; city has nothing
    box.append(sample("a", 4))
    box.append(sample("a", 5))  # 6 samples > 4: seq 1 and 2 dropped
    gaps = [r for r in rows(box) if r[0] == "gap"]
    assert gaps == [("gap", "a", None, "city")]
    box.append(sample("a", 6))  # seq 3 dropped: neither had it -> one gap for both
    gaps = [r for r in rows(box) if r[0] == "gap"]
    assert gaps == [("gap", "a", None, "city"), ("gap", "a", None, None)]
    default_gaps = [m for m in take(default, wanted=20) if m.kind == "gap"]
    city_gaps = [m for m in take(city, wanted=20) if m.kind == "gap"]
    assert len(default_gaps) == 1, "default received city's gap event"
    assert sorted(json.loads(e.body)["first_seq"] for m in city_gaps for e in m.entries) \
        == [1, 3]
    box.close()


def test_an_uplink_setting_a_message_aside_keeps_the_rows_for_the_others(box):
    for index in range(2):
        box.append(sample("a", index))
    default, city = UplinkOutbox(box, "default"), UplinkOutbox(box, "city")
    (poison,) = take(default)
    result = default.set_aside_unpublishable(poison.msg_id)
    assert (result.samples, result.rows_deleted) == (2, (0, 0))
    assert [r for r in rows(box) if r[0] == "gap"] == [("gap", "a", None, "default")]
    assert [m.kind for m in take(default)] == ["gap"], "default re-claimed set-aside rows"
    (fine,) = [m for m in take(city) if m.kind == "sample"]
    assert city.ack_many([fine.msg_id]) == 2


def test_an_added_uplink_starts_from_the_rows_still_in_the_outbox(box, caplog):
    for index in range(3):
        box.append(sample("a", index, T0 + timedelta(seconds=index)))
    with caplog.at_level(logging.INFO):
        box.set_uplinks({"default": None, "city": None, "province": None})
    assert "uplink province: starting from 3 samples still in the outbox, oldest " \
           "2026-01-01T00:00:00" in caplog.text
    assert [seqs(m) for m in take(UplinkOutbox(box, "province"))] == [[1, 2, 3]]


def test_a_removed_uplink_releases_what_only_it_was_holding(box, caplog):
    for index in range(4):
        box.append(sample("a", index))
    default, city = UplinkOutbox(box, "default"), UplinkOutbox(box, "city")
    (all_rows,) = take(default)
    default.ack_many([all_rows.msg_id])  # every row now waits for city only
    take(city, wanted=1, per_message=1)  # city holds a claim of its own
    with caplog.at_level(logging.INFO):
        change = box.set_uplinks({"default": None})
    assert change.removed == {"city": (1, 0)} and change.rows_deleted == 4
    assert "uplink city removed: its 1 claim(s) released" in caplog.text
    assert box.stats().samples == 0 and claim_count(box) == 0


def test_an_uplink_gone_from_the_configuration_across_a_restart_is_removed(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path, UNLIMITED)
    box.set_uplinks({"default": None, "city": None})
    box.append(sample("a", 1))
    (message,) = take(UplinkOutbox(box, "default"))
    UplinkOutbox(box, "default").ack_many([message.msg_id])
    box.close()
    box = Outbox(path, UNLIMITED)
    box.set_uplinks({"default": None})  # the station file lost its uplinks: section
    assert box.stats().samples == 0
    box.close()


def test_one_uplink_deletes_on_acknowledgement_without_keeping_claims(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite3", UNLIMITED)
    box.set_uplinks({"default": None})
    box.append(sample("a", 1))
    view = UplinkOutbox(box, "default")
    (message,) = take(view)
    assert view.ack_many([message.msg_id]) == 1
    assert claim_count(box) == 0
    box.close()


def _v3_outbox(path: Path) -> None:
    """An outbox as the one-uplink release (schema 3) left it: samples a/1..a/3 (row 4,
    a/4, was acknowledged and deleted), and message ``m-1`` of ``default`` claiming a/1
    and a/2."""

    conn = older_outbox(path, 3)
    for seq in (1, 2, 3, 4):
        body = json.dumps({"id": f"a-{seq}", "seq": seq})
        conn.execute("INSERT INTO outbox (kind, device_id, seq, entry_id, acquired_at, body) "
                     "VALUES ('sample', 'a', ?, ?, 0, ?)", [seq, f"a-{seq}", body])
    conn.execute("DELETE FROM outbox WHERE seq = 4")
    conn.execute("INSERT INTO device_seq (device_id, last_seq) VALUES ('a', 4)")
    conn.execute("INSERT INTO claims (uplink, msg_id, device_id, kind, historical, "
                 "first_row, last_row) VALUES ('default', 'm-1', 'a', 'sample', 0, 1, 2)")
    conn.execute("COMMIT")
    conn.close()


def test_v3_outbox_is_migrated_to_v4_keeping_rows_claims_and_row_ids(tmp_path):
    """A file of the one-uplink release (schema 3): its claim is re-sent with the same id
    and rows, numbering continues, row ids never go back (the deleted row 4 is not
    reused), and an alarm row can now be stored."""
    path = tmp_path / "outbox.sqlite3"
    _v3_outbox(path)
    box = Outbox(path, UNLIMITED)
    first, second = box.claim_batch(0, 2, 10, 100_000).messages
    assert (first.msg_id, seqs(first)) == ("m-1", [1, 2])
    assert seqs(second) == [3]
    accepted = box.append(sample("a", 9))
    assert (accepted.seq, accepted.row_id) == (5, 5)
    assert box.ack_many([first.msg_id, second.msg_id]) == 3
    box.close()
    conn = sqlite3.connect(path)
    try:
        conn.execute("INSERT INTO outbox (kind, device_id, seq, entry_id, acquired_at, body) "
                     "VALUES ('alarm', 'a', NULL, 'al-1', 0, '{}')")
        conn.commit()
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'"
                            ).fetchone() == (str(schema.SCHEMA_VERSION),)
        assert conn.execute("SELECT kind FROM outbox WHERE entry_id = 'al-1'").fetchone() \
            == ("alarm",)
    finally:
        conn.close()


def test_file_status_counts_rows_in_unacknowledged_claims_once(box):
    """``edge-agent status`` from the file: a row claimed by two uplinks is one row to
    re-send, and a row its uplink acknowledged (waiting for the other) is none."""
    from edge_agent.store.readonly import open_read_only, read_backlog

    for index in range(4):
        box.append(sample("a", index))
    default, city = UplinkOutbox(box, "default"), UplinkOutbox(box, "city")
    (both,) = take(default, wanted=1, per_message=2)
    take(city, wanted=1, per_message=2)  # the same two rows, claimed by city too
    (acked,) = take(default, wanted=1, per_message=2)
    default.ack_many([acked.msg_id])  # rows 3, 4 wait for city; not re-sent by default
    conn = open_read_only(box.path)
    try:
        assert read_backlog(conn, box.path).claimed_rows == 2
    finally:
        conn.close()
    assert [e.row_id for e in both.entries] == [1, 2]
