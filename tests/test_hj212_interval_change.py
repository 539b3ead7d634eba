"""A 1064 minute-interval change applies from the next period, never to the open one
(review finding: switching 5 -> 10 minutes at 10:07 made the 10:07-10:09 samples late, so
they were in no minute record). The open period keeps the interval it was opened with;
the new one applies from the first boundary both intervals share (at the latest the next
full hour). Real outbox file; the statistics keeper folds and closes as it runs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.localzone import china_local_time
from support.olderoutbox import older_outbox

from edge_agent.config.schema import Retention
from edge_agent.forward.hj212stats import StatsKeeper
from edge_agent.hj212.realtime import DeviceMap
from edge_agent.hj212.statsstore import Plan
from edge_agent.model import Quality, Reading, Sample
from edge_agent.store.outbox import Outbox

UNLIMITED = Retention(max_rows=None, max_bytes=None, max_age_s=None)
T0 = datetime(2026, 3, 15, 2, 0, tzinfo=UTC)  # 10:00 in the station's zone (UTC+8)
MAPS = {"gas-1": DeviceMap((("ch", "a21028", "ppm", 2),))}


@pytest.fixture(autouse=True)
def station_zone(monkeypatch) -> Iterator[None]:
    """The agent runs in China's local time; HJ 212 periods are local."""
    yield from china_local_time(monkeypatch)


class Station:
    """An outbox, a keeper whose plan and clock the test sets, and samples one a minute
    whose value is their minute after 10:00 (so a record's Min/Max show its samples)."""

    def __init__(self, path: Path, minutes: int) -> None:
        self.box = Outbox(path, UNLIMITED)
        self.box.set_uplinks({"prov": ["gas-1"]})
        self.minutes = minutes
        self.now = T0.timestamp()
        self.keeper = StatsKeeper(self.box, "prov", self.plan, clock=lambda: self.now)

    def plan(self) -> Plan:
        return Plan("prov", MAPS, ("2051",), self.minutes)

    def acquire(self, first: int, last: int) -> None:
        for minute in range(first, last + 1):
            at = T0 + timedelta(minutes=minute)
            self.box.append(Sample("gas-1", at, (Reading("gas-1", "ch", float(minute),
                                                         "ppm", Quality.GOOD, at),)))

    def step_at(self, minute: float) -> None:
        self.now = (T0 + timedelta(minutes=minute)).timestamp()
        self.keeper.step()

    def records(self) -> dict[str, tuple[float, float]]:
        """DataTime hhmm -> (Min, Max) of every minute record."""
        found = {}
        for start, cp in self.box.run_read(lambda conn: conn.execute(
                "SELECT period_start, cp FROM hj212_stats WHERE cn = '2051' "
                "ORDER BY period_start").fetchall()):
            low = float(re.search(r"a21028-Min=([\d.]+)", cp).group(1))
            high = float(re.search(r"a21028-Max=([\d.]+)", cp).group(1))
            found[start[8:12]] = (low, high)
        return found


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    made: list[Station] = []

    def make(minutes: int) -> Station:
        made.append(Station(tmp_path / "outbox.sqlite3", minutes))
        return made[-1]

    yield make
    for one in made:
        one.box.close()


def test_5_to_10_minutes_at_10_07_keeps_the_open_period_at_5_and_loses_no_sample(station):
    one = station(5)
    one.acquire(0, 6)
    one.step_at(6.5)  # 10:00-10:05 closed, 10:05-10:10 open
    one.minutes = 10  # the platform's 1064 at 10:07
    one.step_at(7)
    one.acquire(7, 24)
    one.step_at(30.5)
    assert one.records() == {"1000": (0, 4), "1005": (5, 9), "1010": (10, 19),
                             "1020": (20, 24)}
    assert one.keeper.counts["late"] == 0


def test_10_to_5_minutes_at_10_07_keeps_the_open_period_at_10(station):
    one = station(10)
    one.acquire(0, 6)
    one.step_at(6.5)
    one.minutes = 5
    one.step_at(7)
    one.acquire(7, 21)
    one.step_at(25.5)
    assert one.records() == {"1000": (0, 9), "1010": (10, 14), "1015": (15, 19),
                             "1020": (20, 21)}
    assert one.keeper.counts["late"] == 0


def test_a_change_found_after_an_outage_applies_from_a_boundary_both_intervals_share(
        station):
    """Samples of the outage were acquired under 5 minutes and are folded under it; the
    change, found at 10:13, applies from 10:20 (10:15 is not a 10-minute boundary)."""
    one = station(5)
    one.acquire(0, 1)
    one.step_at(1.5)
    one.acquire(2, 12)  # the statistics do not run (agent stopped, platform down)
    one.minutes = 10
    one.step_at(13)
    one.acquire(13, 31)
    one.step_at(40.5)
    assert one.records() == {"1000": (0, 4), "1005": (5, 9), "1010": (10, 14),
                             "1015": (15, 19), "1020": (20, 29), "1030": (30, 31)}
    assert one.keeper.counts["late"] == 0


def test_the_interval_in_force_survives_a_restart(tmp_path, station):
    """The schedule is in the outbox file: a restart between the change and its boundary
    still closes the open period at its old length."""
    one = station(5)
    one.acquire(0, 6)
    one.step_at(6.5)
    one.minutes = 10
    one.step_at(7)
    one.box.close()
    two = Station(tmp_path / "outbox.sqlite3", 10)
    try:
        two.acquire(7, 19)
        two.step_at(20.5)
        assert two.records() == {"1000": (0, 4), "1005": (5, 9), "1010": (10, 19)}
        assert two.keeper.counts["late"] == 0
    finally:
        two.box.close()


def test_a_v6_outbox_is_migrated_to_v7_keeping_its_statistics(tmp_path):
    """A file of the release before: its fold cursor and open period are kept, and the
    interval in force applies from the beginning until it changes."""



    path = tmp_path / "v6.sqlite3"
    conn = older_outbox(path, 6)
    conn.execute("INSERT INTO hj212_fold (uplink, last_row, late) VALUES ('prov', 0, 3)")
    conn.execute("COMMIT")
    conn.close()
    one = Station(path, 5)
    try:
        assert one.box.run_read(lambda c: c.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()) == ("7",)
        one.acquire(0, 6)
        one.step_at(6.5)
        assert one.records() == {"1000": (0, 4)}
        assert one.box.run_read(lambda c: c.execute(
            "SELECT late, intervals FROM hj212_fold").fetchone()) == (
            3, '[["0001-01-01T00:00:00", 5]]')
    finally:
        one.box.close()
