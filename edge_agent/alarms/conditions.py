"""One limit rule's decision, sample by sample: on-delay going in, deadband going out.

Pure and small, so the engine's behaviour is tested rule by rule with tables of values.
The rate of rise is computed here too (``RateWindow``), per minute, over at least the
rule's ``window_s`` of samples (default one minute), so one noisy sample of a fast
detector does not make a rate.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime

from edge_agent.alarms.rules import RATE_WINDOW_S, LimitRule


@dataclass
class Condition:
    """The state of one rule on one channel: active or not, and how long the condition
    has held while not yet active (``met_samples``, ``met_since``)."""

    rule: LimitRule
    active: bool = False
    met_samples: int = 0
    met_since: datetime | None = None

    def update(self, value: float, at: datetime) -> bool:
        """Whether the rule is active after ``value`` acquired at ``at``."""
        rule = self.rule
        rising = rule.kind.rising
        if self.active:
            past_deadband = (value < rule.limit - rule.deadband if rising
                             else value > rule.limit + rule.deadband)
            if past_deadband:
                self.active = False
                self._reset()
            return self.active
        met = value >= rule.limit if rising else value <= rule.limit
        if not met:
            self._reset()
            return False
        self.met_samples += 1
        if self.met_since is None:
            self.met_since = at
        delay = rule.on_delay
        if delay.seconds > 0:
            self.active = (at - self.met_since).total_seconds() >= delay.seconds
        else:
            self.active = self.met_samples >= delay.samples
        return self.active

    def _reset(self) -> None:
        self.met_samples = 0
        self.met_since = None


class RateWindow:
    """Recent (time, value) pairs of one channel, giving its rate of change per minute:
    from the newest sample at least ``window_s`` old (or the oldest kept, when
    samples are further apart, such as GC cycles) to the current one."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self._points: deque[tuple[datetime, float]] = deque()
        self._window_s = window_s

    def add(self, at: datetime, value: float) -> float | None:
        """Add a point; the rate per minute up to it (None: no earlier point yet)."""
        points = self._points
        if points and at <= points[-1][0]:  # time went backwards (clock set): start over
            points.clear()
        points.append((at, value))
        while len(points) > 2 and (at - points[1][0]).total_seconds() >= self._window_s:
            points.popleft()
        if len(points) < 2:
            return None
        first_at, first = points[0]
        return (value - first) / (at - first_at).total_seconds() * 60.0
