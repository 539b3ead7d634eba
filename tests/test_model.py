"""The shared types keep what their frozen dataclass declaration promises, although
``Reading`` and ``Judged`` write their ``__init__`` out for speed (issue 11)."""

from __future__ import annotations

import dataclasses
import inspect
from datetime import UTC, datetime

import pytest

from edge_agent.model import PolledReadings, Quality, Reading
from edge_agent.values import Judged

NOW = datetime(2026, 12, 3, tzinfo=UTC)


@pytest.mark.parametrize("cls", [Reading, Judged])
def test_init_parameters_are_the_fields_in_order_with_their_defaults(cls):
    parameters = list(inspect.signature(cls).parameters.values())
    fields = dataclasses.fields(cls)
    assert [p.name for p in parameters] == [f.name for f in fields]
    assert [p.default for p in parameters] == [
        inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        for f in fields]


def test_reading_is_frozen_comparable_hashable_and_replaceable():
    reading = Reading("dev", "gas", 1.5, "ppm", Quality.GOOD, NOW)
    with pytest.raises(dataclasses.FrozenInstanceError):
        reading.value = 2.0  # type: ignore[misc]
    same = Reading(device_id="dev", channel="gas", value=1.5, unit="ppm",
                   quality=Quality.GOOD, acquired_at=NOW, reason=None)
    assert reading == same and hash(reading) == hash(same)
    flagged = dataclasses.replace(reading, quality=Quality.SUSPECT, reason="calibrating")
    assert (flagged.quality, flagged.reason, flagged.value) == (Quality.SUSPECT,
                                                                "calibrating", 1.5)
    assert reading.quality is Quality.GOOD and reading.instrument_time is None
    assert repr(reading).startswith("Reading(device_id='dev', channel='gas', value=1.5")


def test_judged_is_frozen_and_compares_by_value():
    judged = Judged(18.9, Quality.GOOD, raw=189)
    with pytest.raises(dataclasses.FrozenInstanceError):
        judged.raw = 1  # type: ignore[misc]
    assert judged == Judged(18.9, Quality.GOOD, None, 189)
    assert (judged.reason, judged.raw) == (None, 189)


def test_polled_readings_are_the_readings_init_builds():
    """``PolledReadings`` builds a poll's readings from its outcomes, on first use: the
    same readings, field for field, as ``Reading(...)``, in the channels' order."""
    outcomes = {"gas": (1.5, Quality.GOOD, None, 15), "flow": (None, Quality.BAD, "sentinel",
                                                               -1)}
    polled = PolledReadings("dev", NOW, [("flow", "l/min"), ("gas", "ppm")], outcomes)
    expected = (Reading("dev", "flow", None, "l/min", Quality.BAD, NOW, "sentinel"),
                Reading("dev", "gas", 1.5, "ppm", Quality.GOOD, NOW))
    assert [dataclasses.astuple(reading) for reading in polled] == \
        [dataclasses.astuple(reading) for reading in expected]
    assert polled.readings() is polled.readings()  # built once, then kept
    assert polled.first_quality() is Quality.BAD


def test_polled_readings_behave_as_the_tuple_they_stand_for():
    outcomes = {"gas": (1.5, Quality.GOOD, None, 15), "flow": (2.0, Quality.SUSPECT,
                                                               "out_of_range", 20)}
    channels = [("gas", "ppm"), ("flow", "l/min")]
    polled = PolledReadings("dev", NOW, channels, outcomes)
    as_tuple = PolledReadings("dev", NOW, channels, outcomes).readings()
    assert len(polled) == 2 and polled[1] == as_tuple[1] and polled[-1:] == as_tuple[1:]
    assert polled == as_tuple and as_tuple == polled and (polled != as_tuple) is False
    assert hash(polled) == hash(as_tuple)
    assert polled == PolledReadings("dev", NOW, list(channels), dict(outcomes))
    assert polled != as_tuple[:1] and polled != list(as_tuple)  # a tuple is not a list
    assert list(reversed(polled)) == list(reversed(as_tuple))
    assert as_tuple[0] in polled and polled.index(as_tuple[1]) == 1
    assert repr(polled) == f"PolledReadings{as_tuple!r}"
    empty = PolledReadings("dev", NOW, [], {})
    assert not empty and empty.first_quality() is None and empty == ()
