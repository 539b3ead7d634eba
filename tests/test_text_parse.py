"""A record's text to values, quality and time, by table (no I/O)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from edge_agent_drivers.serialtext.protocol.parse import (
    RecordError,
    accepts,
    parse_record,
    to_number,
)
from edge_agent_drivers.serialtext.protocol.settings import (
    Locator,
    RecordFormat,
    StatusField,
    StatusRule,
    TextChannel,
    TimeField,
)

from edge_agent.model import Quality

GOOD, SUSPECT, BAD = Quality.GOOD, Quality.SUSPECT, Quality.BAD


def at(*fields: int) -> Locator:
    return Locator(fields=fields)


def group(name: str) -> Locator:
    return Locator(group=name)


NOX = RecordFormat(
    channels=(TextChannel("no", at(4), unit="ppb"), TextChannel("so2", at(5), unit="ppb"),
              TextChannel("temp", at(6), scale=0.1, offset=-40, unit="degC")),
    delimiter=",", field_count=7, accept=re.compile("^MD"),
    time=TimeField(at(2, 3), "%Y-%m-%d %H:%M:%S", timedelta(hours=8)),
    status=(StatusField(at(7), (("A", StatusRule(GOOD)),
                                ("C", StatusRule(SUSPECT, "calibrating")),
                                ("F", StatusRule(BAD, "fault")))),),
)


def outcome(body: bytes, fmt: RecordFormat = NOX) -> dict[str, tuple]:
    record = parse_record(body, fmt)
    return {v.name: (v.value, v.quality, v.reason) for v in record.values}


@pytest.mark.parametrize(("body", "expected"), [
    (b"MD01,2024-05-06,14:30:00,+0012.3,3,650,A",
     {"no": (12.3, GOOD, None), "so2": (3, GOOD, None), "temp": (25.0, GOOD, None)}),
    (b"MD01,2024-05-06,14:30:00, 12.3 , -3 ,650,C",
     {"no": (12.3, SUSPECT, "calibrating"), "so2": (-3, SUSPECT, "calibrating"),
      "temp": (25.0, SUSPECT, "calibrating")}),
    (b"MD01,2024-05-06,14:30:00,----,3,650,F",
     {"no": (None, BAD, "not_a_number"), "so2": (3, BAD, "fault"), "temp": (25.0, BAD, "fault")}),
    (b"MD01,2024-05-06,14:30:00,1.2E-3,,650,Q",
     {"no": (0.0012, SUSPECT, "unknown_status"), "so2": (None, BAD, "no_value"),
      "temp": (25.0, SUSPECT, "unknown_status")}),
    (b"  MD01,2024-05-06,14:30:00,1,2,3,A\r", {"no": (1, GOOD, None), "so2": (2, GOOD, None),
                                             "temp": (pytest.approx(-39.7), GOOD, None)}),
], ids=["measuring", "calibrating-with-spaces", "fault-and-dashes", "unknown-status-empty",
        "surrounding-whitespace"])
def test_delimited_record_gives_values_and_status_quality(body, expected):
    assert outcome(body) == expected


def test_instrument_time_is_converted_from_the_instrument_zone_to_utc():
    record = parse_record(b"MD01,2024-05-06,14:30:00,1,2,3,A", NOX)
    assert record.instrument_time == datetime(2024, 5, 6, 6, 30, tzinfo=UTC)


def test_a_time_with_its_own_zone_keeps_it():
    fmt = RecordFormat(channels=(TextChannel("v", at(2)),), delimiter=";",
                       time=TimeField(at(1), "%Y-%m-%dT%H:%M:%S%z", timedelta(hours=8)))
    record = parse_record(b"2024-05-06T14:30:00+0200;1", fmt)
    assert record.instrument_time == datetime(2024, 5, 6, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(("body", "message"), [
    (b"MD01,2024-05-06,14:30:00,1,2,3", "6 fields, expected 7"),
    (b"MD01,2024-05-06,14:30:00,1,2,3,A,extra", "8 fields, expected 7"),
    (b"MD01,06.05.2024,14:30:00,1,2,3,A", "does not match format"),
    (b"", "1 fields, expected 7"),
    (b"MD01,0001-01-01,00:00:00,1,2,3,A", "out of range in UTC"),  # found by fuzzing
], ids=["truncated", "too-many", "bad-date", "empty", "before-year-1-in-utc"])
def test_record_of_the_wrong_shape_is_a_bad_frame(body, message):
    with pytest.raises(RecordError, match=message) as caught:
        parse_record(body, NOX)
    assert caught.value.reason == "bad_frame"


def test_field_beyond_the_record_is_a_bad_frame_without_field_count():
    fmt = RecordFormat(channels=(TextChannel("a", at(1)), TextChannel("b", at(3))))
    with pytest.raises(RecordError, match="channel 'b' is field 3, but the record has only 2"):
        parse_record(b"1,2", fmt)


def test_spaces_delimiter_takes_runs_of_spaces_and_tabs():
    fmt = RecordFormat(channels=(TextChannel("pm10", at(2)), TextChannel("flow", at(3), 0.1)),
                       delimiter=None)
    assert outcome(b"D   0042\t 0167 ", fmt) == {"pm10": (42, GOOD, None),
                                                "flow": (pytest.approx(16.7), GOOD, None)}


H2S = RecordFormat(
    channels=(TextChannel("h2s", group("h2s"), unit="ppm"), TextChannel("t", group("t"))),
    pattern=re.compile(r"^H2S,(?P<h2s>[^,]*),ppm,(?P<status>\w+)(?:,T=(?P<t>[-\d.]+))?$"),
    status=(StatusField(group("status"), (("OK", StatusRule(GOOD)),
                                          ("ERR", StatusRule(BAD, "fault"))),
                        channels=("h2s",)),),
)


@pytest.mark.parametrize(("body", "expected"), [
    (b"H2S,0.012,ppm,OK,T=21.5", {"h2s": (0.012, GOOD, None), "t": (21.5, GOOD, None)}),
    (b"H2S,0.012,ppm,ERR,T=21.5", {"h2s": (0.012, BAD, "fault"), "t": (21.5, GOOD, None)}),
    (b"H2S,0.012,ppm,OK", {"h2s": (0.012, GOOD, None), "t": (None, BAD, "no_value")}),
], ids=["all-groups", "status-only-for-named-channels", "optional-group-missing"])
def test_pattern_record_gives_values_by_group(body, expected):
    assert outcome(body, H2S) == expected


def test_record_not_matching_the_pattern_is_a_bad_frame():
    with pytest.raises(RecordError, match="does not match the pattern"):
        parse_record(b"CO,1.0,ppm,OK", H2S)


def test_worst_status_wins_when_several_fields_flag_one_channel():
    fmt = RecordFormat(
        channels=(TextChannel("a", at(1)), TextChannel("b", at(2))),
        status=(StatusField(at(3), (("0", StatusRule(GOOD)),), StatusRule(SUSPECT, "warmup")),
                StatusField(at(4), (("0", StatusRule(GOOD)),), StatusRule(BAD, "fault"),
                            channels=("b",))),
    )
    assert outcome(b"1,2,1,1", fmt) == {"a": (1, SUSPECT, "warmup"), "b": (2, BAD, "fault")}
    assert outcome(b"1,2,0,1", fmt) == {"a": (1, GOOD, None), "b": (2, BAD, "fault")}


@pytest.mark.parametrize(("token", "expected"), [
    ("12", (12, None)), ("-0.5", (-0.5, None)), ("+001.20", (1.2, None)), (".5", (0.5, None)),
    ("5.", (5.0, None)), ("1.2E-3", (0.0012, None)), ("----", (None, "not_a_number")),
    ("OVR", (None, "not_a_number")), ("nan", (None, "not_a_number")),
    ("inf", (None, "not_a_number")), ("1_000", (None, "not_a_number")),
    ("0x1A", (None, "not_a_number")), ("1,5", (None, "not_a_number")),
    ("1e999", (None, "infinite")), ("", (None, "no_value")), (None, (None, "no_value")),
    ("9" * 65, (None, "not_a_number")),
], ids=str)
def test_only_plain_decimal_numbers_are_numbers(token, expected):
    assert to_number(token) == expected


def test_whole_numbers_stay_integers_only_without_scaling():
    assert to_number("650") == (650, None)
    assert to_number("650", 0.1, -40) == (pytest.approx(25.0), None)
    assert isinstance(to_number("650", 2.0)[0], float)


def test_accept_pattern_tells_records_from_other_messages():
    assert accepts(b"MD01,1", NOX)
    assert not accepts(b"AL01,HIGH NO", NOX)
    assert accepts(b"anything", H2S)  # no accept pattern: every record
