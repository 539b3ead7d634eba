"""HJ 212 statistics, pure parts: where minute (every MinInterval), hourly and daily periods
begin and end in the station's local time, and the running accumulator that keeps a
period between folds gives ``period_stats``'s answer (flags with bad and missing values)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from edge_agent.hj212.periods import (
    DAILY_CN,
    HOURLY_CN,
    MIN_INTERVALS,
    MINUTE_CN,
    period_end,
    period_start,
    to_local,
)
from edge_agent.hj212.stats import Accumulator, PeriodSample, period_stats, stats_factor

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize("minutes", MIN_INTERVALS)
def test_minute_periods_tile_the_hour_for_every_allowed_interval(minutes):
    hour = datetime(2026, 3, 15, 10, 0)
    starts = []
    for second in range(0, 3600, 7):
        moment = hour + timedelta(seconds=second)
        start = period_start(moment, MINUTE_CN, minutes)
        end = period_end(start, MINUTE_CN, minutes)
        assert start <= moment < end
        assert end - start == timedelta(minutes=minutes)
        assert start.minute % minutes == 0 and start.second == 0
        starts.append(start)
    assert len(set(starts)) == 60 // minutes


def test_a_moment_on_a_boundary_starts_the_next_period():
    assert period_start(datetime(2026, 3, 15, 10, 10), MINUTE_CN, 10) == \
        datetime(2026, 3, 15, 10, 10)
    assert period_start(datetime(2026, 3, 15, 10, 9, 59, 999999), MINUTE_CN, 10) == \
        datetime(2026, 3, 15, 10, 0)


@pytest.mark.parametrize("minutes", [0, 7, 8, 60])
def test_a_minute_interval_hj212_does_not_allow_is_refused(minutes):
    with pytest.raises(ValueError, match="expected one of 1, 2, 3"):
        period_start(datetime(2026, 3, 15, 10, 0), MINUTE_CN, minutes)


def test_hourly_and_daily_periods_begin_on_the_hour_and_at_midnight():
    moment = datetime(2026, 12, 31, 23, 59, 59)
    assert period_start(moment, HOURLY_CN, 10) == datetime(2026, 12, 31, 23)
    assert period_end(datetime(2026, 12, 31, 23), HOURLY_CN, 10) == datetime(2027, 1, 1)
    assert period_start(moment, DAILY_CN, 10) == datetime(2026, 12, 31)
    assert period_end(datetime(2026, 12, 31), DAILY_CN, 10) == datetime(2027, 1, 1)
    with pytest.raises(ValueError, match="not a statistics command"):
        period_start(moment, "2011", 10)


def test_the_day_is_the_stations_day_not_utcs():
    """16:30 UTC is 00:30 next day in China: the sample belongs to the local day."""
    local = to_local(datetime(2026, 3, 15, 16, 30, tzinfo=UTC), SHANGHAI)
    assert local == datetime(2026, 3, 16, 0, 30)
    assert period_start(local, DAILY_CN, 10) == datetime(2026, 3, 16)
    assert period_start(local, HOURLY_CN, 10) == datetime(2026, 3, 16, 0)


TABLE = [
    ("all normal", [(1.0, "N"), (2.0, "N"), (6.0, "N")], "N", (1.0, 3.0, 6.0)),
    ("75 % normal is N", [(1.0, "N"), (2.0, "N"), (3.0, "N"), (90.0, "C")], "N",
     (1.0, 2.0, 3.0)),
    ("half bad is D, values of the normal ones", [(1.0, "N"), (3.0, "N"), (50.0, "D"),
                                                  (70.0, "C")], "D", (1.0, 2.0, 3.0)),
    ("failed reads count against 75 %", [(4.0, "N"), (None, "D"), (None, "B"), (4.0, "N")],
     "D", (4.0, 4.0, 4.0)),
    ("only calibration: D with what was measured", [(10.0, "C"), (20.0, "C")], "D",
     (10.0, 15.0, 20.0)),
    ("no value at all: flag only", [(None, "D"), (math.nan, "D")], "D", (None, None, None)),
]


@pytest.mark.parametrize("name, inputs, flag, values", TABLE, ids=[row[0] for row in TABLE])
def test_accumulator_gives_period_stats_answer(name, inputs, flag, values):
    samples = [PeriodSample(value, f) for value, f in inputs]
    whole = period_stats(samples)
    accumulator = Accumulator()
    for sample in samples:
        accumulator.add(sample)
    folded = accumulator.result()
    assert (folded.flag, folded.valid, folded.count) == (flag, whole.valid, whole.count)
    assert (folded.minimum, folded.average, folded.maximum) == pytest.approx(values)
    assert (whole.minimum, whole.average, whole.maximum) == pytest.approx(values)
    assert whole.flag == flag


def test_accumulators_merged_from_batches_equal_one_pass():
    samples = [PeriodSample(float(i % 7) if i % 5 else None, "N" if i % 3 else "C")
               for i in range(40)]
    one = Accumulator()
    for sample in samples:
        one.add(sample)
    merged = Accumulator()
    for first in range(0, 40, 9):
        batch = Accumulator()
        for sample in samples[first:first + 9]:
            batch.add(sample)
        merged.merge(batch)
    assert merged.result() == one.result()


def test_missing_samples_count_when_the_expected_number_is_known():
    accumulator = Accumulator()
    for value in (1.0, 2.0, 3.0):
        accumulator.add(PeriodSample(value, "N"))
    assert accumulator.result().flag == "N"
    assert accumulator.result(expected=6).flag == "D"  # half the samples missing
    assert accumulator.result(expected=4).flag == "N"
    with pytest.raises(ValueError):
        accumulator.result(expected=0)


@pytest.mark.parametrize(("values", "average"), [
    ((2233.0, 2233.0, 2234.0), "2233.33"),
    ((0.000654, 0.000655, 0.000655), "0.000654667"),
    ((1.0, 2.0), "1.5"),
    ((100000.0, 200000.0, 200000.0), "166667"),
    ((-1.0, -2.0, -2.0), "-1.66667"),
])
def test_a_computed_average_is_sent_with_six_significant_digits_when_the_code_fixes_none(
        values, average):
    stats = period_stats([PeriodSample(v, "N") for v in values])
    factor = stats_factor("a21028", stats)
    assert dict(factor.values)["Avg"] == average


def test_a_code_with_decimals_keeps_them_for_the_average():
    stats = period_stats([PeriodSample(v, "N") for v in (2233.0, 2233.0, 2234.0)])
    assert dict(stats_factor("a24088", stats, decimals=3).values)["Avg"] == "2233.333"
