"""HJ 212 statistics against a real outbox file: periods close after their end plus the
grace and only then; a bad reading flags the period; a late sample of a closed period is
counted, never folded into its record; every sample is folded before the uplink lets the
outbox delete it, exactly once even when the agent is SIGKILLed between fold and ack
(a child process killed at that point); a v5 file migrates to v6; history pulls are
answered from the stored records; delivered records are pruned after KEEP_DAYS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.localzone import china_local_time
from support.olderoutbox import older_outbox

from edge_agent.config.schema import Retention
from edge_agent.forward.hj212stats import FoldingOutbox, StatsKeeper
from edge_agent.hj212 import statsstore
from edge_agent.hj212.packet import Flag, Packet, Version, encode, parse
from edge_agent.hj212.platform_state import PlatformStateFile
from edge_agent.hj212.realtime import DeviceMap
from edge_agent.hj212.responder import Responder
from edge_agent.hj212.statsstore import Plan
from edge_agent.model import Quality, Reading, Sample
from edge_agent.store import schema
from edge_agent.store.outbox import Outbox

UNLIMITED = Retention(max_rows=None, max_bytes=None, max_age_s=None)
T0 = datetime(2026, 3, 15, 2, 0, tzinfo=UTC)  # 10:00 in the station's zone (UTC+8)
MINUTE_END = T0.timestamp() + 60
PLAN = Plan("prov", {"gas-1": DeviceMap((("ch", "a21028", "ppm", 2),))}, ("2051", "2061"), 1)
FIRST_MINUTE = ("2051", "20260315100000")


@pytest.fixture(autouse=True)
def station_zone(monkeypatch) -> Iterator[None]:
    """The agent runs in China's local time; HJ 212 periods are local."""
    yield from china_local_time(monkeypatch)


def sample(value: float | None, at: datetime, quality: Quality = Quality.GOOD,
           instrument_time: datetime | None = None) -> Sample:
    reason = None if quality == Quality.GOOD else "timeout"
    return Sample("gas-1", at, (Reading("gas-1", "ch", value, "ppm", quality, at, reason),),
                  instrument_time=instrument_time)


def fold(box: Outbox, now: float) -> statsstore.Folded:
    return box.run_transaction(lambda conn: statsstore.fold(conn, PLAN, now))


def close(box: Outbox, now: float) -> list[tuple[str, str]]:
    return box.run_transaction(lambda conn: statsstore.close_due(conn, PLAN, now))


def waiting(box: Outbox) -> dict[tuple[str, str], str]:
    return {(r.cn, r.period_start): r.cp for r in
            box.run_read(lambda conn: statsstore.waiting(conn, "prov", 100))}


def open_counts(box: Outbox) -> dict[tuple[str, str], int]:
    rows = box.run_read(lambda conn: conn.execute(
        "SELECT cn, period_start, acc FROM hj212_open").fetchall())
    return {(cn, start): json.loads(acc)["count"] for cn, start, acc in rows}


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Outbox]:
    outbox = Outbox(tmp_path / "outbox.sqlite3", UNLIMITED)
    outbox.set_uplinks({"prov": ["gas-1"]})
    yield outbox
    outbox.close()


def test_a_minute_closes_after_its_end_plus_the_grace_with_min_avg_max_and_flag(box):
    for second, value in ((5, 1.0), (20, 2.0), (40, 3.0), (65, 9.0)):
        box.append(sample(value, T0 + timedelta(seconds=second)))
    assert fold(box, MINUTE_END + 6).rows == 4
    assert close(box, MINUTE_END + statsstore.CLOSE_GRACE_S - 1) == []
    assert close(box, MINUTE_END + statsstore.CLOSE_GRACE_S) == [FIRST_MINUTE]
    assert waiting(box) == {FIRST_MINUTE: "DataTime=20260315100000;a21028-Min=1.00,"
                            "a21028-Avg=2.00,a21028-Max=3.00,a21028-Flag=N"}
    # the next minute and the hour stay open
    assert open_counts(box) == {("2051", "20260315100100"): 1, ("2061", "20260315100000"): 4}
    assert set(close(box, MINUTE_END + 3600)) == {("2051", "20260315100100"),
                                                  ("2061", "20260315100000")}


def test_bad_readings_flag_the_period_d_and_are_left_out_of_the_values(box):
    box.append(sample(4.0, T0 + timedelta(seconds=1)))
    box.append(sample(6.0, T0 + timedelta(seconds=2)))
    box.append(sample(None, T0 + timedelta(seconds=3), Quality.BAD))
    box.append(sample(80.0, T0 + timedelta(seconds=4), Quality.SUSPECT))
    fold(box, MINUTE_END + 20)
    close(box, MINUTE_END + 20)
    assert waiting(box)[FIRST_MINUTE] == ("DataTime=20260315100000;a21028-Min=4.00,"
                                          "a21028-Avg=5.00,a21028-Max=6.00,a21028-Flag=D")


def test_late_sample_of_a_closed_period_is_counted_not_folded_into_its_record(box):
    box.append(sample(1.0, T0 + timedelta(seconds=5)))
    fold(box, MINUTE_END + 20)
    close(box, MINUTE_END + 20)
    record = waiting(box)[FIRST_MINUTE]
    box.append(sample(500.0, T0 + timedelta(seconds=30)))  # a backlog from the instrument
    done = fold(box, MINUTE_END + 30)
    assert done.late == [("2051", "20260315100000", "gas-1")]
    assert box.run_read(lambda conn: statsstore.late_count(conn, "prov")) == 1
    close(box, MINUTE_END + 30)
    assert waiting(box)[FIRST_MINUTE] == record
    assert ("2051", "20260315100000") not in open_counts(box)
    assert open_counts(box) == {("2061", "20260315100000"): 2}  # the hour is still open


def test_an_instruments_reporting_lag_delays_closing(box):
    """A GC reports an analysis two minutes after its analysis time: its minute waits."""
    analysed = T0 + timedelta(seconds=10)
    box.append(sample(7.0, analysed + timedelta(seconds=120), instrument_time=analysed))
    fold(box, MINUTE_END + 70)
    assert box.run_read(lambda conn: statsstore.grace_s(conn, "prov")) == pytest.approx(
        statsstore.CLOSE_GRACE_S + 120)
    assert close(box, MINUTE_END + 70) == []
    assert close(box, MINUTE_END + 131) == [FIRST_MINUTE]


def test_samples_are_folded_before_the_uplink_lets_the_outbox_delete_them(box):
    for second in range(0, 50, 10):
        box.append(sample(float(second), T0 + timedelta(seconds=second)))
    keeper = StatsKeeper(box, "prov", lambda: PLAN, clock=lambda: MINUTE_END - 5)
    view = FoldingOutbox(box, "prov", keeper)
    claimed = view.claim_batch(0, 16, 1, 1 << 20)
    assert len(claimed.messages) == 5
    assert view.ack_many([m.msg_id for m in claimed.messages]) == 5
    assert box.stats().rows == 0
    assert open_counts(box)[FIRST_MINUTE] == 5
    keeper.fold_now()  # nothing left to fold: nothing counted twice
    assert open_counts(box)[FIRST_MINUTE] == 5


CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
import test_hj212_stats_store as t
from edge_agent.forward.hj212stats import FoldingOutbox, StatsKeeper
from edge_agent.store.outbox import Outbox
box = Outbox(t.Path({path!r}), t.UNLIMITED)
box.set_uplinks({{"prov": ["gas-1"]}})
keeper = StatsKeeper(box, "prov", lambda: t.PLAN, clock=lambda: t.MINUTE_END - 5)
view = FoldingOutbox(box, "prov", keeper)
claimed = view.claim_batch(0, 16, 1, 1 << 20)
keeper.fold_now()
print("folded", len(claimed.messages), flush=True)
time.sleep(600)
"""


@pytest.mark.real_parts
def test_fold_is_exactly_once_when_the_agent_is_killed_between_fold_and_ack(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path, UNLIMITED)
    for second in range(0, 30, 5):
        box.append(sample(1.0, T0 + timedelta(seconds=second)))
    box.close()
    code = CHILD.format(tests=str(Path(__file__).parent), path=str(path))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             env={**os.environ, "TZ": "Asia/Shanghai"}, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().split() == ["folded", "6"]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    box = Outbox(path, UNLIMITED)
    box.set_uplinks({"prov": ["gas-1"]})
    try:
        assert open_counts(box)[FIRST_MINUTE] == 6  # the fold committed, the ack did not
        keeper = StatsKeeper(box, "prov", lambda: PLAN, clock=lambda: MINUTE_END + 30)
        view = FoldingOutbox(box, "prov", keeper)
        claimed = view.claim_batch(0, 16, 1, 1 << 20)
        assert len(claimed.messages) == 6  # offered again after the restart
        view.ack_many([m.msg_id for m in claimed.messages])
        assert box.stats().rows == 0
        assert keeper.step() == [FIRST_MINUTE]
        assert "a21028-Flag=N" in waiting(box)[FIRST_MINUTE]
        assert open_counts(box) == {("2061", "20260315100000"): 6}  # not 12
    finally:
        box.close()


def test_a_v5_outbox_is_migrated_to_the_current_schema_keeping_its_rows(tmp_path):
    path = tmp_path / "v5.sqlite3"
    conn = older_outbox(path, 5)
    conn.execute("INSERT INTO outbox (kind, device_id, seq, entry_id, acquired_at, body) "
                 "VALUES ('sample', 'gas-1', 1, 'e1', 0, '{}')")
    conn.execute("COMMIT")
    conn.close()
    box = Outbox(path, UNLIMITED)
    try:
        tables = box.run_read(lambda c: {name for (name,) in c.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")})
        assert {"hj212_fold", "hj212_open", "hj212_stats"} <= tables
        assert box.stats().rows == 1
        assert box.run_read(lambda c: c.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()) == (
            str(schema.SCHEMA_VERSION),)
    finally:
        box.close()


def pull(cp: str) -> str:
    return encode(Packet(st="22", cn="2051", pw="123456", mn="010000A8900016F000169DC0",
                         cp=cp, qn="20260315110000001", flag=Flag(Version.HJ212_2025, True)))


def test_history_pull_is_answered_from_the_stored_records(box, tmp_path):
    for minute in range(3):
        box.append(sample(float(minute), T0 + timedelta(minutes=minute, seconds=1)))
    keeper = StatsKeeper(box, "prov", lambda: PLAN, clock=lambda: MINUTE_END + 200)
    assert keeper.step() == [("2051", "20260315100000"), ("2051", "20260315100100"),
                             ("2051", "20260315100200")]
    responder = Responder("123456", PlatformStateFile(tmp_path / "s.json"), keeper.history)
    now = datetime(2026, 3, 15, 11)
    replies = list(responder.respond(parse(pull(
        "BeginTime=20260315100100,EndTime=20260315110000")), now))
    assert [(r.cn, r.cp.split(";")[0]) for r in replies] == [
        ("9011", "QnRtn=1"), ("2051", "DataTime=20260315100100"),
        ("2051", "DataTime=20260315100200"), ("9012", "ExeRtn=1")]
    none = list(responder.respond(parse(pull(
        "BeginTime=20260315000000,EndTime=20260315095900")), now))
    assert [(r.cn, r.cp) for r in none] == [("9011", "QnRtn=1"), ("9012", "ExeRtn=100")]


def test_delivered_records_are_pruned_after_keep_days_waiting_ones_kept(box):
    for minute in range(2):
        box.append(sample(1.0, T0 + timedelta(minutes=minute, seconds=1)))
    fold(box, MINUTE_END + 100)
    close(box, MINUTE_END + 100)
    box.run_transaction(lambda conn: statsstore.mark_delivered(
        conn, "prov", *FIRST_MINUTE, MINUTE_END + 100))
    later = MINUTE_END + 100 + statsstore.KEEP_DAYS * 86400 + 1
    assert box.run_transaction(lambda conn: statsstore.prune(conn, "prov", later)) == 1
    assert list(waiting(box)) == [("2051", "20260315100100")]


def test_a_minute_interval_set_by_the_platform_applies_from_the_next_period(box):
    """1064 changes the interval the plan reads at each fold: samples from the next
    boundary both intervals share (10:05 for 1 -> 5 at 10:00:40) fall into periods of
    the new length (tests/test_hj212_interval_change.py has the open-period cases)."""
    minutes, now = [1], [T0.timestamp() + 30]
    keeper = StatsKeeper(box, "prov", lambda: Plan("prov", PLAN.maps, ("2051",), minutes[0]),
                         clock=lambda: now[0])
    box.append(sample(1.0, T0 + timedelta(seconds=5)))
    keeper.fold_now()
    minutes[0] = 5
    now[0] = T0.timestamp() + 40
    keeper.fold_now()
    box.append(sample(2.0, T0 + timedelta(minutes=6)))
    box.append(sample(4.0, T0 + timedelta(minutes=9)))
    now[0] = T0.timestamp() + 660
    assert keeper.step() == [("2051", "20260315100000"), ("2051", "20260315100500")]
    assert waiting(box)[("2051", "20260315100500")] == (
        "DataTime=20260315100500;a21028-Min=2.00,a21028-Avg=3.00,a21028-Max=4.00,"
        "a21028-Flag=N")
