"""The types every stage shares: a Reading, and the Sample one poll of one device produced.

Times are timezone-aware UTC datetimes in memory and ISO-8601 strings in payloads.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


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

    Frozen and slotted, with ``__init__`` written out (issue 11): one was built per
    channel per poll (a serial-text driver's poll still does; a Modbus poll's sample
    holds ``PolledReadings``) and each device's last sample stays in memory, so its size counts
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


class PolledReadings(Sequence[Reading]):
    """One poll's readings as its driver decoded them, a ``Reading`` built for each only
    when something asks for one.

    It holds the device's (channel, unit) pairs, in order, and each channel's outcome
    (value, quality, reason, raw: ``edge_agent.values.Outcome``). The outbox encodes a
    stored sample straight from them (``payload.encode_sample_body``), and the status
    page reads them (``health.snapshot.last_values``), so on the way from the device to
    the file and to the page no ``Reading`` is built at all. Indexing, iterating,
    ``len``, ``==`` and ``hash`` behave as on the tuple of those readings (built on first
    use, once, and kept): the alarm engine and ``edge-agent poll`` read a sample as
    before. (Sparkplug and HJ 212 read the stored bodies, not live samples.) It is not a
    tuple: no ``+`` or ``<``, and ``dataclasses.asdict`` copies it as it is; nothing
    asks for those of a poll's readings.

    Memory: a device's last sample stays in memory (poller ``DeviceState``); its dict
    of 25 outcomes with their tuples is about 3.3 KB, about what the 25 slotted
    ``Reading``s and their tuple were (2.6 KB).

    Why (issue 11): building 25 ``Reading`` objects cost 10.9 µs per poll, about a third
    of a poller thread's CPU per sample at the bench's highest rates, and the interpreter
    lock that CPU holds is what the agent's sustained rate runs out of.

    Immutable like the tuple it stands for: the driver hands over a dict of outcomes of
    its own for each poll and never touches it again, and its (channel, unit) pairs as a
    tuple. Two threads asking for the
    readings at once may both build them; they build equal tuples and either is kept.
    """

    __slots__ = ("device_id", "acquired_at", "channels", "outcomes", "_built")

    def __init__(self, device_id: str, acquired_at: datetime,
                 channels: Sequence[tuple[str, str]],
                 outcomes: Mapping[str, tuple[Any, Quality, str | None, Any]]) -> None:
        """``channels``: (name, unit) in the sample's order; ``outcomes``: name -> outcome,
        one for every name of ``channels``."""
        self.device_id = device_id
        self.acquired_at = acquired_at
        self.channels = channels
        self.outcomes = outcomes
        self._built: tuple[Reading, ...] | None = None

    def readings(self) -> tuple[Reading, ...]:
        """The readings as ``Reading`` objects (built on the first call, then kept)."""
        built = self._built
        if built is None:
            device_id, acquired_at, outcomes = self.device_id, self.acquired_at, self.outcomes
            readings = []
            for name, unit in self.channels:
                value, quality, reason, _ = outcomes[name]
                readings.append(Reading(device_id, name, value, unit, quality, acquired_at,
                                        reason))
            built = self._built = tuple(readings)
        return built

    def first_quality(self) -> Quality | None:
        """The first reading's quality without building any reading (None: no readings)."""
        if not self.channels:
            return None
        return self.outcomes[self.channels[0][0]][1]

    def __len__(self) -> int:
        return len(self.channels)

    def __getitem__(self, index):  # type: ignore[no-untyped-def]  # int or slice, as a tuple
        return self.readings()[index]

    def __iter__(self) -> Iterator[Reading]:
        return iter(self.readings())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PolledReadings):
            return self.readings() == other.readings()
        if isinstance(other, tuple):
            return self.readings() == other
        return NotImplemented

    def __hash__(self) -> int:  # equal to its tuple, so hashed as its tuple
        return hash(self.readings())

    def __repr__(self) -> str:
        return f"PolledReadings{self.readings()!r}"


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
    readings: Sequence[Reading]  # a tuple, or PolledReadings straight from a poll
    instrument_time: datetime | None = None
    extra: dict[str, object] = field(default_factory=dict)
    driver_state: str | None = None


def utc_now() -> datetime:
    """The acquisition clock: wall time in UTC (stations run NTP; monotonic time is for pacing)."""
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """ISO-8601 UTC with millisecond precision and a trailing Z, as the payload schema wants."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
