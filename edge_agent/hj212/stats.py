"""Statistics of one period (minute, hour, day) from the readings in it: ``-Min``,
``-Avg``, ``-Max``, ``-Cou`` and ``-Flag``, as pure functions; ``Accumulator`` folds
the same rule one sample at a time (statsstore.py keeps it durably, exactly once).

How a period is flagged (HJ 212-2017 Appendix C notes on flue gas; /work/shared/hj212
README A.3): the period is ``N`` when at least 75 % of the samples it should hold are
normal (flag N), else ``D``. Min/Avg/Max/Cou are taken over the normal samples; when there
is none, over every sample that has a number (so a calibration hour still shows what was
measured, flagged D); when no sample has a number the values are None and the uplink
sends only the flag. ``expected`` (samples the period should hold at the polling
interval) makes missing samples count against the 75 %; without it, the samples present
are the whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from edge_agent.hj212.cp import Factor, format_computed, format_number
from edge_agent.hj212.flags import flag_for
from edge_agent.model import Reading

VALID_SHARE = 0.75  # HJ 212-2017 App. C: N when >= 75 % of the inputs are normal


@dataclass(frozen=True)
class PeriodSample:
    """One input to a period: its value (None when the read failed) and its data flag."""

    value: float | None
    flag: str


@dataclass(frozen=True)
class PeriodStats:
    """A period's statistics. ``valid``: normal samples with a value; ``count``: all."""

    minimum: float | None
    average: float | None
    maximum: float | None
    total: float | None  # -Cou: the sum, for amounts (flows already per sample)
    flag: str
    valid: int
    count: int


def period_samples(readings: Iterable[Reading],
                   profile_flags: Mapping[str, str] | None = None) -> list[PeriodSample]:
    """The inputs of a period from the agent's readings: the flag from quality and reason
    (flags.flag_for), the value when it is a number (a bool or text is no number)."""
    found = []
    for reading in readings:
        value = reading.value
        number = (float(value) if isinstance(value, int | float) and not isinstance(value, bool)
                  else None)
        found.append(PeriodSample(number, flag_for(reading.quality, reading.reason,
                                                   profile_flags)))
    return found


def period_stats(samples: Sequence[PeriodSample], expected: int | None = None) -> PeriodStats:
    """The statistics of one period (see the module docstring for the rule)."""
    if expected is not None and expected < 1:
        raise ValueError(f"expected samples must be at least 1, got {expected}")
    numbers = [s for s in samples if s.value is not None and math.isfinite(s.value)]
    normal = [s.value for s in numbers if s.flag == "N" and s.value is not None]
    whole = expected if expected is not None else len(samples)
    flag = "N" if whole and len(normal) >= VALID_SHARE * whole else "D"
    used = normal or [s.value for s in numbers if s.value is not None]
    if not used:
        return PeriodStats(None, None, None, None, flag, len(normal), len(samples))
    return PeriodStats(min(used), math.fsum(used) / len(used), max(used), math.fsum(used),
                       flag, len(normal), len(samples))


def stats_factor(code: str, stats: PeriodStats, decimals: int | None = None,
                 with_total: bool = False) -> Factor:
    """The items of one code in a 2051/2061/2031 record: ``-Min``, ``-Avg``, ``-Max``
    (``-Cou`` when ``with_total``) and ``-Flag``; only the flag when there is no value."""
    values: list[tuple[str, str]] = []
    if stats.minimum is not None and stats.average is not None and stats.maximum is not None:
        values += [("Min", format_number(stats.minimum, decimals)),
                   ("Avg", format_computed(stats.average, decimals)),
                   ("Max", format_number(stats.maximum, decimals))]
        if with_total and stats.total is not None:
            values.append(("Cou", format_computed(stats.total, decimals)))
    values.append(("Flag", stats.flag))
    return Factor(code, tuple(values))


@dataclass
class Accumulator:
    """``period_stats`` folded one sample at a time, so that a period of a day needs no
    list of its samples: kept as JSON in the outbox between folds (hj212/statsstore.py).
    ``result`` gives what ``period_stats`` gives for the same samples (sums to rounding)."""

    count: int = 0
    valid: int = 0  # normal (N) samples with a finite value
    normal_sum: float = 0.0
    normal_min: float | None = None
    normal_max: float | None = None
    numbers: int = 0  # samples with a finite value, any flag
    any_sum: float = 0.0
    any_min: float | None = None
    any_max: float | None = None

    def add(self, sample: PeriodSample) -> None:
        self.count += 1
        value = sample.value
        if value is None or not math.isfinite(value):
            return
        self.numbers += 1
        self.any_sum += value
        self.any_min = value if self.any_min is None else min(self.any_min, value)
        self.any_max = value if self.any_max is None else max(self.any_max, value)
        if sample.flag == "N":
            self.valid += 1
            self.normal_sum += value
            self.normal_min = value if self.normal_min is None else min(self.normal_min,
                                                                        value)
            self.normal_max = value if self.normal_max is None else max(self.normal_max,
                                                                        value)

    def merge(self, other: Accumulator) -> None:
        """Take in ``other``'s samples (a batch folded in memory, then stored)."""
        self.count += other.count
        self.valid += other.valid
        self.numbers += other.numbers
        self.normal_sum += other.normal_sum
        self.any_sum += other.any_sum
        self.normal_min = _pick(min, self.normal_min, other.normal_min)
        self.normal_max = _pick(max, self.normal_max, other.normal_max)
        self.any_min = _pick(min, self.any_min, other.any_min)
        self.any_max = _pick(max, self.any_max, other.any_max)

    def result(self, expected: int | None = None) -> PeriodStats:
        """The period's statistics by the module docstring's rule."""
        if expected is not None and expected < 1:
            raise ValueError(f"expected samples must be at least 1, got {expected}")
        whole = expected if expected is not None else self.count
        flag = "N" if whole and self.valid >= VALID_SHARE * whole else "D"
        if self.valid:
            return PeriodStats(self.normal_min, self.normal_sum / self.valid,
                               self.normal_max, self.normal_sum, flag, self.valid,
                               self.count)
        if self.numbers:
            return PeriodStats(self.any_min, self.any_sum / self.numbers, self.any_max,
                               self.any_sum, flag, 0, self.count)
        return PeriodStats(None, None, None, None, flag, 0, self.count)


def _pick(choose: Callable[[float, float], float], left: float | None,
          right: float | None) -> float | None:
    if left is None:
        return right
    return left if right is None else choose(left, right)
