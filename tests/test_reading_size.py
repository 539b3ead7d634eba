"""``Reading`` is slotted (edge_agent/model.py): one per channel per poll, and each
device's last sample stays in memory, so it must not carry an instance dict. It still
behaves as the frozen dataclass it is declared as (tests/test_model.py)."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import sys
from datetime import UTC, datetime

import pytest

from edge_agent.model import Quality, Reading

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def test_reading_has_no_instance_dict_and_is_small():
    reading = Reading("dev", "gas", 1.5, "ppm", Quality.GOOD, NOW, "x", NOW)
    assert not hasattr(reading, "__dict__")
    assert sys.getsizeof(reading) <= 16 + 8 * len(dataclasses.fields(Reading)) + 16


def test_every_field_is_set_by_init_and_frozen():
    reading = Reading("dev", "gas", 1.5, "ppm", Quality.SUSPECT, NOW, "calibrating", NOW)
    assert [getattr(reading, f.name) for f in dataclasses.fields(Reading)] == \
        ["dev", "gas", 1.5, "ppm", Quality.SUSPECT, NOW, "calibrating", NOW]
    with pytest.raises(dataclasses.FrozenInstanceError):
        reading.reason = None  # type: ignore[misc]


def test_copies_and_pickles_compare_equal():
    reading = Reading("dev", "gas", None, "ppm", Quality.BAD, NOW, "timeout")
    for other in (copy.copy(reading), copy.deepcopy(reading),
                  pickle.loads(pickle.dumps(reading))):
        assert other == reading and hash(other) == hash(reading)
