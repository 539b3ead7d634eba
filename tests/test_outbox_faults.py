"""The outbox against damaged files: garbage over an outbox (set aside) and garbage that
never was one (refused), another program's database, a malformed page met while
running, a truncated file, a file from a newer release, failing storage."""

from __future__ import annotations

import json
import logging
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.config.schema import Retention, Synchronous
from edge_agent.model import Quality, Reading, Sample
from edge_agent.store.corruption import MAX_SET_ASIDE
from edge_agent.store.outbox import Outbox, OutboxError
from edge_agent.store.pathcheck import StorePathRefused
from edge_agent.store.schema import SchemaError

UNLIMITED = Retention(max_rows=None, max_bytes=None, max_age_s=None)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def sample(device: str, value: float, at: datetime = T0) -> Sample:
    return Sample(device, at, (Reading(device, "ch", value, "ppm", Quality.GOOD, at),))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.sqlite3"


def fill(path: Path, count: int, retention: Retention = UNLIMITED) -> None:
    """An outbox holding ``count`` samples, alternating devices a and b, then closed.
    Without an fsync per sample (``synchronous=NORMAL``; closing checkpoints the file all
    the same): these tests damage the file afterwards, and 3000 fsyncs took seconds."""
    box = Outbox(path, retention, synchronous=Synchronous.NORMAL)
    for i in range(count):
        box.append(sample("ab"[i % 2], i, T0 + timedelta(seconds=i)))
    box.close()


def damage_index_under(path: Path) -> None:
    """Overwrite the outbox_device index's root page behind an open connection's back,
    then commit elsewhere so that connection drops its page cache: its next use of the
    index meets 'database disk image is malformed'."""
    damage_under(path, "outbox_device")


def damage_under(path: Path, *names: str) -> None:
    """``damage_index_under`` for the root pages of the tables or indexes ``names``."""
    other = sqlite3.connect(path)
    other.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the page's live copy is in the file
    roots = [other.execute("SELECT rootpage FROM sqlite_master WHERE name = ?",
                           [name]).fetchone()[0] for name in names]
    page_size, = other.execute("PRAGMA page_size").fetchone()
    other.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('poke', '1')")
    other.commit()
    other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    other.close()
    with open(path, "r+b") as file:
        for root in roots:
            file.seek((root - 1) * page_size)
            file.write(random.Random(root).randbytes(page_size))


def set_aside_files(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.glob(f"{path.name}.corrupt-*") if p.suffix != ""
                  and not p.name.endswith(("-wal", "-shm")))


def drain(box: Outbox) -> list:
    return list(iter(lambda: box.claim(10**12, 1000, 10**8), None))


def gap_entries(messages) -> list[dict]:
    return [{**json.loads(e.body), "device": m.device_id}
            for m in messages if m.kind == "gap" for e in m.entries]


def test_outbox_overwritten_with_garbage_is_set_aside_unchanged_and_a_new_one_starts(
        path, caplog):
    fill(path, 3)  # an agent kept its outbox here: the lock file beside it says so
    garbage = random.Random(5).randbytes(50_000)
    path.write_bytes(garbage)
    box = Outbox(path, UNLIMITED)
    assert box.append(sample("a", 1)).seq == 1
    stats = box.stats()
    box.close()
    [aside] = stats.set_aside
    assert aside.name.startswith("outbox.sqlite3.corrupt-") and aside.read_bytes() == garbage
    assert (stats.samples, stats.gaps) == (1, 0)
    [line] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "is corrupt (file is not a database); set aside as" in line.getMessage()
    assert "the number of undelivered samples lost is unknown" in line.getMessage()
    assert "sequence numbers start again at 1" in line.getMessage()


def test_garbage_file_that_never_was_an_outbox_is_refused_and_left_alone(path):
    garbage = random.Random(5).randbytes(50_000)
    path.write_bytes(garbage)
    with pytest.raises(StorePathRefused, match="exists and is not an SQLite database"):
        Outbox(path, UNLIMITED)
    assert path.read_bytes() == garbage and sorted(path.parent.iterdir()) == [path], \
        "not renamed, not written, no lock file or -wal made beside it"


def test_another_programs_database_is_refused_and_left_alone(path):
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE readings (t REAL, v REAL)")
    other.execute("INSERT INTO readings VALUES (1, 2)")
    other.commit()
    other.close()
    before = path.read_bytes()
    with pytest.raises(StorePathRefused) as refused:
        Outbox(path, UNLIMITED)
    assert str(refused.value) == (
        f"{path} is a SQLite database of another program (tables: readings), not an "
        "edge-agent outbox; it is left as it is. Expected an edge-agent outbox or a path "
        "where a new one can be created: point store.path at a file of its own")
    assert set_aside_files(path) == [] and path.read_bytes() == before
    assert sorted(path.parent.iterdir()) == [path]


def test_outbox_from_a_newer_release_is_refused_not_set_aside(path):
    fill(path, 3)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match="newer than this release"):
        Outbox(path, UNLIMITED)
    assert set_aside_files(path) == []
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM outbox").fetchone() == (3,)


def test_malformed_page_met_while_running_sets_file_aside_and_retries_the_write(path):
    fill(path, 300)
    box = Outbox(path, UNLIMITED)
    damage_index_under(path)
    accepted = box.append(sample("a", 999))  # meets the damage, lands in the new file
    stats = box.stats()
    messages = drain(box)
    box.close()
    assert accepted.seq == 151, "numbering continues after the lost samples"
    assert len(stats.set_aside) == 1 and stats.corrupt_lost_total == 300
    gaps = {g["device"]: g for g in gap_entries(messages)}
    for device in "ab":
        assert (gaps[device]["first_seq"], gaps[device]["last_seq"], gaps[device]["count"],
                gaps[device]["reasons"]) == (1, 150, 150, ["store_error"])
    samples = [json.loads(e.body) for m in messages if m.kind == "sample" for e in m.entries]
    assert [(s["seq"], s["values"]["ch"]["value"]) for s in samples] == [(151, 999)]


def test_live_samples_stay_live_after_a_corrupt_file_is_replaced_mid_session(path):
    fill(path, 300)
    box = Outbox(path, UNLIMITED)
    boundary = box.backlog_boundary(T0.timestamp() + 10**6)  # the session's: all 300 old
    damage_index_under(path)
    live = box.append(sample("a", 999, T0 + timedelta(days=1)))
    messages = drain_with(box, boundary)
    box.close()
    assert len(box.set_aside) == 1
    assert live.row_id > boundary, "row ids never go backwards, also across files"
    [message] = [m for m in messages if m.kind == "sample"]
    assert not message.historical, "a sample accepted after the boundary is live"


def test_row_ids_continue_above_those_handed_out_when_the_old_file_is_unreadable(path):
    box = Outbox(path, UNLIMITED)
    for i in range(50):
        box.append(sample("a", i, T0 + timedelta(seconds=i)))
    boundary = box.backlog_boundary(T0.timestamp() + 10**6)
    damage_under(path, "outbox", "sqlite_sequence")  # the file cannot say its last id
    live = box.append(sample("a", 999, T0 + timedelta(days=1)))
    messages = drain_with(box, boundary)
    box.close()
    assert len(box.set_aside) == 1 and boundary == 50
    assert live.row_id > boundary
    assert [m.historical for m in messages if m.kind == "sample"] == [False]


def drain_with(box: Outbox, boundary: int) -> list:
    return list(iter(lambda: box.claim(boundary, 1000, 10**8), None))


def test_truncated_file_is_set_aside_and_what_was_read_is_announced(path, caplog):
    fill(path, 3000)
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.truncate(size // 2)
    box = Outbox(path, UNLIMITED)
    new = box.append(sample("a", 1)).seq
    messages = drain(box)
    box.close()
    assert len(box.set_aside) == 1
    announced = gap_entries(messages)
    lost = sum(g["count"] for g in announced)
    assert 0 < lost < 3000, "half the pages are gone: only some samples can be counted"
    for gap in announced:
        assert gap["last_seq"] - gap["first_seq"] + 1 == gap["count"] and gap["last_seq"] < new
    assert new == 1501, "device numbering (an early page) was read: it continues"
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"could not be read completely (database disk image is malformed): at least " \
           f"{lost} undelivered samples are lost" in line


def test_undelivered_gap_events_are_carried_over_unchanged_and_sent_first(path):
    fill(path, 30, Retention(max_rows=10, max_bytes=None, max_age_s=None))
    before = sqlite3.connect(path).execute(
        "SELECT body FROM outbox WHERE kind = 'gap' ORDER BY id").fetchall()
    assert before, "retention should have dropped samples and recorded gap events"
    box = Outbox(path, UNLIMITED)
    damage_index_under(path)
    box.append(sample("a", 1))
    first = box.claim(10**12, 1000, 10**8)
    messages = [first, *drain(box)]
    box.close()
    assert first.kind == "gap" and first.historical
    carried = [e.body for m in messages if m.kind == "gap" for e in m.entries]
    assert [body for (body,) in before] == carried[:len(before)], \
        "a gap event that may have been delivered must keep its id and body"


def test_storage_that_keeps_corrupting_files_is_given_up_on_and_writes_fail(path, caplog):
    fill(path, 10)
    box = Outbox(path, UNLIMITED)
    for _ in range(MAX_SET_ASIDE):
        damage_index_under(path)
        box.append(sample("a", 1))
    damage_index_under(path)
    with pytest.raises(OutboxError, match="malformed"):
        box.append(sample("a", 2))
    assert len(box.set_aside) == MAX_SET_ASIDE
    assert box.unstored_total == 1
    box.close()
    assert any(r.levelno == logging.CRITICAL and "storage is probably failing" in r.getMessage()
               for r in caplog.records)
