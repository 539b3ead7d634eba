"""One channel's words (or bits) to a value, quality and reason. Pure; table-tested.

Words that cannot be the type (a BCD digit above 9) are BAD ``bad_bcd``; every decoded
number then goes through the value pipeline all driver kinds share
(``edge_agent.values.judge_number``: non-finite values, sentinels, scale and offset,
valid range), so a Modbus channel and a serial-text channel with the same settings
publish the same value, quality and reason.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from edge_agent_drivers.modbus.protocol.decode import (
    BlockLayout,
    DecodeError,
    NumberSlot,
    decode_bit,
    decode_string,
    decode_words,
    number_slot,
    shortest_float32,
)
from edge_agent_drivers.modbus.settings import Channel, DataType

from edge_agent.model import Quality
from edge_agent.values import Judged, NumberJudge, Outcome, judge_number


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


class ReadJudge:
    """Judges every channel of one planned read from the read's answer.

    Built once per planned read (``plan.ReadRequest.judge``): the answer's words are packed
    to bytes once per poll and its numbers unpacked in a few struct calls
    (``decode.BlockLayout``), instead of each channel slicing, checking and reassembling
    its own words (decoding per channel was 16-18 % of the agent's CPU in issue 11's
    profiles). Values, qualities and reasons are those of ``judge_words``/``judge_bits``:
    channels without a struct layout (strings, a bit of a register, BCD, a type whose
    size does not match its words, such as a 16-bit type on an Enron address) go through
    them, and so does a whole answer that cannot be packed (a word out of 0..65535, a
    wrong word count), which reports it as it always did.
    """

    def __init__(self, channels: Sequence[Channel], address: int, count: int, *,
                 bits: bool, enron: bool) -> None:
        """A read of ``count`` addresses from ``address`` covering ``channels``: coils or
        discrete inputs when ``bits``, Enron 32-bit addresses (two words each) when
        ``enron``."""
        per_address = 2 if enron else 1
        words = count * per_address
        self._bits = bits
        self._by_channel: list[tuple[Channel, int]] = []  # channel, offset in the answer
        numbers: list[tuple[Channel, NumberSlot]] = []
        self._others: list[tuple[Channel, int]] = []
        for channel in channels:
            offset = (channel.address - address) * per_address
            self._by_channel.append((channel, offset))
            slot = None
            if not bits and channel.words == channel.data_type.word_count:
                slot = number_slot(channel.data_type, channel.word_order, offset)
            if slot is None:
                self._others.append((channel, offset))
            else:
                numbers.append((channel, slot))
        self._layout = BlockLayout([slot for _, slot in numbers])
        # (name, float32?, plain?, its rules read once) in the order the layout unpacks
        # them; ``plain``: no sentinel, scale, offset or range (edge_agent.values)
        self._numbers: list[tuple[str, bool, bool, NumberJudge]] = []
        for index in self._layout.order:
            channel = numbers[index][0]
            rules = NumberJudge(channel)
            self._numbers.append((channel.name, channel.data_type is DataType.FLOAT32,
                                  rules.plain, rules))
        self._big = struct.Struct(f">{words}H")
        self._little = struct.Struct(f"<{words}H") if self._layout.needs_swapped else None

    def judge(self, data: Sequence[int] | Sequence[bool]) -> list[tuple[str, Judged]]:
        """(channel name, judged value) for each channel of the read, from its answer."""
        return [(name, Judged(*outcome)) for name, outcome in self.outcomes(data)]

    def outcomes(self, data: Sequence[int] | Sequence[bool]) -> list[tuple[str, Outcome]]:
        """``judge``'s results as (channel name, ``Outcome`` tuple), with no ``Judged``
        built: what the driver's poll uses. A plain number (no sentinel, scale, offset or
        range) that is finite is GOOD as it is, decided here without a call."""
        if self._bits or not self._numbers:
            return self._one_by_one(data)
        try:
            straight = self._big.pack(*data)
            swapped = self._little.pack(*data) if self._little is not None else b""
            raws = self._layout.unpack(straight, swapped)
        except struct.error:
            return self._one_by_one(data)
        good = Quality.GOOD
        results: list[tuple[str, Outcome]] = []
        for (name, float32, plain, rules), raw in zip(self._numbers, raws, strict=True):
            if float32:
                raw = shortest_float32(raw)
            if plain and raw - raw == 0:  # finite (NaN and inf give NaN); ints always are
                results.append((name, (raw, good, None, raw)))
            else:
                results.append((name, rules.outcome(raw)))
        results += [(channel.name, _fields(judge_words(channel,
                                                       data[offset:offset + channel.words])))
                    for channel, offset in self._others]  # type: ignore[misc]
        return results

    def _one_by_one(self, data: Sequence[int] | Sequence[bool]) -> list[tuple[str, Outcome]]:
        """Each channel from its own slice of the answer (bits; unpackable answers)."""
        if self._bits:
            return [(channel.name, _fields(judge_bits(channel, data[offset:offset + 1])))
                    for channel, offset in self._by_channel]
        return [(channel.name, _fields(judge_words(channel,
                                                   data[offset:offset + channel.words])))
                for channel, offset in self._by_channel]  # type: ignore[misc]


def _fields(judged: Judged) -> Outcome:
    """A ``Judged`` as the ``Outcome`` tuple ``ReadJudge.outcomes`` gives."""
    return judged.value, judged.quality, judged.reason, judged.raw
