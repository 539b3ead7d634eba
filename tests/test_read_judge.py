"""A planned read judged as a whole (``ReadRequest.judge``) gives exactly what judging each
channel from its own words gives (``judge_words``/``judge_bits``), for every type, word
order, offset, Enron layout and garbled answer; and ``shortest_float32`` is the same number
as the one-digit-count-at-a-time search it replaced, for every kind of float32."""

from __future__ import annotations

import math
import random
import struct

import pytest
from edge_agent_drivers.modbus.plan import ReadRequest, plan
from edge_agent_drivers.modbus.protocol.decode import BlockLayout, number_slot, shortest_float32
from edge_agent_drivers.modbus.settings import (
    Channel,
    DataType,
    ReadLimits,
    RegisterKind,
    StringLayout,
    WordOrder,
)
from edge_agent_drivers.modbus.values import judge_bits, judge_words

from edge_agent.model import Quality
from edge_agent.values import ValidRange

NUMBERS = [DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32, DataType.INT64,
           DataType.UINT64, DataType.FLOAT32, DataType.FLOAT64, DataType.BCD16,
           DataType.BCD32]


def one_by_one(request: ReadRequest, data: list) -> list:
    """The reference: each channel judged from its own slice, as the driver used to."""
    per_address = 2 if request.enron else 1
    judged = []
    for channel in request.channels:
        offset = (channel.address - request.address) * per_address
        if request.register.is_bit:
            judged.append((channel.name, judge_bits(channel, data[offset:offset + 1])))
        else:
            judged.append((channel.name,
                           judge_words(channel, data[offset:offset + channel.words])))
    return judged


def comparable(judged: list) -> list:
    """Sorted by channel, floats by their bits: NaN equals NaN, -0.0 differs from 0.0."""
    def exact(value: object) -> object:
        return ("float", struct.pack(">d", value)) if isinstance(value, float) else value
    return sorted((name, exact(j.value), j.quality, j.reason, exact(j.raw))
                  for name, j in judged)


def same(judged: list, expected: list) -> None:
    assert comparable(judged) == comparable(expected)


def channels_every_type_and_order(address: int = 0) -> list[Channel]:
    channels = []
    for data_type in NUMBERS:
        for order in WordOrder:
            channels.append(Channel(f"{data_type.value}-{order.value}", address,
                                    data_type=data_type, word_order=order))
            address += data_type.word_count
    channels.append(Channel("text", address, data_type=DataType.STRING, length=3,
                            string_layout=StringLayout.BA))
    channels.append(Channel("flag", address + 3, data_type=DataType.BOOL, bit=5))
    channels.append(Channel("scaled", address + 4, data_type=DataType.INT16, scale=0.1,
                            offset=-3.0, sentinels=(-1,),
                            valid_range=ValidRange(-10.0, 10.0, Quality.SUSPECT)))
    return channels


def test_every_type_and_word_order_in_one_read_judges_as_channel_by_channel():
    (request,) = plan(channels_every_type_and_order())
    rand = random.Random(11)
    for _ in range(300):
        data = [rand.choice([0, 0xFFFF, 0x7F80, 0x7FC0, 0x8000, 0x0999, rand.getrandbits(16)])
                for _ in range(request.count)]
        same(request.judge.judge(data), one_by_one(request, data))


def test_channels_after_a_filled_gap_and_overlapping_channels_keep_their_offsets():
    channels = [Channel("a", 10, data_type=DataType.FLOAT32, word_order=WordOrder.CDAB),
                Channel("a_high", 10), Channel("b", 14, data_type=DataType.INT32),
                Channel("c", 17, data_type=DataType.UINT16, scale=0.5)]
    (request,) = plan(channels, ReadLimits(max_gap=3))
    assert (request.address, request.count) == (10, 8)
    data = [0x0000, 0x4148, 0xDEAD, 0xBEEF, 0xFFFF, 0xFFFE, 0x1111, 0x0064]
    judged = dict(request.judge.judge(data))
    assert judged["a"].value == 12.5 and judged["a_high"].value == 0
    assert judged["b"].value == -2 and judged["c"].value == 50.0
    same(request.judge.judge(data), one_by_one(request, data))


def test_enron_read_of_32_bit_values_and_a_mismatched_16_bit_type():
    channels = [Channel("f", 7001, data_type=DataType.FLOAT32, enron=True),
                Channel("i", 7002, data_type=DataType.INT32, word_order=WordOrder.CDAB,
                        enron=True),
                Channel("short", 7003, data_type=DataType.INT16, enron=True)]
    (request,) = plan(channels)
    assert request.enron and request.count == 3
    data = [0x4148, 0x0000, 0xFFFE, 0xFFFF, 0x0001, 0x0002]
    judged = dict(request.judge.judge(data))
    assert judged["f"].value == 12.5 and judged["i"].value == -2
    assert (judged["short"].quality, judged["short"].reason) == (Quality.BAD, "bad_response")
    same(request.judge.judge(data), one_by_one(request, data))


def test_short_answer_is_judged_channel_by_channel_as_before():
    (request,) = plan([Channel("a", 0, data_type=DataType.FLOAT32), Channel("b", 2)])
    data = [0x4148, 0x0000]  # the device sent fewer words than asked for
    judged = dict(request.judge.judge(data))
    assert (judged["b"].quality, judged["b"].reason) == (Quality.BAD, "bad_response")
    same(request.judge.judge(data), one_by_one(request, data))


def test_word_out_of_range_is_still_rejected_as_a_value_error():
    (request,) = plan([Channel("a", 0), Channel("b", 1)])
    with pytest.raises(ValueError, match="register words must be 0..65535"):
        request.judge.judge([1, 70000])


def test_bits_are_judged_from_their_own_bit():
    channels = [Channel(f"c{n}", n, register=RegisterKind.COIL, data_type=DataType.BOOL)
                for n in (0, 1, 3)]
    (request,) = plan(channels, ReadLimits(max_gap=1))
    data = [True, False, False, True]
    assert dict(request.judge.judge(data)) == {name: judged
                                               for name, judged in one_by_one(request, data)}
    assert [judged.value for _, judged in request.judge.judge(data)] == [True, False, True]


def test_random_plans_judge_as_channel_by_channel():
    rand = random.Random(1111)
    for _ in range(200):
        address, channels = 0, []
        for index in range(rand.randint(1, 12)):
            data_type = rand.choice(NUMBERS)
            channels.append(Channel(f"c{index}", address, data_type=data_type,
                                    word_order=rand.choice(list(WordOrder)),
                                    scale=rand.choice([1.0, 0.1, 1e300])))
            address += data_type.word_count + rand.choice([0, 0, 1, 2])
        for request in plan(channels, ReadLimits(max_gap=2)):
            data = [rand.getrandbits(16) for _ in range(request.count)]
            same(request.judge.judge(data), one_by_one(request, data))


# -- shortest_float32 ------------------------------------------------------------------

def shortest_by_search(value: float) -> float:
    """The definition: the first of 1..9 significant digits that packs to the same
    float32 (the implementation before issue 11, kept as the oracle)."""
    if not math.isfinite(value) or value == 0.0:
        return value
    packed = struct.pack(">f", value)
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        try:
            if struct.pack(">f", candidate) == packed:
                return candidate
        except OverflowError:
            continue
    return value


def float32_patterns(random_per_exponent: int = 0, random_patterns: int = 0) -> list[int]:
    """Bit patterns of every exponent (subnormals, normals, inf/NaN) with edge mantissas
    and ``random_per_exponent`` random ones, both signs, plus ``random_patterns`` random
    patterns (and a quarter as many random subnormals)."""
    rand = random.Random(32)
    mantissas = [0, 1, 2, 3, 0x400000, 0x3FFFFF, 0x7FFFFE, 0x7FFFFF, 0x0CCCCD, 0x228F5C]
    patterns = []
    for exponent in range(256):
        for mantissa in mantissas + [rand.getrandbits(23) for _ in range(random_per_exponent)]:
            for sign in (0, 1):
                patterns.append(sign << 31 | exponent << 23 | mantissa)
    patterns += [rand.getrandbits(32) for _ in range(random_patterns)]
    patterns += [rand.getrandbits(23) for _ in range(random_patterns // 4)]  # subnormals
    return patterns


def shortest_matches_search(patterns: list[int]) -> None:
    for bits in patterns:
        (value,) = struct.unpack(">f", bits.to_bytes(4, "big"))
        got, want = shortest_float32(value), shortest_by_search(value)
        assert struct.pack(">d", got) == struct.pack(">d", want), f"0x{bits:08x}"


def test_shortest_float32_is_the_shortest_search_for_every_kind_of_float32():
    """Every exponent with its edge mantissas and both signs (5120 patterns)."""
    shortest_matches_search(float32_patterns())


@pytest.mark.sweep  # ~50 000 patterns, seconds: run by scripts/test, left out by --fast
def test_shortest_float32_is_the_shortest_search_for_random_float32():
    shortest_matches_search(float32_patterns(random_per_exponent=40, random_patterns=20000))


@pytest.mark.parametrize(("bits", "shown"), [
    ("00000000", "0.0"), ("80000000", "-0.0"), ("7f800000", "inf"), ("ff800000", "-inf"),
    ("7fc00000", "nan"), ("00000001", "1e-45"), ("80000001", "-1e-45"),
    ("007fffff", "1.1754942e-38"), ("00800000", "1.1754944e-38"),
    ("7f7fffff", "3.4028235e+38"), ("3f228f5c", "0.635"), ("4b800001", "16777218.0"),
])
def test_shortest_float32_edges(bits, shown):
    (value,) = struct.unpack(">f", bytes.fromhex(bits))
    assert repr(shortest_float32(value)) == shown


def test_overlapping_channels_of_one_word_order_judge_as_channel_by_channel():
    """Channels reading the same registers in the same order (a float and each of its
    words) cannot share one struct: each overlap starts another."""
    rand = random.Random(2222)
    for _ in range(200):
        channels = []
        for index in range(rand.randint(2, 10)):
            data_type = rand.choice(NUMBERS[:8])
            channels.append(Channel(f"c{index}", rand.randint(0, 12), data_type=data_type,
                                    word_order=rand.choice([WordOrder.ABCD, WordOrder.CDAB])))
        (request,) = plan(channels, ReadLimits(max_gap=12))
        data = [rand.getrandbits(16) for _ in range(request.count)]
        same(request.judge.judge(data), one_by_one(request, data))


def test_numbers_of_one_word_order_are_unpacked_by_one_struct():
    layout = BlockLayout([number_slot(DataType.FLOAT32, WordOrder.CDAB, 2 * n)
                          for n in range(25)]
                         + [number_slot(DataType.INT16, WordOrder.ABCD, 60),
                            number_slot(DataType.UINT16, WordOrder.ABCD, 0)])
    assert len(layout.order) == 27
    assert layout.calls == 2  # the CDAB floats, then the ABCD integers (which do not overlap)
    straight = struct.pack(">61H", *range(61))
    swapped = struct.pack("<61H", *range(61))
    numbers = layout.unpack(straight, swapped)
    by_slot = dict(zip(layout.order, numbers, strict=True))
    assert by_slot[25] == 60 and by_slot[26] == 0
    assert struct.pack(">f", by_slot[1]) == struct.pack(">HH", 3, 2)  # CDAB: low word first
