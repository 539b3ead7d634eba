"""One channel's words (or bits) to a value, quality and reason. Pure; table-tested.

Words that cannot be the type (a BCD digit above 9) are BAD ``bad_bcd``; every decoded
number then goes through the value pipeline all driver kinds share
(``edge_agent.values.judge_number``: non-finite values, sentinels, scale and offset,
valid range), so a Modbus channel and a serial-text channel with the same settings
publish the same value, quality and reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge_agent_drivers.modbus.protocol.decode import (
    DecodeError,
    decode_bit,
    decode_string,
    decode_words,
)
from edge_agent_drivers.modbus.settings import Channel, DataType

from edge_agent.model import Quality
from edge_agent.values import Judged, judge_number


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
