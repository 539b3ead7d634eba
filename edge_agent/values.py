"""A raw number to the value, quality and reason every driver publishes. Pure; table-tested.

Each driver kind decodes its own wire format (Modbus words, a field of a text record) to a
raw number, then hands it here, so ``189 × 0.1`` is ``18.9`` and a sentinel or an
out-of-range value is judged the same way whatever the instrument speaks. A driver kind
imports this module (it sits in the core package next to ``model.py``, below the
config schema and every protocol, so importing it can never make a cycle).

Order of judgement, first match wins:

1. NaN or infinity -> BAD ``not_a_number`` / ``infinite`` (no value: JSON has none),
   also when a finite raw value only overflows once scaled (1e308 * 10);
2. a sentinel the instrument sends for a broken loop (compared before scaling: the
   manual gives it in raw counts) -> BAD ``sentinel``, no value;
3. outside the channel's valid range (compared after scaling, in engineering units) ->
   the range's quality (BAD by default, or SUSPECT) with reason ``out_of_range``; the value
   is kept so a person can see how far out it was.

Status flags (a Modbus status word, a text record's status field) come after and only
lower a quality: see ``flagged``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from edge_agent.model import Quality

Value = int | float | bool | str
_RANK = {Quality.GOOD: 0, Quality.SUSPECT: 1, Quality.BAD: 2}


@dataclass(frozen=True)
class ValidRange:
    """Values outside [low, high] get ``quality`` with reason ``out_of_range``."""

    low: float | None
    high: float | None
    quality: Quality = Quality.BAD


class NumberRules(Protocol):
    """What a channel of any driver kind says about its number (Modbus ``Channel``,
    serial-text ``TextChannel``)."""

    @property
    def scale(self) -> float: ...
    @property
    def offset(self) -> float: ...
    @property
    def valid_range(self) -> ValidRange | None: ...
    @property
    def sentinels(self) -> tuple[float, ...]: ...


@dataclass(frozen=True, init=False)
class Judged:
    """A channel's value as the driver publishes it, before status flags are applied.

    ``raw`` is the number before scaling (Modbus status words are matched on it).
    ``__init__`` is written out to set all fields at once: the generated frozen one (an
    ``object.__setattr__`` per field) cost twice as much (issue 11); tests/test_model.py
    holds its parameters and the fields together."""

    value: Value | None
    quality: Quality
    reason: str | None = None
    raw: Value | None = None

    def __init__(self, value: Value | None, quality: Quality, reason: str | None = None,
                 raw: Value | None = None) -> None:
        object.__setattr__(self, "__dict__", {"value": value, "quality": quality,
                                              "reason": reason, "raw": raw})


def scale_value(raw: int | float, scale: float, offset: float) -> int | float:
    """Engineering value = raw * scale + offset, without binary noise (18.9, not
    18.900000000000002: 15 significant digits is what a double holds exactly).
    Without scaling the raw number is returned as it is (a whole number stays an int)."""
    if scale == 1.0 and offset == 0.0:
        return raw
    return float(f"{raw * scale + offset:.15g}")


Outcome = tuple[Value | None, Quality, str | None, Value | None]
"""A ``Judged``'s fields (value, quality, reason, raw) as a plain tuple: what the Modbus
driver's poll builds its ``Reading``s from, without a ``Judged`` per channel per poll."""


def judge_number(rules: NumberRules, raw: int | float) -> Judged:
    """Non-finite values, sentinels, scaling and the valid range for a decoded number
    (``NumberJudge`` holds the rules; a caller judging one channel at every poll keeps its
    ``NumberJudge`` instead of calling this)."""
    return Judged(*NumberJudge(rules).outcome(raw))


class NumberJudge:
    """The judgement of one channel's numbers, its rules read once (at plan time) instead
    of at every poll; ``outcome`` gives ``judge_number``'s fields as a tuple
    (``Outcome``), with no ``Judged`` built (the Modbus driver's poll path, issue 11).

    ``plain`` says the channel has no sentinel, scale, offset or valid range: then a finite
    raw number is the GOOD value as it is, which a caller may decide without calling
    ``outcome`` (the Modbus ``ReadJudge`` does); ``tests/test_value_fast_paths.py`` holds
    both ways and ``judge_number`` together over generated rules and raw numbers."""

    __slots__ = ("_sentinels", "_scale", "_offset", "_scaled", "_low", "_high",
                 "_range_quality", "_ranged", "plain")

    def __init__(self, rules: NumberRules) -> None:
        self._sentinels = rules.sentinels
        self._scale, self._offset = rules.scale, rules.offset
        self._scaled = not (self._scale == 1.0 and self._offset == 0.0)
        limits = rules.valid_range
        self._ranged = limits is not None
        self._low = limits.low if limits is not None else None
        self._high = limits.high if limits is not None else None
        self._range_quality = limits.quality if limits is not None else Quality.GOOD
        self.plain = not (self._sentinels or self._scaled or self._ranged)

    def outcome(self, raw: int | float) -> Outcome:
        """The value, quality, reason and raw number ``judge_number`` gives for ``raw``."""
        if isinstance(raw, float) and not math.isfinite(raw):
            return None, Quality.BAD, "not_a_number" if math.isnan(raw) else "infinite", raw
        if raw in self._sentinels:
            return None, Quality.BAD, "sentinel", raw
        if self._scaled:
            value = scale_value(raw, self._scale, self._offset)
            if not math.isfinite(value):  # a huge raw value, scaled
                return None, Quality.BAD, "infinite", raw
        else:
            value = raw  # finite: checked above (scale_value would return it as it is)
        if self._ranged and ((self._low is not None and value < self._low)
                             or (self._high is not None and value > self._high)):
            return value, self._range_quality, "out_of_range", raw
        return value, Quality.GOOD, None, raw


def flagged(quality: Quality, reason: str | None,
            flags: Iterable[tuple[Quality, str | None]]) -> tuple[Quality, str | None]:
    """``quality`` and ``reason`` once status flags (quality, reason) are applied.

    Flags only lower a quality, never raise it. A reading already BAD for its own reason
    stays as it is. Otherwise the worst quality wins and the reasons are joined with
    ``+``, the reading's own first, so a consumer sees every cause
    (``out_of_range+calibrating``)."""
    lowering = [(flag, why) for flag, why in flags if flag is not Quality.GOOD]
    if not lowering or quality is Quality.BAD:
        return quality, reason
    worst = max([quality, *(flag for flag, _ in lowering)], key=_RANK.__getitem__)
    reasons = [reason] if reason else []
    reasons += [why for _, why in lowering if why]
    return worst, "+".join(dict.fromkeys(reasons)) or None
