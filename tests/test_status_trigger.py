"""Status words -> quality, and the new-analysis decision of GC/FTIR triggers: pure tables."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from edge_agent_drivers.modbus.settings import (
    Channel,
    InstrumentClock,
    QualityRule,
    TimeFormat,
    Trigger,
    TriggerKind,
)
from edge_agent_drivers.modbus.status import apply_status
from edge_agent_drivers.modbus.trigger import (
    ClockError,
    TriggerState,
    decide,
    instrument_time,
)

from edge_agent.model import Quality, Reading

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
STATUS = Channel("status", 0, quality_bits=(
    (0, QualityRule(Quality.BAD, "fault")),
    (3, QualityRule(Quality.SUSPECT, "calibrating", ("benzene",))),
    (4, QualityRule(Quality.SUSPECT, "maintenance")),
), quality_values=((7, QualityRule(Quality.SUSPECT, "warmup")),))
CHANNELS = (STATUS, Channel("benzene", 1), Channel("toluene", 2))


def readings(**overrides):
    base = {"status": (0, Quality.GOOD, None), "benzene": (1.5, Quality.GOOD, None),
            "toluene": (2.5, Quality.GOOD, None)}
    base.update(overrides)
    return [Reading("gc", name, value, "", quality, NOW, reason)
            for name, (value, quality, reason) in base.items()]


def outcome(result):
    return {r.channel: (r.quality.value, r.reason) for r in result}


@pytest.mark.parametrize(("status", "expected"), [
    (0, {"status": ("GOOD", None), "benzene": ("GOOD", None), "toluene": ("GOOD", None)}),
    (0b1, {"status": ("GOOD", None), "benzene": ("BAD", "fault"), "toluene": ("BAD", "fault")}),
    (0b1000, {"status": ("GOOD", None), "benzene": ("SUSPECT", "calibrating"),
              "toluene": ("GOOD", None)}),
    (0b11000, {"status": ("GOOD", None), "benzene": ("SUSPECT", "calibrating+maintenance"),
               "toluene": ("SUSPECT", "maintenance")}),
    (0b11001, {"status": ("GOOD", None), "benzene": ("BAD", "fault+calibrating+maintenance"),
               "toluene": ("BAD", "fault+maintenance")}),
    (7, {"status": ("GOOD", None), "benzene": ("BAD", "fault+warmup"),
         "toluene": ("BAD", "fault+warmup")}),
])
def test_status_bits_and_values_lower_the_quality_of_their_channels(status, expected):
    raw = {"status": status, "benzene": 15, "toluene": 25}
    assert outcome(apply_status(readings(), CHANNELS, raw)) == expected


def test_a_reading_already_bad_keeps_its_own_reason():
    own = readings(benzene=(None, Quality.BAD, "sentinel"))
    result = outcome(apply_status(own, CHANNELS, {"status": 0b10000}))
    assert result["benzene"] == ("BAD", "sentinel")
    assert result["toluene"] == ("SUSPECT", "maintenance")


def test_suspect_out_of_range_adds_the_status_reason():
    own = readings(toluene=(250.0, Quality.SUSPECT, "out_of_range"))
    result = outcome(apply_status(own, CHANNELS, {"status": 0b10000}))
    assert result["toluene"] == ("SUSPECT", "out_of_range+maintenance")


def test_unreadable_status_word_flags_nothing():
    own = readings(status=(None, Quality.BAD, "exception_02"))
    result = outcome(apply_status(own, CHANNELS, {"status": None}))
    assert result["benzene"] == ("GOOD", None)


COUNTER = Trigger(TriggerKind.COUNTER, "cycle")
FLAG = Trigger(TriggerKind.FLAG, "new")
FLAG_CLEARED = Trigger(TriggerKind.FLAG, "new", clear_flag=True)
STAMP = Trigger(TriggerKind.TIMESTAMP, "")
T1 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 29, 10, 5, tzinfo=UTC)


def run(trigger, polls, state=None):
    """Feed (raw values, instrument time) polls; list which were published."""
    state = state or TriggerState()
    published = []
    for index, (raw, when) in enumerate(polls):
        decision = decide(trigger, raw, when, state)
        state = decision.state
        if decision.new:
            published.append(index)
        if decision.clear_flag:  # the driver writes 0 after the commit, and succeeds
            raw["new"] = 0
            state = replace(state, pending_clear=False)
    return published, state


def test_counter_publishes_each_cycle_once():
    polls = [({"cycle": 5}, None), ({"cycle": 5}, None), ({"cycle": 6}, None),
             ({"cycle": 6}, None), ({"cycle": 0}, None)]  # counter wrapped or GC restarted
    assert run(COUNTER, polls)[0] == [0, 2, 4]


def test_counter_state_survives_a_restart_through_its_text_form():
    _, state = run(COUNTER, [({"cycle": 5}, None)])
    restored = TriggerState.load(state.dump())
    assert run(COUNTER, [({"cycle": 5}, None), ({"cycle": 6}, None)], restored)[0] == [1]


def test_flag_without_clearing_publishes_on_the_rising_edge_only():
    polls = [({"new": 0}, None), ({"new": 1}, None), ({"new": 1}, None),
             ({"new": 0}, None), ({"new": 1}, None)]
    assert run(FLAG, polls)[0] == [1, 4]


def test_flag_with_clock_publishes_a_new_analysis_while_the_flag_stays_set():
    polls = [({"new": 1}, T1), ({"new": 1}, T1), ({"new": 1}, T2)]
    assert run(FLAG, polls)[0] == [0, 2]


def test_cleared_flag_after_a_kill_between_commit_and_clear_is_not_published_again():
    _, state = run(FLAG_CLEARED, [({"new": 1}, T1)])
    # The kill came before the clearing write: the flag is still set for analysis T1.
    restored = TriggerState.load(state.dump())
    decision = decide(FLAG_CLEARED, {"new": 1}, T1, restored)
    assert not decision.new and decision.clear_flag
    assert decide(FLAG_CLEARED, {"new": 1}, T2, restored).new


def test_cleared_flag_publishes_each_analysis_once_while_polls_repeat():
    polls = [({"new": 1}, None), ({"new": 0}, None), ({"new": 0}, None), ({"new": 1}, None)]
    assert run(FLAG_CLEARED, polls)[0] == [0, 3]


def test_failing_clear_is_retried_without_publishing_the_analysis_again():
    first = decide(FLAG_CLEARED, {"new": 1}, None, TriggerState())
    assert first.new and first.clear_flag and first.state.pending_clear
    for _ in range(3):  # the write keeps failing: the flag stays set
        again = decide(FLAG_CLEARED, {"new": 1}, None, first.state)
        assert not again.new and again.clear_flag


def test_flag_already_set_at_restart_is_published_again_rather_than_lost():
    """Without a clock the agent cannot tell the last analysis from a new one whose flag
    rose while it was down: it publishes (a duplicate at worst, never a loss)."""
    _, state = run(FLAG, [({"new": 1}, None)])
    restored = TriggerState.load(state.dump())
    assert decide(FLAG, {"new": 1}, None, restored).new
    assert decide(FLAG_CLEARED, {"new": 1}, None, restored).new


def test_flag_with_clock_is_exact_across_restart():
    _, state = run(FLAG, [({"new": 1}, T1)])
    restored = TriggerState.load(state.dump())
    assert not decide(FLAG, {"new": 1}, T1, restored).new
    assert decide(FLAG, {"new": 1}, T2, restored).new


def test_timestamp_trigger_publishes_each_measurement_once():
    polls = [({}, T1), ({}, T1), ({}, T2), ({}, T2)]
    assert run(STAMP, polls)[0] == [0, 2]


def test_unreadable_saved_state_behaves_as_a_first_start():
    assert TriggerState.load("{not json") == TriggerState()
    assert TriggerState.load(None) == TriggerState()


def test_instrument_clock_from_fields_in_local_time():
    clock = InstrumentClock(TimeFormat.FIELDS, ("y", "mo", "d", "h", "mi", "s"), 480)
    raw = {"y": 26, "mo": 11, "d": 29, "h": 20, "mi": 5, "s": 30}
    assert instrument_time(clock, raw) == datetime(2026, 11, 29, 12, 5, 30, tzinfo=UTC)


def test_instrument_clock_from_unix_seconds():
    clock = InstrumentClock(TimeFormat.UNIX, ("t",))
    assert instrument_time(clock, {"t": 1795003200}) == datetime.fromtimestamp(1795003200, UTC)


@pytest.mark.parametrize("raw", [
    {"y": 2026, "mo": 13, "d": 1, "h": 0, "mi": 0, "s": 0},
    {"y": 2026, "mo": 2, "d": 30, "h": 0, "mi": 0, "s": 0},
    {"y": 2026, "mo": 1, "d": 1, "h": 0, "mi": 0, "s": None},
])
def test_invalid_instrument_time_is_an_error_not_a_wrong_time(raw):
    clock = InstrumentClock(TimeFormat.FIELDS, ("y", "mo", "d", "h", "mi", "s"))
    with pytest.raises(ClockError):
        instrument_time(clock, raw)
