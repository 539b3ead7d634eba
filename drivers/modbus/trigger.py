"""Instrument-triggered acquisition (GC cycles, FTIR measurements) and instrument clocks.
Pure: the driver feeds raw values in and gets decisions out.

A GC completes an analysis every few minutes; polling it every few seconds must publish
each analysis exactly once, with the analysis time, also across an agent restart. The
identity of an analysis is, by trigger kind:

* ``counter``: the cycle counter's value (new when it differs from the last published);
* ``timestamp``: the instrument's analysis time from the device ``clock``;
* ``flag``: a rising new-result flag, plus the analysis time when a clock is configured.
  With ``clear_flag`` the agent writes 0 to the flag after the sample is committed, so
  the next set flag is the next analysis.

The last identity is committed in the same SQLite transaction as the sample (see
``Sample.driver_state``), so a SIGKILL never loses an analysis. Where the identity is
weak the rule is "a duplicate rather than a loss": with a ``flag`` trigger and no clock,
an analysis whose flag is still set when the agent starts is published again (the
agent cannot tell it from a new one); with ``counter``, ``timestamp`` or a clock, never.

With ``clear_flag``, an analysis is published once and its flag cleared after the
commit; while the clearing write fails, polls retry the write and publish nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone

from edge_agent_drivers.modbus.settings import InstrumentClock, TimeFormat, Trigger, TriggerKind


class ClockError(ValueError):
    """The instrument's time registers do not hold a valid time (reason ``bad_time``)."""


def instrument_time(clock: InstrumentClock, raw: Mapping[str, object]) -> datetime:
    """The instrument's timestamp in UTC. Raises ClockError when unreadable or invalid."""
    zone = timezone(timedelta(minutes=clock.utc_offset_min))
    values = [raw.get(name) for name in clock.channels]
    if any(not isinstance(value, int | float) or isinstance(value, bool) for value in values):
        raise ClockError(f"time channels {', '.join(clock.channels)} not all readable")
    try:
        if clock.format is TimeFormat.UNIX:
            return datetime.fromtimestamp(float(values[0]), UTC)  # type: ignore[arg-type]
        fields = [int(value) for value in values]  # type: ignore[call-overload]
        if fields[0] < 100:  # two-digit years: 24 -> 2024
            fields[0] += 2000
        return datetime(*fields, tzinfo=zone).astimezone(UTC)  # type: ignore[misc]
    except (ValueError, OverflowError, OSError) as err:
        raise ClockError(f"time registers hold {values}: {err}") from err


def no_analysis_yet(clock: InstrumentClock, raw: Mapping[str, object]) -> bool:
    """Whether the time registers all hold 0: an instrument that has completed no analysis
    since it powered up (a GC before its first cycle, an FTIR before its first
    measurement) reads so. That is no analysis, not one made in 1970 with all values 0,
    so a ``timestamp`` or ``counter`` trigger publishes nothing until a real time
    appears."""
    values = [raw.get(name) for name in clock.channels]
    return all(isinstance(value, int) and not isinstance(value, bool) and value == 0
               for value in values)


@dataclass(frozen=True)
class TriggerState:
    """``key``: the last analysis published (committed with its sample). ``flag``: the flag
    was set at the last poll (memory only). ``pending_clear``: published, flag not yet
    cleared (memory only)."""

    key: str | None = None
    flag: bool = False
    pending_clear: bool = False

    def dump(self) -> str:
        """What is committed with the sample: the identity only. The flag's state is not
        kept, so after a restart a set flag counts as rising (a duplicate, never a loss)."""
        return json.dumps({"key": self.key})

    @staticmethod
    def load(text: str | None) -> TriggerState:
        if not text:
            return TriggerState()
        try:
            key = json.loads(text).get("key")
        except (ValueError, AttributeError):
            return TriggerState()  # unreadable: behave as on a first start
        return TriggerState(key if isinstance(key, str) else None)


@dataclass(frozen=True)
class Decision:
    """Whether this poll is a new analysis; ``state`` to keep (and commit with it);
    ``clear_flag``: write 0 to the flag (after the commit when ``new``)."""

    new: bool
    state: TriggerState
    clear_flag: bool = False


def decide(trigger: Trigger, raw: Mapping[str, object], when: datetime | None,
           last: TriggerState) -> Decision:
    """Compare this poll with the last published analysis. ``when`` is the instrument time
    (None without a clock)."""
    when_key = when.isoformat() if when is not None else None
    if trigger.kind is TriggerKind.TIMESTAMP:
        return Decision(when_key != last.key, TriggerState(when_key))
    value = raw.get(trigger.channel)
    if trigger.kind is TriggerKind.COUNTER:
        key = str(value)
        return Decision(key != last.key, TriggerState(key))
    if not value:
        return Decision(False, TriggerState(last.key))
    same_analysis = when_key is not None and when_key == last.key
    if trigger.clear_flag:
        if last.pending_clear or same_analysis:
            # Published already; the clearing write failed or a kill came before it.
            return Decision(False, replace(last, flag=True, pending_clear=True), True)
        return Decision(True, TriggerState(when_key, True, pending_clear=True), True)
    rising = not last.flag
    new = (rising or when_key is not None) and not same_analysis
    return Decision(new, TriggerState(when_key if when_key else last.key, True))
