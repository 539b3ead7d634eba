"""The types every stage shares: a Reading, and the Sample one poll of one device produced.

Times are timezone-aware UTC datetimes in memory and ISO-8601 strings in payloads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum


class Quality(StrEnum):
    """How far a consumer may trust a value (see docs/payload.md for HJ 212 / Sparkplug)."""

    GOOD = "GOOD"
    SUSPECT = "SUSPECT"
    BAD = "BAD"


@dataclass(frozen=True, init=False)
class Reading:
    """One channel's value from one poll.

    ``value`` is None exactly when the read failed; ``reason`` then says why
    (``timeout``, ``exception_02``, ``no_connection``...). ``instrument_time`` is the
    instrument's own timestamp where it provides one.

    Frozen, but with ``__init__`` written out: one is built per channel per poll, and
    the generated frozen ``__init__`` (one ``object.__setattr__`` per field) cost twice
    as much as setting all fields at once (issue 11). Its parameters are the fields, in
    order, with the same defaults (tests/test_model.py holds them together).
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
        object.__setattr__(self, "__dict__", {
            "device_id": device_id, "channel": channel, "value": value, "unit": unit,
            "quality": quality, "acquired_at": acquired_at, "reason": reason,
            "instrument_time": instrument_time})


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
