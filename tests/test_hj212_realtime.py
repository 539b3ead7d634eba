"""A stored sample as a 2011 real-time record (hj212/realtime.py): codes, flags, units,
DataTime in local time, unmapped channels left out. Bodies come from the agent's own
encoder (payload.encode_sample_body), so the test follows the outbox's format."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from edge_agent.config.schema import Hj212Channel
from edge_agent.hj212.codes import shipped_table
from edge_agent.hj212.cp import parse_region
from edge_agent.hj212.realtime import UnitMismatch, convert, mappings, realtime_record
from edge_agent.model import Quality, Reading, Sample
from edge_agent.payload import encode_sample_body

ACQUIRED = datetime(2026, 3, 15, 2, 15, 0, 400000, tzinfo=UTC)
ANALYSED = datetime(2026, 3, 15, 2, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def shanghai() -> Iterator[None]:
    """The station's local time is China's (UTC+8), as on the stations this is for."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Shanghai"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def body(*readings: tuple[str, object, str, Quality, str | None],
         instrument_time: datetime | None = None) -> str:
    sample = Sample("gc-1", ACQUIRED, tuple(
        Reading("gc-1", channel, value, unit, quality, ACQUIRED, reason)
        for channel, value, unit, quality, reason in readings), instrument_time)
    return encode_sample_body(sample, 7, "gc-1:7")


MAP = mappings((Hj212Channel("gc-1", "benzene", "a25002"),
                Hj212Channel("gc-1", "toluene", "a25003", "ug/m3"),
                Hj212Channel("h2s-1", "h2s", "a21028")), shipped_table())


def test_mapped_channels_become_rtd_and_flag_in_station_order_unmapped_left_out() -> None:
    record = realtime_record(body(("toluene", 0.0123, "mg/m3", Quality.GOOD, None),
                                  ("benzene", 1.5, "mg/m3", Quality.SUSPECT, "calibrating"),
                                  ("xylenes", 3.0, "mg/m3", Quality.GOOD, None)),
                             MAP["gc-1"])
    assert record is not None
    assert record.cp == ("DataTime=20260315101500;a25002-Rtd=1.5,a25002-Flag=C;"
                         "a25003-Rtd=12.3,a25003-Flag=N")
    assert "xylenes" not in record.cp and not record.mismatched
    assert record.acquired_unix == ACQUIRED.timestamp()


def test_a_gcs_analysis_time_is_the_datatime() -> None:
    record = realtime_record(body(("benzene", 2, "mg/m3", Quality.GOOD, None),
                                  instrument_time=ANALYSED), MAP["gc-1"])
    assert record is not None
    assert parse_region(record.cp).get("DataTime") == "20260315101000"


def test_a_bad_reading_without_value_sends_its_flag_only() -> None:
    record = realtime_record(body(("benzene", None, "mg/m3", Quality.BAD, "timeout")),
                             MAP["gc-1"])
    assert record is not None
    assert record.cp.endswith(";a25002-Flag=B")


def test_a_unit_the_platform_cannot_take_is_flagged_d_without_value() -> None:
    record = realtime_record(body(("benzene", 4.0, "ppm", Quality.GOOD, None)), MAP["gc-1"])
    assert record is not None
    assert record.cp.endswith(";a25002-Flag=D")
    assert record.mismatched == ("benzene",)


def test_a_sample_without_any_mapped_channel_is_no_record() -> None:
    assert realtime_record(body(("xylenes", 3.0, "mg/m3", Quality.GOOD, None)),
                           MAP["gc-1"]) is None


def test_a_converted_value_is_sent_without_binary_noise() -> None:
    """0.654 ug/m3 is 0.000654 mg/m3, not 0.0006540000000000001 (a code without decimals
    in the table is sent as Python's repr: the conversion's rounding error showed)."""
    from edge_agent.hj212.cp import format_number

    assert format_number(convert(0.654, "ug/m3", "mg/m3")) == "0.000654"
    assert format_number(convert(2.3, "mg/m3", "ug/m3")) == "2300"
    assert format_number(convert(0.1, "ppm", "ppb")) == "100"


def test_units_convert_within_a_family_only() -> None:
    assert convert(1.0, "ppm", "ppb") == 1000.0
    assert convert(250.0, "µg/m³", "mg/m3") == 0.25
    assert convert(7.0, "", "mg/m3") == 7.0
    with pytest.raises(UnitMismatch):
        convert(1.0, "ppm", "mg/m3")
