"""Alarm rules as the engine reads them: typed, validated, no YAML (that is
edge_agent/config/validate_alarms.py).

A channel may carry limit rules (``high``, ``high_high``, ``low``, ``low_low``,
``rate_of_rise`` per minute, measured over ``window_s``), each with a deadband and an
on-delay, and an ``instrument`` rule mapping the device's own alarm register (a gas
detector's alarm level 1 and 2) to alarm levels. Rules of one direction form one alarm
whose level moves: ``high`` is level 1 and ``high_high`` level 2 of the channel's
``high`` alarm, so crossing high-high is an escalation of the alarm already raised, not
a second alarm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class RuleKind(StrEnum):
    """What a rule watches; ``group`` is the alarm it belongs to, ``level`` its level."""

    HIGH = "high"
    HIGH_HIGH = "high_high"
    LOW = "low"
    LOW_LOW = "low_low"
    RATE_OF_RISE = "rate_of_rise"

    @property
    def group(self) -> str:
        """The alarm this rule raises: ``high``, ``low`` or ``rate_of_rise``."""
        return _GROUPS[self.value]

    @property
    def level(self) -> int:
        """1 for high, low and rate of rise; 2 for high-high and low-low."""
        return 2 if self in (RuleKind.HIGH_HIGH, RuleKind.LOW_LOW) else 1

    @property
    def rising(self) -> bool:
        """True when the alarm is on above the limit (high, high-high, rate of rise)."""
        return self not in (RuleKind.LOW, RuleKind.LOW_LOW)


_GROUPS = {"high": "high", "high_high": "high", "low": "low", "low_low": "low",
           "rate_of_rise": "rate_of_rise"}
INSTRUMENT = "instrument"  # the alarm group of a device's own alarm register
COMMUNICATION = "communication"  # the alarm group of a device that stopped answering
LEVEL_WORDS = {"high": 1, "high_high": 2, "1": 1, "2": 2}  # an instrument rule's levels


@dataclass(frozen=True)
class OnDelay:
    """How long a condition must hold before the alarm is raised: ``samples``
    consecutive samples (1: at once), or ``seconds`` of acquisition time since the
    first sample that met it (0: not by time). One of the two is set."""

    samples: int = 1
    seconds: float = 0.0


RATE_WINDOW_S = 60.0  # the default time a rate of rise is measured over


@dataclass(frozen=True)
class LimitRule:
    """A limit in the channel's engineering unit (per minute for ``rate_of_rise``).

    On: value >= limit (<= for low rules). Off again only past the deadband:
    value < limit - deadband (> limit + deadband), so noise around the limit does not
    toggle the alarm. ``window_s``: a rate of rise is measured over at least this much
    acquisition time (longer: slower, steadier; read only for ``rate_of_rise``)."""

    kind: RuleKind
    limit: float
    deadband: float = 0.0
    on_delay: OnDelay = field(default_factory=OnDelay)
    window_s: float = RATE_WINDOW_S


@dataclass(frozen=True)
class InstrumentRule:
    """The device's own alarm register: ``values`` maps a whole value of the channel
    (0 none, 1 alarm 1, 2 alarm 2) to a level, ``bits`` a set bit to a level (the
    highest set wins). ``reports``: the channel whose value and unit the alarm event
    carries (the gas the detector alarms on); None: this channel's own."""

    values: tuple[tuple[int, int], ...] = ()
    bits: tuple[tuple[int, int], ...] = ()
    reports: str | None = None

    def level_of(self, raw: int) -> int:
        """The alarm level the register value ``raw`` means (0: no alarm)."""
        level = dict(self.values).get(raw, 0)
        for bit, bit_level in self.bits:
            if raw >> bit & 1:
                level = max(level, bit_level)
        return level


@dataclass(frozen=True)
class ChannelAlarms:
    """Every alarm rule of one channel of one device."""

    channel: str
    limits: tuple[LimitRule, ...] = ()
    instrument: InstrumentRule | None = None
