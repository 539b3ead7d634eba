"""The alarm engine, rule by rule, with tables of judged samples: deadband, on-delay by
samples and by seconds, rate of rise, escalation, honest (unconfirmed) alarms, the
communication alarm, and restoring state after a restart."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from edge_agent.alarms.engine import UNSTEADY_POLLS, AlarmEngine
from edge_agent.alarms.events import AlarmEvent, EventKind
from edge_agent.alarms.rules import (
    ChannelAlarms,
    InstrumentRule,
    LimitRule,
    OnDelay,
    RuleKind,
)
from edge_agent.model import Quality, Reading, Sample

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
HIGH, HIGH_HIGH, LOW = RuleKind.HIGH, RuleKind.HIGH_HIGH, RuleKind.LOW


class Events:
    """A sink that keeps what it was given."""

    def __init__(self) -> None:
        self.got: list[AlarmEvent] = []

    def emit(self, events: Sequence[AlarmEvent]) -> None:
        self.got.extend(events)


def sample(second: float, quality: Quality = Quality.GOOD, reason: str | None = None,
           device: str = "det-1", **values: float | None) -> Sample:
    at = T0 + timedelta(seconds=second)
    return Sample(device, at, tuple(
        Reading(device, name, value, "ppm", quality if value is not None else Quality.BAD,
                at, reason) for name, value in values.items()))


def engine(*channels: ChannelAlarms, communication: bool = False) -> tuple[AlarmEngine, Events]:
    sink = Events()
    return AlarmEngine({"det-1": channels}, sink,
                       communication=["det-1"] if communication else []), sink


def feed(alarms: AlarmEngine, values: Sequence[float], channel: str = "h2s",
         step_s: float = 2.0) -> list[list[str]]:
    """The event kinds each value produced, in order."""
    return [[e.kind.value for e in alarms.polled(
        "det-1", sample(i * step_s, **{channel: v}), True, False)]
        for i, v in enumerate(values)]


def test_high_alarm_clears_only_past_its_deadband() -> None:
    alarms, _ = engine(ChannelAlarms("h2s", (LimitRule(HIGH, 10, deadband=1),)))
    kinds = feed(alarms, [5, 10, 9.5, 10.4, 9.1, 8.9, 9.5])
    assert kinds == [[], ["raised"], [], [], [], ["cleared"], []]


def test_low_alarm_uses_the_deadband_upwards() -> None:
    alarms, sink = engine(ChannelAlarms("o2", (LimitRule(LOW, 19.5, deadband=0.5),)))
    kinds = feed(alarms, [20.9, 19.5, 19.8, 20.1], channel="o2")
    assert kinds == [[], ["raised"], [], ["cleared"]]
    assert sink.got[0].threshold == 19.5 and sink.got[0].rule == "low"


def test_on_delay_in_samples_ignores_a_single_spike() -> None:
    alarms, _ = engine(ChannelAlarms("h2s", (LimitRule(HIGH, 10, on_delay=OnDelay(3)),)))
    kinds = feed(alarms, [12, 4, 12, 12, 12, 12])
    assert kinds == [[], [], [], [], ["raised"], []]


def test_on_delay_in_seconds_counts_acquisition_time() -> None:
    rule = LimitRule(HIGH, 10, on_delay=OnDelay(samples=1, seconds=5))
    alarms, sink = engine(ChannelAlarms("h2s", (rule,)))
    kinds = feed(alarms, [12, 12, 12, 12, 12], step_s=2)  # at 0, 2, 4, 6, 8 s
    assert kinds == [[], [], [], ["raised"], []]
    assert sink.got[0].at == T0 + timedelta(seconds=6)


def test_high_high_escalates_and_lowers_the_same_alarm() -> None:
    alarms, sink = engine(ChannelAlarms("h2s", (LimitRule(HIGH, 10, 1),
                                               LimitRule(HIGH_HIGH, 20, 1))))
    kinds = feed(alarms, [11, 25, 18.5, 8])
    assert kinds == [["raised"], ["escalated"], ["lowered"], ["cleared"]]
    assert [e.level for e in sink.got] == [1, 2, 1, 0]
    assert [e.rule for e in sink.got] == ["high", "high_high", "high", "high"]
    assert len({e.alarm for e in sink.got}) == 1
    assert sink.got[1].threshold == 20 and sink.got[1].value == 25


def test_a_jump_straight_past_high_high_raises_at_level_two() -> None:
    alarms, sink = engine(ChannelAlarms("h2s", (LimitRule(HIGH, 10), LimitRule(HIGH_HIGH, 20))))
    feed(alarms, [2, 30])
    assert [(e.kind, e.level) for e in sink.got] == [(EventKind.RAISED, 2)]


def test_rate_of_rise_is_per_minute_over_the_last_minute() -> None:
    rule = LimitRule(RuleKind.RATE_OF_RISE, 1.0, deadband=0.5)
    alarms, sink = engine(ChannelAlarms("nmhc", (rule,)))
    # every 10 s: flat, then +0.5 per 10 s (3/min), then flat again
    values = [2.0] * 7 + [2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5] + [5.5] * 7
    kinds = feed(alarms, values, channel="nmhc", step_s=10)
    flat = [k for k in kinds if k]
    assert flat == [["raised"], ["cleared"]]
    raised = sink.got[0]
    assert raised.value == pytest.approx(1.0) and raised.unit == "ppm/min"
    assert raised.rule == "rate_of_rise" and raised.group == "rate_of_rise"


def test_rate_of_rise_between_gc_cycles_further_apart_than_a_minute() -> None:
    alarms, sink = engine(ChannelAlarms("nmhc", (LimitRule(RuleKind.RATE_OF_RISE, 1.0),)))
    feed(alarms, [1.0, 2.0, 8.0], channel="nmhc", step_s=300)  # 5-minute cycles
    assert [(e.kind, e.value) for e in sink.got] == [(EventKind.RAISED, pytest.approx(1.2))]


@pytest.mark.parametrize(("quality", "reason", "expected"), [
    (Quality.BAD, "fault", "sensor fault suspected"),
    (Quality.SUSPECT, "calibrating", "calibrating"),
    (Quality.SUSPECT, "out_of_range+maintenance",
     "value outside the plausible range; maintenance"),
    (Quality.SUSPECT, "odd_word", "suspect reading (odd_word)"),
])
def test_an_alarm_on_a_doubtful_value_is_raised_unconfirmed_with_the_reason(
        quality: Quality, reason: str, expected: str) -> None:
    alarms, sink = engine(ChannelAlarms("h2s", (LimitRule(HIGH, 10),)))
    events = alarms.polled("det-1", sample(0, quality, reason, h2s=50), True, False)
    assert [(e.kind, e.confirmed, e.reason) for e in events] == [
        (EventKind.RAISED, False, expected)]
    assert sink.got == events


def test_an_unconfirmed_alarm_is_confirmed_once_a_good_reading_still_exceeds() -> None:
    alarms, _ = engine(ChannelAlarms("h2s", (LimitRule(HIGH, 10),)))
    first = alarms.polled("det-1", sample(0, Quality.SUSPECT, "calibrating", h2s=50), True, False)
    again = alarms.polled("det-1", sample(2, Quality.SUSPECT, "calibrating", h2s=50), True, False)
    good = alarms.polled("det-1", sample(4, h2s=50), True, False)
    assert [e.kind for e in first + again + good] == [EventKind.RAISED, EventKind.CONFIRMED]
    assert good[0].confirmed and good[0].reason is None


def test_a_reading_without_value_neither_raises_nor_clears() -> None:
    alarms, _ = engine(ChannelAlarms("h2s", (LimitRule(HIGH, 10),)))
    kinds = feed(alarms, [20, None, None, 20, 1])  # type: ignore[list-item]
    assert kinds == [["raised"], [], [], [], ["cleared"]]


def test_alarms_after_failed_polls_are_unconfirmed_until_the_device_is_steady() -> None:
    alarms, _ = engine(ChannelAlarms("h2s", (LimitRule(HIGH, 10),)))
    alarms.polled("det-1", sample(0, h2s=None), False, False)
    raised = alarms.polled("det-1", sample(2, h2s=30), True, False)
    assert [(e.kind, e.confirmed, e.reason) for e in raised] == [
        (EventKind.RAISED, False, "device not answering reliably")]
    later = [alarms.polled("det-1", sample(4 + i, h2s=30), True, False)
             for i in range(UNSTEADY_POLLS)]
    assert [e.kind for batch in later for e in batch] == [EventKind.CONFIRMED]


def test_instrument_alarm_levels_map_to_raise_escalate_clear_with_the_gas_value() -> None:
    rule = InstrumentRule(values=((1, 1), (2, 2)), reports="h2s")
    alarms, sink = engine(ChannelAlarms("alarm_level", instrument=rule))
    for second, (level, gas) in enumerate([(0, 3), (1, 12), (2, 26), (0, 4)]):
        alarms.polled("det-1", sample(second, alarm_level=level, h2s=gas), True, False)
    assert [(e.kind.value, e.level, e.value, e.rule) for e in sink.got] == [
        ("raised", 1, 12, "instrument"), ("escalated", 2, 26, "instrument"),
        ("cleared", 0, 4, "instrument")]


def test_instrument_alarm_bits_and_a_faulty_gas_sensor() -> None:
    rule = InstrumentRule(bits=((0, 1), (1, 2)), reports="h2s")
    alarms, sink = engine(ChannelAlarms("alarm_bits", instrument=rule))
    at = T0
    bad = Sample("det-1", at, (Reading("det-1", "alarm_bits", 0b11, "", Quality.GOOD, at),
                               Reading("det-1", "h2s", 99.0, "ppm", Quality.BAD, at, "fault")))
    alarms.polled("det-1", bad, True, False)
    assert [(e.level, e.confirmed, e.reason) for e in sink.got] == [
        (2, False, "sensor fault suspected")]


def test_a_device_that_stops_answering_raises_its_communication_alarm() -> None:
    alarms, sink = engine(ChannelAlarms("h2s", (LimitRule(HIGH, 10),)), communication=True)
    failed = sample(0, reason="timeout", h2s=None)
    assert alarms.polled("det-1", failed, False, False) == []  # degraded: not yet
    alarms.polled("det-1", failed, False, True)  # marked down
    alarms.polled("det-1", failed, False, True)  # still down: raised once
    alarms.polled("det-1", sample(9, h2s=1), True, False)
    assert [(e.kind, e.group, e.confirmed, e.value) for e in sink.got] == [
        (EventKind.RAISED, "communication", True, "timeout"),
        (EventKind.CLEARED, "communication", True, None)]
    assert sink.got[0].alarm == "det-1/communication/communication"


def test_restore_after_a_restart_does_not_raise_again_and_still_clears() -> None:
    rules = ChannelAlarms("h2s", (LimitRule(HIGH, 10, 1), LimitRule(HIGH_HIGH, 20, 1)))
    before, first = engine(rules)
    feed(before, [12, 25])
    stored = [AlarmEvent.from_dict(event.as_dict()) for event in first.got]
    after, sink = engine(rules)  # a new process after SIGKILL
    assert after.restore(stored) == 1
    assert [e.level for e in after.active()] == [2]
    kinds = feed(after, [24, 18.5, 5])
    assert kinds == [[], ["lowered"], ["cleared"]]
    assert sink.got[-1].alarm == first.got[0].alarm


def test_restore_of_a_cleared_alarm_leaves_it_inactive() -> None:
    rules = ChannelAlarms("h2s", (LimitRule(HIGH, 10),))
    before, first = engine(rules)
    feed(before, [12, 1])
    after, sink = engine(rules)
    assert after.restore(first.got) == 0
    assert feed(after, [12]) == [["raised"]]


def test_restore_ignores_alarms_the_configuration_no_longer_has() -> None:
    before, first = engine(ChannelAlarms("co", (LimitRule(HIGH, 10),)))
    feed(before, [30], channel="co")
    after, _ = engine(ChannelAlarms("h2s", (LimitRule(HIGH, 10),)))
    assert after.restore(first.got) == 0


def test_event_round_trips_through_its_stored_form() -> None:
    alarms, sink = engine(ChannelAlarms("h2s", (LimitRule(HIGH, 10),)))
    alarms.polled("det-1", sample(0, Quality.SUSPECT, "warmup", h2s=11.5), True, False)
    event = sink.got[0]
    assert AlarmEvent.from_dict(event.as_dict()) == event
    assert "UNCONFIRMED: warming up" in event.describe()
    assert "det-1/h2s/high high level 1, 11.5 ppm (limit 10)" in event.describe()


def test_a_gc_answering_without_a_new_analysis_clears_its_communication_alarm() -> None:
    alarms, sink = engine(ChannelAlarms("h2s", (LimitRule(HIGH, 10),)), communication=True)
    alarms.polled("det-1", sample(0, reason="timeout", h2s=None), False, True)
    alarms.polled("det-1", None, True, False)  # answered: nothing new to publish
    assert [e.kind for e in sink.got] == [EventKind.RAISED, EventKind.CLEARED]
