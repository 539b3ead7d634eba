"""What the health endpoint needs of alarms beyond ``AlarmEngine.active``: how many events
of each kind this run produced (the ``edge_agent_alarm_events_total`` counter), and when
each active alarm was raised (an escalation's event carries the escalation's time, but a
person asks how long the alarm has stood: ``since`` in /status, docs/metrics.md).

``AlarmTally`` is a sink that counts and passes every event on to the sink it wraps, so
the engine stays unaware of it. Poller threads of several links emit at once; one lock
guards the counts (taken once per judged sample that changed something, never on the
common sample that changes nothing, because the engine calls no sink then).

Not known after a restart: the raise time of an alarm restored from its last event (the
``since`` shown is then that event's time, the earliest this run knows).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

from edge_agent.alarms.events import AlarmEvent, AlarmSink, EventKind


class AlarmTally:
    """Counts events by kind and remembers each active alarm's raise time, then hands
    the events to ``inner`` (the runtime's log-and-outputs sink)."""

    def __init__(self, inner: AlarmSink) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys((kind.value for kind in EventKind), 0)
        self._raised_at: dict[str, datetime] = {}  # alarm key -> time of its raise

    def emit(self, events: Sequence[AlarmEvent]) -> None:
        with self._lock:
            for event in events:
                self._counts[event.kind.value] += 1
                if event.kind is EventKind.RAISED:
                    self._raised_at[event.alarm] = event.at
                elif event.kind is EventKind.CLEARED:
                    self._raised_at.pop(event.alarm, None)
        self._inner.emit(events)

    def counts(self) -> dict[str, int]:
        """Events of this run by kind (every kind present, 0 when none)."""
        with self._lock:
            return dict(self._counts)

    def since(self, event: AlarmEvent) -> datetime:
        """When the alarm ``event`` (its last event) belongs to was raised; that event's
        own time when the raise happened before this run (restored)."""
        with self._lock:
            return self._raised_at.get(event.alarm, event.at)
