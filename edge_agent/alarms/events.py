"""What an alarm produces, and where it goes.

An ``AlarmEvent`` says that one alarm (``alarm``: device/channel/group, stable across
restarts) changed: ``raised``, ``escalated`` (level 1 to 2), ``lowered`` (2 to 1),
``confirmed`` (an unconfirmed alarm whose condition still holds on a trustworthy
reading) or ``cleared``. ``id`` is unique per event, for de-duplication downstream.

The poller commits a poll's events with the sample that caused them (Outbox.append,
store/alarmrows.py), then the engine hands them to an ``AlarmSink``: the runtime's logs
them and drives the local action (runtime.py). ``as_dict`` is the stored and published
form (docs/payload.md, "Alarm event"); ``from_dict`` reads it back from the outbox's
``alarm_state`` for ``AlarmEngine.restore``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from edge_agent.model import iso_utc


class EventKind(StrEnum):
    RAISED = "raised"
    ESCALATED = "escalated"
    LOWERED = "lowered"
    CONFIRMED = "confirmed"
    CLEARED = "cleared"


@dataclass(frozen=True)
class AlarmEvent:
    """One change of one alarm. ``level`` is the alarm's level after the event (0 once
    cleared); ``rule`` the rule that decided it (``high_high``, ``instrument``,
    ``communication``); ``threshold`` its limit (None for instrument and communication
    alarms); ``value``/``unit`` the triggering reading's. ``confirmed`` False means the
    reading could not be trusted, and ``reason`` says why ("sensor fault suspected",
    "calibrating"); an unconfirmed alarm is still an alarm."""

    kind: EventKind
    device_id: str
    channel: str
    group: str
    rule: str
    level: int
    value: float | int | bool | str | None
    unit: str
    threshold: float | None
    at: datetime
    confirmed: bool
    reason: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def alarm(self) -> str:
        """The alarm's stable key: ``device/channel/group``."""
        return f"{self.device_id}/{self.channel}/{self.group}"

    @property
    def active(self) -> bool:
        return self.kind is not EventKind.CLEARED

    def as_dict(self) -> dict[str, object]:
        """The stored and published form (JSON-ready, time in UTC ISO-8601)."""
        return {"id": self.id, "alarm": self.alarm, "event": self.kind.value,
                "device": self.device_id, "channel": self.channel, "group": self.group,
                "rule": self.rule, "level": self.level, "value": self.value,
                "unit": self.unit, "threshold": self.threshold, "at": iso_utc(self.at),
                "confirmed": self.confirmed, "reason": self.reason}

    @staticmethod
    def from_dict(data: Mapping[str, object]) -> AlarmEvent:
        """The event ``as_dict`` produced (from the outbox, for ``restore``)."""
        at = datetime.fromisoformat(str(data["at"]).replace("Z", "+00:00"))
        threshold = data.get("threshold")
        return AlarmEvent(
            kind=EventKind(str(data["event"])), device_id=str(data["device"]),
            channel=str(data["channel"]), group=str(data["group"]), rule=str(data["rule"]),
            level=int(str(data["level"])), value=data.get("value"),  # type: ignore[arg-type]
            unit=str(data.get("unit") or ""),
            threshold=None if threshold is None else float(str(threshold)),
            at=at, confirmed=bool(data["confirmed"]),
            reason=None if data.get("reason") is None else str(data["reason"]),
            id=str(data["id"]))

    def describe(self) -> str:
        """One line for the journal: what happened, where, how sure."""
        value = "no value" if self.value is None else f"{self.value} {self.unit}".rstrip()
        limit = "" if self.threshold is None else f" (limit {self.threshold:g})"
        sure = "confirmed" if self.confirmed else f"UNCONFIRMED: {self.reason}"
        return (f"alarm {self.kind.value}: {self.alarm} {self.rule} level {self.level}, "
                f"{value}{limit}, {sure} [{self.id}]")


class AlarmSink(Protocol):
    """Receives the events of one judged sample (or one change of a device's health)
    together, in the order they happened. Called on the poller thread of the device's
    link: it must return quickly and must not raise (a sink that can fail logs it)."""

    def emit(self, events: Sequence[AlarmEvent]) -> None: ...
