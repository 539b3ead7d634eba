"""Every alarm of every device: fed each judged sample, it emits what changed.

One ``AlarmEngine`` serves the whole station. Each device's alarms are only touched by
the poller thread of that device's link (``judge`` and ``polled`` for one device come
from one thread), so no lock is needed; every alarm's state object exists from the start,
so ``active`` (read from other threads) never sees a dictionary change size.

State survives a restart through ``restore``: fed the last event of each alarm (from
the outbox's ``alarm_state``, written with the sample that caused each event), an alarm that was
active is active again at its level, so the same condition does not raise it twice and
its clear still comes. What is not restored: an on-delay that was counting and the rate
window (both start again, which delays nothing that was already raised).

A reload (SIGHUP) hands new rules to ``reconfigure``: alarms that still exist keep their
state (an active one is judged by its new limits on its next sample: cleared past the
new deadband, kept, escalated or lowered, never raised twice); alarms whose rule is
gone are cleared with the reason ``rule removed``. The caller (agent.py) has stopped
the pollers of every device whose rules or communication alarm change, so only the
reload thread touches those devices' state meanwhile; the other devices keep their
state objects and running conditions, and the dictionaries are replaced whole, so
their pollers never see one change size.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from edge_agent.alarms.conditions import Condition, RateWindow
from edge_agent.alarms.events import AlarmEvent, AlarmSink, EventKind
from edge_agent.alarms.honesty import doubt
from edge_agent.alarms.rules import COMMUNICATION, INSTRUMENT, ChannelAlarms, RuleKind
from edge_agent.model import Reading, Sample, utc_now

# After a failed poll, alarms raised on a device's next polls are unconfirmed ("device
# not answering reliably") until it has answered this many polls in a row again.
UNSTEADY_POLLS = 3
# The reason a reload's clear carries (stored and published as data, like the honesty
# reasons: not translated).
RULE_REMOVED = "rule removed"


@dataclass
class AlarmState:
    """One alarm (device, channel, group) as it stands: level 0 is inactive."""

    device_id: str
    channel: str
    group: str
    level: int = 0
    confirmed: bool = True
    last: AlarmEvent | None = None


@dataclass
class _ChannelWatch:
    """A channel's rules with their running state."""

    rules: ChannelAlarms
    conditions: dict[str, list[Condition]] = field(default_factory=dict)
    rate: RateWindow | None = None


class AlarmEngine:
    """Decides alarms from judged samples and device health; hands events to ``sink``.

    ``rules`` maps a device id to its channels' rules; ``communication`` lists the
    devices that get a communication alarm when they stop answering."""

    def __init__(self, rules: Mapping[str, Sequence[ChannelAlarms]], sink: AlarmSink,
                 communication: Iterable[str] = ()) -> None:
        self._sink = sink
        self._watches: dict[str, list[_ChannelWatch]] = {}
        self._states: dict[tuple[str, str, str], AlarmState] = {}
        self._communication: frozenset[str] = frozenset()
        # polls left before a device that failed one is trusted again (see UNSTEADY_POLLS)
        self._unsteady: dict[str, int] = {}
        self.reconfigure(rules, communication)

    def reconfigure(self, rules: Mapping[str, Sequence[ChannelAlarms]],
                    communication: Iterable[str] = ()) -> list[AlarmEvent]:
        """Use ``rules`` and ``communication`` from now on (a reload); returns the clear
        events of active alarms that no longer exist (reason ``rule removed``), not yet
        emitted: the caller commits them, then calls ``emit``. The pollers of devices
        whose rules or communication alarm change must be stopped meanwhile."""
        old_states, old_watches = self._states, self._watches
        states: dict[tuple[str, str, str], AlarmState] = {}
        watches: dict[str, list[_ChannelWatch]] = {}
        for device_id, channels in rules.items():
            kept = old_watches.get(device_id)
            if kept is not None and [w.rules for w in kept] == list(channels):
                watches[device_id] = kept  # unchanged: its running conditions go on
                for watch in kept:
                    for key in _keys(device_id, watch.rules):
                        states[key] = old_states[key]
                continue
            watches[device_id] = []
            for channel in channels:
                watch = self._watch(channel)
                watches[device_id].append(watch)
                for key in _keys(device_id, channel):
                    states[key] = old_states.get(key) or AlarmState(*key)
                    _restore_conditions(watch, states[key])
        communication = frozenset(communication)
        for device_id in communication:
            key = (device_id, COMMUNICATION, COMMUNICATION)
            states[key] = old_states.get(key) or AlarmState(*key)
        for device_id in watches.keys() - self._unsteady.keys():
            self._unsteady[device_id] = 0
        # states first: a running poller finds its alarm's state in either dictionary
        self._states, self._watches, self._communication = states, watches, communication
        for device_id in self._unsteady.keys() - watches.keys():
            del self._unsteady[device_id]
        return [self._removed(state) for key, state in old_states.items()
                if key not in states and state.level]

    @staticmethod
    def _watch(rules: ChannelAlarms) -> _ChannelWatch:
        watch = _ChannelWatch(rules)
        for rule in rules.limits:
            watch.conditions.setdefault(rule.kind.group, []).append(Condition(rule))
            if rule.kind is RuleKind.RATE_OF_RISE:
                watch.rate = RateWindow(rule.window_s)
        return watch

    def _removed(self, state: AlarmState) -> AlarmEvent:
        """The clear of an active alarm whose rule a reload removed."""
        events: list[AlarmEvent] = []
        self._emit(state, EventKind.CLEARED, 0, state_rule(state), None, "",
                   _limit_of(state), utc_now(), RULE_REMOVED, events)
        return events[0]

    def polled(self, device_id: str, sample: Sample | None, answering: bool,
               down: bool) -> list[AlarmEvent]:
        """``decide``, then ``emit`` what changed (for callers that store nothing)."""
        events = self.decide(device_id, sample, answering, down)
        self.emit(events)
        return events

    def emit(self, events: Sequence[AlarmEvent]) -> None:
        """Hand ``events`` to the sink (log, local outputs, tally), if there are any.
        The poller calls it once they are committed with their sample."""
        if events:
            self._sink.emit(events)

    def decide(self, device_id: str, sample: Sample | None, answering: bool,
               down: bool) -> list[AlarmEvent]:
        """What one poll of ``device_id`` changed, not yet emitted: ``sample`` its sample
        (None: nothing new), ``answering`` whether the device answered, ``down`` whether
        its poller has marked it down (the communication alarm). The poller commits the
        events with the sample (Outbox.append) before it calls ``emit``."""
        events: list[AlarmEvent] = []
        if device_id in self._unsteady:
            left = self._unsteady[device_id]
            self._unsteady[device_id] = UNSTEADY_POLLS if not answering else max(left - 1, 0)
        if device_id in self._communication:
            self._communication_change(device_id, answering, down, sample, events)
        if answering and sample is not None and device_id in self._watches:
            self._judge(sample, events)
        return events

    def _judge(self, sample: Sample, events: list[AlarmEvent]) -> None:
        at = sample.instrument_time or sample.acquired_at
        readings = {reading.channel: reading for reading in sample.readings}
        for watch in self._watches[sample.device_id]:
            reading = readings.get(watch.rules.channel)
            if reading is None or not _is_number(reading.value):
                continue  # no value: nothing to judge; the alarm keeps its state
            value = float(reading.value)  # type: ignore[arg-type]
            for group, conditions in watch.conditions.items():
                measured, unit = value, reading.unit
                if group == RuleKind.RATE_OF_RISE.value:
                    assert watch.rate is not None
                    rate = watch.rate.add(at, value)
                    if rate is None:
                        continue
                    measured, unit = round(rate, 6), f"{reading.unit}/min"
                active = [c.rule for c in conditions if c.update(measured, at)]
                top = max(active, key=lambda rule: rule.kind.level, default=None)
                state = self._states[(sample.device_id, watch.rules.channel, group)]
                if top is None and not state.level:
                    continue  # the common case: nothing on, nothing was
                self._change(state, top.kind.level if top else 0,
                             top.kind.value if top else state_rule(state), reading, measured,
                             top.limit if top else _limit_now(state, conditions), at,
                             events, unit)
            if watch.rules.instrument is not None:
                self._instrument(sample.device_id, watch.rules, reading, readings, at, events)

    def _instrument(self, device_id: str, rules: ChannelAlarms, reading: Reading,
                    readings: Mapping[str, Reading], at: datetime,
                    events: list[AlarmEvent]) -> None:
        instrument = rules.instrument
        assert instrument is not None
        level = instrument.level_of(int(float(reading.value)))  # type: ignore[arg-type]
        shown = readings.get(instrument.reports or rules.channel, reading)
        state = self._states[(device_id, rules.channel, INSTRUMENT)]
        # the status register is trusted as the device's word; the gas reading's
        # quality says whether that sensor could be faulty or calibrating
        self._change(state, level, INSTRUMENT, shown, shown.value, None, at, events)

    def _communication_change(self, device_id: str, answering: bool, down: bool,
                              sample: Sample | None, events: list[AlarmEvent]) -> None:
        state = self._states[(device_id, COMMUNICATION, COMMUNICATION)]
        # no sample: a GC answered without a new analysis; it answered all the same
        at = sample.acquired_at if sample is not None else utc_now()
        if down and state.level == 0:
            reason = next((r.reason for r in sample.readings if r.reason), None) \
                if sample is not None else None
            self._emit(state, EventKind.RAISED, 1, COMMUNICATION, reason, "", None, at,
                       None, events)
        elif answering and state.level > 0:
            self._emit(state, EventKind.CLEARED, 0, COMMUNICATION, None, "", None, at,
                       None, events)

    def _change(self, state: AlarmState, level: int, rule: str, reading: Reading,
                value: float | int | bool | str | None, threshold: float | None,
                at: datetime, events: list[AlarmEvent], unit: str | None = None) -> None:
        """Emit the event that moving ``state`` to ``level`` means, if any (``unit``:
        the value's, when it is not the reading's: a rate is per minute)."""
        unit = reading.unit if unit is None else unit
        old = state.level
        if level == old and (not old or state.confirmed):
            return  # the common case, judged without building a reason
        why = doubt(reading, device_ok=self._unsteady.get(state.device_id, 0) == 0)
        if level == old:
            if why is None:
                self._emit(state, EventKind.CONFIRMED, level, rule, value, unit,
                           threshold, at, None, events)
            return
        if old == 0:
            kind = EventKind.RAISED
        elif level == 0:
            kind = EventKind.CLEARED
        else:
            kind = EventKind.ESCALATED if level > old else EventKind.LOWERED
        self._emit(state, kind, level, rule, value, unit, threshold, at, why, events)

    def _emit(self, state: AlarmState, kind: EventKind, level: int, rule: str,
              value: float | int | bool | str | None, unit: str, threshold: float | None,
              at: datetime, why: str | None, events: list[AlarmEvent]) -> None:
        event = AlarmEvent(kind, state.device_id, state.channel, state.group, rule, level,
                           value, unit, threshold, at, why is None, why)
        state.level = level
        state.confirmed = why is None if kind is not EventKind.CLEARED else True
        state.last = event
        events.append(event)

    def restore(self, events: Iterable[AlarmEvent]) -> int:
        """Take up each alarm where ``events`` (the last event of each alarm, or any
        history in order) left it; returns how many alarms are active again. Events of
        alarms this configuration no longer has are ignored (a rule was removed)."""
        for event in events:
            state = self._states.get((event.device_id, event.channel, event.group))
            if state is None:
                continue
            state.level = event.level if event.active else 0
            state.confirmed = event.confirmed
            state.last = event
            for watch in self._watches.get(state.device_id, ()):
                if watch.rules.channel == state.channel:
                    _restore_conditions(watch, state)
        return sum(1 for state in self._states.values() if state.level)

    def active(self) -> list[AlarmEvent]:
        """The last event of each active alarm (status pages, the next session's
        ``status``); safe to call from any thread."""
        return [state.last for state in list(self._states.values())
                if state.level and state.last is not None]


def _keys(device_id: str, rules: ChannelAlarms) -> list[tuple[str, str, str]]:
    """The alarms (state keys) one channel's rules make."""
    groups = dict.fromkeys(rule.kind.group for rule in rules.limits)
    if rules.instrument is not None:
        groups[INSTRUMENT] = None
    return [(device_id, rules.channel, group) for group in groups]


def _restore_conditions(watch: _ChannelWatch, state: AlarmState) -> None:
    """Mark the rules of an alarm active up to its level, so the next sample past the
    limit keeps it raised and only a value past the deadband clears it (after a restart
    or a reload that changed the limits: judged by the limits that hold now)."""
    for condition in watch.conditions.get(state.group, ()):
        condition.active = bool(state.level) and condition.rule.kind.level <= state.level


def state_rule(state: AlarmState) -> str:
    """The rule of an alarm's last event (what a clear names)."""
    return state.last.rule if state.last is not None else state.group


def _limit_now(state: AlarmState, conditions: Sequence[Condition]) -> float | None:
    """The limit a clear names: its rule's as configured now (a reload may have moved
    it since the raise), else the last event's."""
    rule = state_rule(state)
    return next((c.rule.limit for c in conditions if c.rule.kind.value == rule),
                _limit_of(state))


def _limit_of(state: AlarmState) -> float | None:
    return state.last.threshold if state.last is not None else None


def _is_number(value: object) -> bool:
    """A value rules can compare (a bool counts as 0/1: an alarm coil read as a bit)."""
    return isinstance(value, int | float)
