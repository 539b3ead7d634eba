"""The pollutant code table (shipped, station additions, duplicates refused), data flags
from the agent's qualities (the docs/payload.md table) and one period's statistics."""

from __future__ import annotations

import math

import pytest

from edge_agent.config.errors import ConfigError
from edge_agent.hj212.codes import merge, read_codes, shipped_table
from edge_agent.hj212.flags import flag_for
from edge_agent.hj212.stats import PeriodSample, period_stats
from edge_agent.model import Quality


def test_the_shipped_table_has_the_chemical_park_codes_with_names_and_units():
    table = shipped_table()
    benzene, nmhc, h2s, cl2 = table["a25002"], table["a24088"], table["a21028"], table["a21022"]
    assert (benzene.name_zh, benzene.name_en, benzene.unit) == ("苯", "benzene", "mg/m3")
    assert (nmhc.name_en, nmhc.decimals) == ("non-methane hydrocarbons", 3)
    assert (h2s.name_zh, cl2.name_zh) == ("硫化氢", "氯气")
    assert table["a24078"].name_en == "1,3-butadiene"  # a comma inside a flow mapping
    assert all(code.versions == (2017, 2025) for code in table.values())
    assert len(table) >= 70


def test_a_station_adds_codes_of_its_own(tmp_path):
    extra = tmp_path / "codes.yaml"
    extra.write_text("codes:\n"
                     "  a99948: {zh: 异戊二烯, en: isoprene, unit: ug/m3, versions: [2025]}\n"
                     "  v10101: {zh: 原始谱图, en: raw spectrum, unit: '-', versions: [2025]}\n",
                     encoding="utf-8")
    table = merge(shipped_table(), read_codes(extra, "station.yaml"))
    assert table["a99948"].unit == "ug/m3" and table["a99948"].versions == (2025,)
    assert table["v10101"].where == "station.yaml:3"


def test_a_code_the_table_already_has_is_refused_naming_both_places(tmp_path):
    extra = tmp_path / "codes.yaml"
    extra.write_text("codes:\n  a25002: {zh: 苯, en: benzene, unit: ug/m3, versions: [2017]}\n",
                     encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        merge(shipped_table(), read_codes(extra, "station.yaml"))
    line = shipped_table()["a25002"].where.rpartition(":")[2]
    assert str(caught.value) == (
        "station.yaml:2: codes.a25002: a25002 is already defined at "
        f"edge_agent/hj212/codes.yaml:{line} (benzene); use that one or a code of your own")


def test_every_problem_of_a_code_file_is_listed_with_its_line(tmp_path):
    extra = tmp_path / "codes.yaml"
    extra.write_text("codes:\n"
                     "  a99001: {zh: x, en: y, unit: mg/m3, versions: [2018]}\n"
                     "  a99002: {zh: 1,3-x, en: y, unit: mg/m3, versions: [2017]}\n"
                     "  a99003: {en: y, unit: mg/m3, versions: [2017], decimals: -1}\n"
                     "  a-9: {zh: x, en: y, unit: mg/m3, versions: [2017]}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_codes(extra, "station.yaml")
    assert str(caught.value).splitlines() == [
        "station.yaml:2: codes.a99001.versions: 2018: expected a list of standards from "
        "2017, 2025",
        "station.yaml:3: codes.a99002.3-x: unknown field (known: zh, en, unit, versions, "
        "decimals); a name with a comma must be in quotes",
        "station.yaml:3: codes.a99002.zh: missing or not text: expected e.g. 苯",
        "station.yaml:4: codes.a99003.zh: missing or not text: expected e.g. 苯",
        "station.yaml:4: codes.a99003.decimals: expected a whole number 0 to 9",
        "station.yaml:5: codes.a-9: a code is 2 to 12 letters and digits (like a25002)",
    ]


@pytest.mark.parametrize("quality, reason, flag", [
    (Quality.GOOD, None, "N"),
    (Quality.SUSPECT, "out_of_range", "T"),
    (Quality.BAD, "out_of_range", "T"),
    (Quality.SUSPECT, "calibrating", "C"),
    (Quality.SUSPECT, "maintenance", "M"),
    (Quality.SUSPECT, "warmup", "M"),
    (Quality.SUSPECT, "background", "M"),
    (Quality.SUSPECT, "unknown_status", "M"),
    (Quality.BAD, "fault", "D"),
    (Quality.BAD, "instrument_alarm", "D"),
    (Quality.BAD, "sentinel", "D"),
    (Quality.BAD, "bad_bcd", "D"),
    (Quality.BAD, "timeout", "B"),
    (Quality.BAD, "no_connection", "B"),
    (Quality.BAD, "bad_response", "B"),
    (Quality.BAD, "exception_02", "B"),
    (Quality.BAD, "exception_0b", "B"),
    (Quality.BAD, "bad_checksum", "B"),
    (Quality.BAD, "bad_frame", "B"),
    (Quality.BAD, "flood", "B"),
    (Quality.BAD, "trigger_unreadable", "B"),
    (Quality.BAD, "not_a_number", "D"),
    (Quality.BAD, "infinite", "D"),
    (Quality.BAD, "no_value", "D"),
    (Quality.BAD, "agent_error", "D"),
    (Quality.BAD, "a_profile_word", "D"),
    (Quality.SUSPECT, "a_profile_word", "M"),
    (Quality.SUSPECT, "calibrating+maintenance", "C"),
    (Quality.BAD, "out_of_range+maintenance", "M"),
    (Quality.BAD, "calibrating+fault", "D"),
])
def test_flags_follow_the_payload_table(quality, reason, flag):
    assert flag_for(quality, reason) == flag


def test_a_profile_gives_its_own_reasons_a_flag():
    assert flag_for(Quality.SUSPECT, "blowback", {"blowback": "M"}) == "M"
    assert flag_for(Quality.BAD, "stopped", {"stopped": "F"}) == "F"


def _samples(flags: str, values: list[float | None] | None = None) -> list[PeriodSample]:
    values = values or [float(n + 1) for n in range(len(flags))]
    return [PeriodSample(value, flag) for value, flag in zip(values, flags, strict=True)]


def test_a_normal_period_has_min_avg_max_cou_over_its_samples():
    stats = period_stats(_samples("NNNN", [1.0, 2.0, 3.0, 6.0]))
    assert (stats.minimum, stats.average, stats.maximum, stats.total, stats.flag) == (
        1.0, 3.0, 6.0, 12.0, "N")
    assert (stats.valid, stats.count) == (4, 4)


def test_three_quarters_normal_is_still_n_and_the_others_are_left_out():
    stats = period_stats(_samples("NNNC", [1.0, 2.0, 3.0, 100.0]))
    assert (stats.flag, stats.maximum, stats.average) == ("N", 3.0, 2.0)


def test_less_than_three_quarters_normal_is_d_over_the_normal_samples():
    stats = period_stats(_samples("NNCC", [1.0, 3.0, 100.0, 100.0]))
    assert (stats.flag, stats.average, stats.valid) == ("D", 2.0, 2)


def test_missing_samples_count_against_the_period_when_expected_is_given():
    stats = period_stats(_samples("NNN"), expected=60)
    assert (stats.flag, stats.valid, stats.count, stats.average) == ("D", 3, 3, 2.0)
    assert period_stats(_samples("N" * 45), expected=60).flag == "N"
    assert period_stats(_samples("N" * 44), expected=60).flag == "D"


def test_a_calibration_hour_shows_what_was_measured_flagged_d():
    stats = period_stats(_samples("CCC", [5.0, 7.0, 9.0]))
    assert (stats.flag, stats.minimum, stats.maximum, stats.valid) == ("D", 5.0, 9.0, 0)


def test_a_period_without_any_number_has_no_values_only_its_flag():
    for samples in ([], _samples("BB", [None, None]), _samples("D", [math.nan])):
        stats = period_stats(samples)
        assert (stats.minimum, stats.average, stats.maximum, stats.total, stats.flag) == (
            None, None, None, None, "D")


def test_expected_must_be_at_least_one():
    with pytest.raises(ValueError, match="expected samples must be at least 1"):
        period_stats([], expected=0)


def test_a_period_becomes_the_items_of_a_minute_record():
    from edge_agent.hj212.cp import build_region
    from edge_agent.hj212.stats import stats_factor
    stats = period_stats(_samples("NNNN", [0.0104, 0.0125, 0.0131, 0.014]))
    factors = [stats_factor("a25002", stats, decimals=3),
               stats_factor("a00000", period_stats(_samples("NN", [2.0, 3.0])),
                            with_total=True),
               stats_factor("a21028", period_stats(_samples("BB", [None, None])))]
    assert build_region([("DataTime", "20260315101400")], factors) == (
        "DataTime=20260315101400;a25002-Min=0.010,a25002-Avg=0.013,a25002-Max=0.014,"
        "a25002-Flag=N;a00000-Min=2,a00000-Avg=2.5,a00000-Max=3,a00000-Cou=5,"
        "a00000-Flag=N;a21028-Flag=D")


def test_the_inputs_of_a_period_come_from_readings_with_their_qualities():
    from datetime import UTC, datetime

    from edge_agent.hj212.stats import period_samples
    from edge_agent.model import Reading
    at = datetime(2026, 3, 15, 2, 15, tzinfo=UTC)

    def reading(value, quality, reason=None):
        return Reading("gc-1", "benzene", value, "mg/m3", quality, at, reason)

    samples = period_samples([reading(0.01, Quality.GOOD), reading(2, Quality.GOOD),
                              reading(None, Quality.BAD, "timeout"),
                              reading(0.5, Quality.SUSPECT, "calibrating"),
                              reading(True, Quality.GOOD)])
    assert samples == [PeriodSample(0.01, "N"), PeriodSample(2.0, "N"),
                       PeriodSample(None, "B"), PeriodSample(0.5, "C"), PeriodSample(None, "N")]
    stats = period_stats(samples)
    assert (stats.flag, stats.valid, stats.count, stats.maximum) == ("D", 2, 5, 2.0)
