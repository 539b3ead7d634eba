"""Review findings on HJ 212 statistics, against a real outbox file: a sample whose
instrument time is at the end of the calendar (year 9999, a garbled clock register or an
instrument's "no time" placeholder) is counted unreadable and passed, so it neither
stops the statistics of every other sample nor fails the uplink's acknowledgements, and
the 2011 send path counts it unreadable instead of stalling on it. A stop ends the
statistics thread between two fold batches, not after a whole backlog."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from support.localzone import china_local_time
from support.waiting import wait_until
from test_hj212_send import (  # the send path's real-platform fixtures
    DEADLINE_S,
    outbox,
    platform,
    rows,
    stamp,
    uplink_config,
    uplinks,
)
from test_hj212_send import sample as send_sample
from test_hj212_stats_store import box  # the statistics tests' outbox (gas-1 for prov)

from edge_agent.config.schema import Retention
from edge_agent.forward.hj212stats import FoldingOutbox, StatsKeeper
from edge_agent.hj212 import statsstore
from edge_agent.hj212.realtime import DeviceMap
from edge_agent.hj212.statsstore import Plan
from edge_agent.model import Quality, Reading, Sample

__all__ = ["box", "outbox", "platform", "uplinks"]  # fixtures used by name
UNLIMITED = Retention(max_rows=None, max_bytes=None, max_age_s=None)
T0 = datetime(2026, 3, 15, 2, 0, tzinfo=UTC)  # 10:00 in the station's zone (UTC+8)
PLAN = Plan("prov", {"gas-1": DeviceMap((("ch", "a21028", "ppm", 2),))},
            ("2051", "2061", "2031"), 1)
END_OF_CALENDAR = datetime(9999, 12, 31, 23, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def station_zone(monkeypatch) -> Iterator[None]:
    """The agent runs in China's local time; HJ 212 periods are local."""
    yield from china_local_time(monkeypatch)


def sample(value: float, at: datetime, instrument_time: datetime | None = None) -> Sample:
    return Sample("gas-1", at, (Reading("gas-1", "ch", value, "ppm", Quality.GOOD, at),),
                  instrument_time=instrument_time)


def test_sample_stamped_year_9999_is_unreadable_and_later_samples_still_fold(box):
    box.append(sample(1.0, T0 + timedelta(seconds=5)))
    box.append(sample(2.0, T0 + timedelta(seconds=10), instrument_time=END_OF_CALENDAR))
    box.append(sample(3.0, T0 + timedelta(seconds=15)))
    done = box.run_transaction(lambda conn: statsstore.fold(conn, PLAN, T0.timestamp() + 20))
    assert [device for device, _row in done.unreadable] == ["gas-1"]
    assert done.caught_up and done.rows == 3
    opened = box.run_read(lambda conn: conn.execute(
        "SELECT cn, period_start FROM hj212_open ORDER BY cn").fetchall())
    assert opened == [("2031", "20260315000000"), ("2051", "20260315100000"),
                      ("2061", "20260315100000")]


def test_uplink_acknowledges_past_a_sample_stamped_year_9999(box):
    keeper = StatsKeeper(box, "prov", lambda: PLAN, clock=lambda: T0.timestamp() + 30)
    view = FoldingOutbox(box, "prov", keeper)
    box.append(sample(2.0, T0 + timedelta(seconds=10), instrument_time=END_OF_CALENDAR))
    claimed = view.claim_batch(0, 10, 1, 1 << 20)
    assert view.ack_many([m.msg_id for m in claimed.messages]) == 1
    assert keeper.counts["unreadable"] == 1


def test_hj212_2011_path_skips_a_year_9999_sample_and_sends_the_next(
        tmp_path, platform, outbox, uplinks):
    """Real platform simulator over TCP: the year-9999 sample is counted unreadable and
    leaves the outbox; the sample after it reaches the platform (no head-of-line stall)."""
    running = platform()
    readings = (Reading("gc-1", "c1", 1.0, "mg/m3", Quality.GOOD, T0),)
    outbox.append(Sample("gc-1", T0, readings, instrument_time=END_OF_CALENDAR))
    outbox.append(send_sample(T0 + timedelta(seconds=10)))
    one = uplinks(uplink_config(tmp_path, running.port))
    wait_until(lambda: rows(outbox) == 0, DEADLINE_S, "both samples to leave the outbox")
    assert running.data_times() == [stamp(T0 + timedelta(seconds=10))]
    assert one.counts()["unreadable"] == 1


def test_a_minute_interval_hj212_does_not_allow_fails_the_fold_and_marks_no_row(box):
    """A bad plan (not a bad sample) must not turn every row into an 'unreadable' one
    that is passed and lost: the fold fails and the rows stay to be folded."""
    box.append(sample(1.0, T0 + timedelta(seconds=5)))
    bad = Plan("prov", PLAN.maps, PLAN.cns, 7)
    with pytest.raises(ValueError, match="minute interval 7"):
        box.run_transaction(lambda conn: statsstore.fold(conn, bad, T0.timestamp() + 20))
    done = box.run_transaction(lambda conn: statsstore.fold(conn, PLAN, T0.timestamp() + 20))
    assert (done.rows, done.unreadable) == (1, [])


def test_the_statistics_thread_is_watched_and_its_end_is_reported(
        tmp_path, platform, outbox, uplinks):
    """hj212-stats-NAME beats like every worker, so a hung one is found by the service
    watchdog, and one that ended while the uplink runs is reported dead."""
    running = platform()
    one = uplinks(uplink_config(tmp_path, running.port))
    name = "hj212-stats-prov"

    def beat():
        return next((h for h in one.network_heartbeats()
                     if h.name == name and h.thread is not None), None)

    wait_until(lambda: beat() is not None, DEADLINE_S, "the statistics thread's heartbeat")
    watched = beat()
    assert watched is not None and watched.stuck(time.monotonic()) is None
    assert one.dead_network_thread() is None
    one._stats.stop()  # the thread ends while the uplink runs, as a bug would end it
    found = watched.stuck(time.monotonic())
    assert found is not None and found.ended
    assert one.dead_network_thread() == name


def test_late_periods_remembered_for_logging_stay_bounded_over_weeks(box):
    """A device whose clock lags makes a new late period every minute: the set that
    logs each once must not grow with them (it did, one entry per period, forever);
    every late sample is still counted."""
    from edge_agent.forward import hj212stats

    plan = Plan("prov", PLAN.maps, ("2051",), 1)
    periods = hj212stats.LOGGED_LATE_MAX + 200
    now = T0.timestamp() + statsstore.KEEP_DAYS * 86400 + 2 * periods * 60
    keeper = StatsKeeper(box, "prov", lambda: plan, clock=lambda: now)
    for minute in range(periods):  # each older than records are kept: late
        box.append(sample(1.0, T0 + timedelta(minutes=minute)))
    keeper.step()
    assert keeper.counts["late"] == periods
    assert len(keeper._logged) <= hj212stats.LOGGED_LATE_MAX


def test_a_stop_ends_folding_a_large_backlog_after_the_batch_in_hand(box):
    """The statistics thread folded a backlog to its end through a stop, past the 10 s
    its join waits: the fold loop now looks at the stop flag between batches. What is
    left folds on the next start (the cursor is committed with each batch)."""
    batch = 10
    keeper = StatsKeeper(box, "prov", lambda: PLAN, clock=lambda: T0.timestamp() + 30,
                         fold_batch=batch)
    for second in range(5 * batch):
        box.append(sample(1.0, T0 + timedelta(seconds=second % 60)))
    keeper.stop()  # not started: only the flag is set, as a stop sets it mid-fold
    assert keeper.step() == []
    first_rows = box.run_read(lambda conn: conn.execute(
        f"SELECT MAX(id) FROM (SELECT id FROM outbox ORDER BY id LIMIT {batch})"
    ).fetchone()[0])
    assert keeper.folded_to == first_rows
    again = StatsKeeper(box, "prov", lambda: PLAN, clock=lambda: T0.timestamp() + 30,
                        fold_batch=batch)
    again.step()
    assert again.folded_to >= box.run_read(lambda conn: conn.execute(
        "SELECT MAX(id) FROM outbox").fetchone()[0])


def test_stopping_the_statistics_thread_mid_backlog_leaves_the_rest_for_the_next_start(box):
    """The real thread: once it is folding a backlog of many batches, ``stop`` returns
    with the thread ended and the backlog not folded to its end."""
    batch, rows = 5, 3000
    keeper = StatsKeeper(box, "prov", lambda: PLAN, clock=lambda: T0.timestamp() + 30,
                         fold_batch=batch)
    for second in range(rows):
        box.append(sample(1.0, T0 + timedelta(seconds=second % 60)))
    newest = box.run_read(lambda conn: conn.execute("SELECT MAX(id) FROM outbox").fetchone()[0])
    keeper.start()
    wait_until(lambda: keeper.folded_to > 0, DEADLINE_S, "the thread to start folding")
    keeper.stop()
    assert not keeper.thread.is_alive()
    assert keeper.folded_to < newest
