"""The toxic-gas-detector profile's recorded exchanges (drivers/gas_detector/fixtures/
toxic-gas-detector-*) through the profile's own alarm mapping: what the detector's alarm
register says becomes the agent's alarm, confirmed only when the instrument's state
allows it. The readings themselves are checked by tests/test_driver_fixtures.py; this
takes the sample a strict replay of each capture gives and feeds it to the real alarm
engine with the rules the station file's loader built from the profile."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from test_driver_fixtures import device_from, poll_replayed

from edge_agent.alarms.engine import AlarmEngine
from edge_agent.alarms.events import AlarmEvent

FIXTURES = Path(__file__).resolve().parent.parent / "drivers/gas_detector/fixtures"


class Events:
    def __init__(self) -> None:
        self.got: list[AlarmEvent] = []

    def emit(self, events: Sequence[AlarmEvent]) -> None:
        self.got.extend(events)


def alarms_of(case: str, tmp_path: Path) -> list[AlarmEvent]:
    expected = json.loads((FIXTURES / f"{case}.expected.json").read_text())
    device = device_from(expected, tmp_path)
    sample, replay = poll_replayed(FIXTURES / f"{case}.capture.jsonl", device,
                                   expected["replay_as"],
                                   datetime.fromisoformat(expected["polled_at"]))
    assert replay.done
    sink = Events()
    AlarmEngine({device.id: device.alarms}, sink).polled(device.id, sample, True, False)
    return sink.got


def test_alarm_level_2_from_a_steady_detector_is_a_confirmed_high_high(tmp_path):
    got = alarms_of("toxic-gas-detector-alarm-2", tmp_path)
    assert [(e.kind.value, e.level, e.value, e.confirmed, e.rule) for e in got] == [
        ("raised", 2, 25.6, True, "instrument")]


def test_alarm_level_1_while_calibrating_is_raised_unconfirmed_saying_so(tmp_path):
    got = alarms_of("toxic-gas-detector-alarm-while-calibrating", tmp_path)
    assert [(e.kind.value, e.level, e.value, e.confirmed) for e in got] == [
        ("raised", 1, 1.2, False)]
    assert got[0].reason == "calibrating"
