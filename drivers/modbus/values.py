"""One channel's words (or bits) to a value, quality and reason. Pure; table-tested.

Order of judgement, first match wins:

1. words that cannot be the type (a BCD digit above 9) -> BAD ``bad_bcd``;
2. NaN or infinity -> BAD ``not_a_number`` / ``infinite`` (no value: JSON has none),
   also when a finite raw value only overflows once scaled (1e308 * 10);
3. a sentinel the instrument sends for a broken loop (compared before scaling: the
   manual gives it in raw counts) -> BAD ``sentinel``, no value;
4. outside the channel's valid range (compared after scaling, in engineering units) ->
   the range's quality (BAD by default, or SUSPECT) with reason ``out_of_range``; the value
   is kept so a person can see how far out it was.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from edge_agent.config.schema import Channel, DataType
from edge_agent.modbus.decode import (
    DecodeError,
    Value,
    decode_bit,
    decode_string,
    decode_words,
    scale_value,
)
from edge_agent.model import Quality


@dataclass(frozen=True)
class Judged:
    """A channel's value as the driver publishes it, before status words are applied.

    ``raw`` is the decoded number before scaling (status words are matched on it)."""

    value: Value | None
    quality: Quality
    reason: str | None = None
    raw: Value | None = None


def judge_bits(channel: Channel, bits: Sequence[bool]) -> Judged:
    """A coil or discrete input."""
    return Judged(bool(bits[0]), Quality.GOOD, raw=bool(bits[0]))


def judge_words(channel: Channel, words: Sequence[int]) -> Judged:
    """A register channel's value, quality and reason from its words."""
    if channel.data_type is DataType.STRING:
        text = decode_string(words, channel.string_layout)
        return Judged(text, Quality.GOOD, raw=text)
    if channel.data_type is DataType.BOOL:
        bit = decode_bit(words[0], channel.bit or 0)
        return Judged(bit, Quality.GOOD, raw=bit)
    try:
        raw = decode_words(words, channel.data_type, channel.word_order)
    except DecodeError as err:
        return Judged(None, Quality.BAD, err.reason)
    return judge_number(channel, raw)


def judge_number(channel: Channel, raw: int | float) -> Judged:
    """Sentinels, non-finite values, scaling and the valid range for a decoded number."""
    if isinstance(raw, float) and not math.isfinite(raw):
        return Judged(None, Quality.BAD, "not_a_number" if math.isnan(raw) else "infinite",
                      raw)
    if raw in channel.sentinels:
        return Judged(None, Quality.BAD, "sentinel", raw)
    value = scale_value(raw, channel.scale, channel.offset)
    if isinstance(value, float) and not math.isfinite(value):  # a huge raw value, scaled
        return Judged(None, Quality.BAD, "infinite", raw)
    limits = channel.valid_range
    if limits is not None and ((limits.low is not None and value < limits.low)
                               or (limits.high is not None and value > limits.high)):
        return Judged(value, limits.quality, "out_of_range", raw)
    return Judged(value, Quality.GOOD, None, raw)
