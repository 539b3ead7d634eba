"""The types every stage shares: a Reading, and the Sample one poll of one device produced.

Times are timezone-aware UTC datetimes in memory and ISO-8601 strings in payloads.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum


class Quality(StrEnum):
    """How far a consumer may trust a value (see docs/payload.md for HJ 212 / Sparkplug)."""

    GOOD = "GOOD"
    SUSPECT = "SUSPECT"
    BAD = "BAD"


@dataclass(frozen=True, init=False, slots=True)
class Reading:
    """One channel's value from one poll.

    ``value`` is None exactly when the read failed; ``reason`` then says why
    (``timeout``, ``exception_02``, ``no_connection``...). ``instrument_time`` is the
    instrument's own timestamp where it provides one.

    Frozen and slotted, with ``__init__`` written out (issue 11): one is built per
    channel per poll and each device's last sample stays in memory, so its size counts
    (96 bytes with slots, 328 with an instance dict: about 0.1 MiB for 20 devices of
    25 channels, more while a second's samples commit), and the generated frozen
    ``__init__`` (one ``object.__setattr__`` per field) cost twice what setting each
    slot through its descriptor does. Its parameters are the fields, in order, with the
    same defaults (tests/test_model.py holds them together).
    """

    device_id: str
    channel: str
    value: float | int | bool | str | None
    unit: str
    quality: Quality
    acquired_at: datetime
    reason: str | None = None
    instrument_time: datetime | None = None

    def __init__(self, device_id: str, channel: str, value: float | int | bool | str | None,
                 unit: str, quality: Quality, acquired_at: datetime,
                 reason: str | None = None, instrument_time: datetime | None = None) -> None:
        _set_device_id(self, device_id)
        _set_channel(self, channel)
        _set_value(self, value)
        _set_unit(self, unit)
        _set_quality(self, quality)
        _set_acquired_at(self, acquired_at)
        _set_reason(self, reason)
        _set_instrument_time(self, instrument_time)


# Each slot's own setter: frozen means no ``__setattr__``, so ``__init__`` writes through
# the slot descriptors (bound once here, after the slotted class exists).
(_set_device_id, _set_channel, _set_value, _set_unit, _set_quality, _set_acquired_at,
 _set_reason, _set_instrument_time) = (getattr(Reading, field.name).__set__
                                       for field in fields(Reading))


@dataclass(frozen=True)
class Sample:
    """What one poll of one device produced; the unit the outbox stores and numbers.

    ``extra`` holds optional payload fields (``stream``: the GC stream analysed).
    ``driver_state`` is committed in the same transaction as the sample and handed back
    to the driver after a restart (a GC driver keeps its last published analysis there,
    so an analysis is published exactly once across a SIGKILL).
    """

    device_id: str
    acquired_at: datetime
    readings: tuple[Reading, ...]
    instrument_time: datetime | None = None
    extra: dict[str, object] = field(default_factory=dict)
    driver_state: str | None = None


def utc_now() -> datetime:
    """The acquisition clock: wall time in UTC (stations run NTP; monotonic time is for pacing)."""
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """ISO-8601 UTC with millisecond precision and a trailing Z, as the payload schema wants."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
