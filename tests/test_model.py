"""The shared types keep what their frozen dataclass declaration promises, although
``Reading`` and ``Judged`` write their ``__init__`` out for speed (issue 11)."""

from __future__ import annotations

import dataclasses
import inspect
from datetime import UTC, datetime

import pytest

from edge_agent.model import Quality, Reading
from edge_agent.values import Judged, readings_of

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


def test_readings_built_in_bulk_are_the_readings_init_builds():
    """``values.readings_of`` builds the poll's readings from judged outcomes: the same
    readings, field for field, as ``Reading(...)``."""
    outcomes = {"gas": (1.5, Quality.GOOD, None, 15), "flow": (None, Quality.BAD, "sentinel",
                                                               -1)}
    built = readings_of("dev", NOW, [("flow", "l/min"), ("gas", "ppm")], outcomes)
    expected = [Reading("dev", "flow", None, "l/min", Quality.BAD, NOW, "sentinel"),
                Reading("dev", "gas", 1.5, "ppm", Quality.GOOD, NOW)]
    assert built == expected
    assert [dataclasses.astuple(reading) for reading in built] == \
        [dataclasses.astuple(reading) for reading in expected]
