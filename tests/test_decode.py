"""Register words -> values, by tables of raw words (as a device would send them)."""

from __future__ import annotations

import math
import struct

import pytest
from edge_agent_drivers.modbus.protocol.decode import DecodeError, decode_string, decode_words
from edge_agent_drivers.modbus.settings import (
    Channel,
    DataType,
    RegisterKind,
    StringLayout,
    WordOrder,
)
from edge_agent_drivers.modbus.values import judge_words

from edge_agent.model import Quality
from edge_agent.values import ValidRange, scale_value


def f32_words(value: float, order: WordOrder) -> list[int]:
    """Independent encoder for the table: bytes A..D of the float, laid out per order."""
    a, b, c, d = struct.pack(">f", value)
    layout = {"ABCD": (a, b, c, d), "CDAB": (c, d, a, b), "BADC": (b, a, d, c),
              "DCBA": (d, c, b, a)}[order.value]
    return [layout[0] << 8 | layout[1], layout[2] << 8 | layout[3]]


CASES = [
    # words, type, order, expected
    ([0x0000], DataType.INT16, WordOrder.ABCD, 0),
    ([0x7FFF], DataType.INT16, WordOrder.ABCD, 32767),
    ([0x8000], DataType.INT16, WordOrder.ABCD, -32768),
    ([0xFFFF], DataType.INT16, WordOrder.ABCD, -1),
    ([0xFFFF], DataType.UINT16, WordOrder.ABCD, 65535),
    ([0x0102], DataType.UINT16, WordOrder.BADC, 0x0201),
    ([0x0102], DataType.UINT16, WordOrder.CDAB, 0x0102),
    ([0x0001, 0x0002], DataType.UINT32, WordOrder.ABCD, 0x00010002),
    ([0x0002, 0x0001], DataType.UINT32, WordOrder.CDAB, 0x00010002),
    ([0x0100, 0x0200], DataType.UINT32, WordOrder.BADC, 0x00010002),
    ([0x0200, 0x0100], DataType.UINT32, WordOrder.DCBA, 0x00010002),
    ([0xFFFF, 0xFFFF], DataType.INT32, WordOrder.ABCD, -1),
    ([0xFFFF, 0xFFFE], DataType.INT32, WordOrder.ABCD, -2),
    ([0xFFFE, 0xFFFF], DataType.INT32, WordOrder.CDAB, -2),
    ([0x8000, 0x0000], DataType.INT32, WordOrder.ABCD, -(2**31)),
    ([0xFFFF, 0xFFFF], DataType.UINT32, WordOrder.ABCD, 2**32 - 1),
    ([0x4148, 0x0000], DataType.FLOAT32, WordOrder.ABCD, 12.5),
    ([0x0000, 0x4148], DataType.FLOAT32, WordOrder.CDAB, 12.5),
    ([0x4841, 0x0000], DataType.FLOAT32, WordOrder.BADC, 12.5),
    ([0x0000, 0x4841], DataType.FLOAT32, WordOrder.DCBA, 12.5),
    ([0xC2F6, 0xE979], DataType.FLOAT32, WordOrder.ABCD, -123.456),
    ([0x3F22, 0x8F5C], DataType.FLOAT32, WordOrder.ABCD, 0.635),
    ([0x8000, 0x0000], DataType.FLOAT32, WordOrder.ABCD, -0.0),
]


@pytest.mark.parametrize(("words", "data_type", "order", "expected"), CASES)
def test_decode_table(words, data_type, order, expected):
    value = decode_words(words, data_type, order)
    assert value == expected
    if isinstance(expected, float):
        assert math.copysign(1, value) == math.copysign(1, expected)


@pytest.mark.parametrize("order", list(WordOrder))
@pytest.mark.parametrize("value", [0.0, 1.0, -1.5, 3.4e38, 1e-38, 421.0625, 0.1, 16777217.0,
                                   1.17549435e-38, 1e-45])
def test_float32_decodes_to_the_same_float32_bits_in_every_order(order, value):
    decoded = decode_words(f32_words(value, order), DataType.FLOAT32, order)
    assert struct.pack(">f", decoded) == struct.pack(">f", value)


@pytest.mark.parametrize(("bits", "shown"), [
    ("3f228f5c", "0.635"), ("3dcccccd", "0.1"), ("4b800001", "16777218.0"),
    ("00000001", "1e-45"), ("7f7fffff", "3.4028235e+38"),
])
def test_float32_is_published_with_its_shortest_exact_decimal(bits, shown):
    words = [int(bits[:4], 16), int(bits[4:], 16)]
    assert repr(decode_words(words, DataType.FLOAT32, WordOrder.ABCD)) == shown


def test_wrong_word_count_is_an_error_not_a_value():
    with pytest.raises(ValueError, match="needs 2 registers"):
        decode_words([1], DataType.FLOAT32, WordOrder.ABCD)


def test_word_out_of_range_rejected():
    with pytest.raises(ValueError):
        decode_words([70000], DataType.UINT16, WordOrder.ABCD)


@pytest.mark.parametrize(("raw", "scale", "offset", "expected"), [
    (123, 1.0, 0.0, 123), (123, 0.1, 0.0, 12.3), (-50, 0.5, 10.0, -15.0), (4, 1.0, -4.0, 0.0),
    (189, 0.1, 0.0, 18.9), (3, 0.1, 0.0, 0.3), (4294967295, 0.001, 0.0, 4294967.295),
])
def test_scale_and_offset_without_binary_noise(raw, scale, offset, expected):
    assert scale_value(raw, scale, offset) == expected


@pytest.mark.parametrize(("words", "reason"), [
    ([0x7FC0, 0x0000], "not_a_number"),
    ([0x7F80, 0x0000], "infinite"),
    ([0xFF80, 0x0000], "infinite"),
])
def test_nan_and_infinity_become_bad_readings(words, reason):
    channel = Channel("x", 0, data_type=DataType.FLOAT32)
    judged = judge_words(channel, words)
    assert (judged.value, judged.quality, judged.reason) == (None, Quality.BAD, reason)


def f64_words(value: float, order: WordOrder) -> list[int]:
    """Independent encoder: bytes A..H of the double, laid out per order."""
    raw = struct.pack(">d", value)
    words = [raw[i] << 8 | raw[i + 1] for i in range(0, 8, 2)]
    if order in (WordOrder.CDAB, WordOrder.DCBA):
        words.reverse()
    if order in (WordOrder.BADC, WordOrder.DCBA):
        words = [(w & 0xFF) << 8 | w >> 8 for w in words]
    return words


CASES_64 = [
    ([0x0000, 0x0000, 0x0000, 0x0001], DataType.UINT64, WordOrder.ABCD, 1),
    ([0x0001, 0x0000, 0x0000, 0x0000], DataType.UINT64, WordOrder.CDAB, 1),
    ([0x0000, 0x0000, 0x0000, 0x0100], DataType.UINT64, WordOrder.BADC, 1),
    ([0x0100, 0x0000, 0x0000, 0x0000], DataType.UINT64, WordOrder.DCBA, 1),
    ([0xFFFF] * 4, DataType.INT64, WordOrder.ABCD, -1),
    ([0xFFFF] * 4, DataType.UINT64, WordOrder.ABCD, 2**64 - 1),
    ([0x8000, 0, 0, 0], DataType.INT64, WordOrder.ABCD, -(2**63)),
    ([0x0123, 0x4567, 0x89AB, 0xCDEF], DataType.UINT64, WordOrder.ABCD, 0x0123456789ABCDEF),
    ([0xCDEF, 0x89AB, 0x4567, 0x0123], DataType.UINT64, WordOrder.CDAB, 0x0123456789ABCDEF),
    ([0x2301, 0x6745, 0xAB89, 0xEFCD], DataType.UINT64, WordOrder.BADC, 0x0123456789ABCDEF),
    ([0xEFCD, 0xAB89, 0x6745, 0x2301], DataType.UINT64, WordOrder.DCBA, 0x0123456789ABCDEF),
    ([0x4029, 0x0000, 0x0000, 0x0000], DataType.FLOAT64, WordOrder.ABCD, 12.5),
    ([0x1234], DataType.BCD16, WordOrder.ABCD, 1234),
    ([0x0009], DataType.BCD16, WordOrder.ABCD, 9),
    ([0x3412], DataType.BCD16, WordOrder.BADC, 1234),
    ([0x1234, 0x5678], DataType.BCD32, WordOrder.ABCD, 12345678),
    ([0x5678, 0x1234], DataType.BCD32, WordOrder.CDAB, 12345678),
]


@pytest.mark.parametrize(("words", "data_type", "order", "expected"), CASES_64)
def test_decode_64_bit_and_bcd_table(words, data_type, order, expected):
    assert decode_words(words, data_type, order) == expected


@pytest.mark.parametrize("order", list(WordOrder))
@pytest.mark.parametrize("value", [0.0, -0.0, 1.0, -2.75, 1e308, 5e-324, 0.1, math.pi])
def test_float64_round_trips_in_every_order(order, value):
    decoded = decode_words(f64_words(value, order), DataType.FLOAT64, order)
    assert struct.pack(">d", decoded) == struct.pack(">d", value)


@pytest.mark.parametrize("order", list(WordOrder))
@pytest.mark.parametrize(("value", "reason"), [
    (math.nan, "not_a_number"), (math.inf, "infinite"), (-math.inf, "infinite")])
def test_float64_nan_and_infinity_are_bad_in_every_order(order, value, reason):
    channel = Channel("x", 0, data_type=DataType.FLOAT64, word_order=order)
    judged = judge_words(channel, f64_words(value, order))
    assert (judged.value, judged.quality, judged.reason) == (None, Quality.BAD, reason)


@pytest.mark.parametrize(("value", "scale", "offset"), [
    (1e308, 10.0, 0.0), (-1e308, 10.0, 0.0), (1e308, 1.0, 1e308)])
def test_a_finite_value_that_overflows_once_scaled_is_bad_infinite(value, scale, offset):
    """Found by fuzzing: 1e308 * 10 was published as a GOOD infinity (JSON has none)."""
    channel = Channel("x", 0, data_type=DataType.FLOAT64, scale=scale, offset=offset,
                      valid_range=ValidRange(None, None))
    judged = judge_words(channel, f64_words(value, WordOrder.ABCD))
    assert (judged.value, judged.quality, judged.reason) == (None, Quality.BAD, "infinite")


def test_negative_zero_float32_keeps_its_sign():
    channel = Channel("x", 0, data_type=DataType.FLOAT32)
    judged = judge_words(channel, [0x8000, 0x0000])
    assert judged.quality is Quality.GOOD and math.copysign(1, judged.value) == -1


@pytest.mark.parametrize("words", [[0x12A4], [0xF000]])
def test_bcd_digit_above_nine_is_bad_not_a_number(words):
    with pytest.raises(DecodeError) as caught:
        decode_words(words, DataType.BCD16, WordOrder.ABCD)
    assert caught.value.reason == "bad_bcd"
    judged = judge_words(Channel("x", 0, data_type=DataType.BCD16), words)
    assert (judged.value, judged.quality, judged.reason) == (None, Quality.BAD, "bad_bcd")


@pytest.mark.parametrize(("words", "layout", "text"), [
    ([0x4743, 0x2D31, 0x0000], StringLayout.AB, "GC-1"),
    ([0x4347, 0x312D], StringLayout.BA, "GC-1"),
    ([0x0047, 0x0043, 0x002D, 0x0031], StringLayout.SINGLE, "GC-1"),
    ([0x4E4F, 0x3220, 0x2020], StringLayout.AB, "NO2"),
    ([0x4142, 0x00FF], StringLayout.AB, "AB"),
    ([0x41FF], StringLayout.AB, "A\ufffd"),
])
def test_strings_in_each_layout(words, layout, text):
    assert decode_string(words, layout) == text


@pytest.mark.parametrize(("bit", "expected"), [(0, True), (1, False), (15, True), (3, True)])
def test_one_bit_of_a_register(bit, expected):
    channel = Channel("x", 0, data_type=DataType.BOOL, bit=bit)
    assert judge_words(channel, [0x8009]).value is expected


@pytest.mark.parametrize(("words", "data_type", "sentinels", "quality", "reason", "value"), [
    ([0xFFFF], DataType.UINT16, (65535.0,), Quality.BAD, "sentinel", None),
    ([0xD8F1], DataType.INT16, (-9999.0,), Quality.BAD, "sentinel", None),
    ([0xC61C, 0x3C00], DataType.FLOAT32, (-9999.0,), Quality.BAD, "sentinel", None),
    ([0x0064], DataType.UINT16, (65535.0,), Quality.GOOD, None, 10.0),
])
def test_sentinels_are_matched_on_raw_counts_before_scaling(words, data_type, sentinels,
                                                             quality, reason, value):
    channel = Channel("x", 0, data_type=data_type, scale=0.1, sentinels=sentinels)
    judged = judge_words(channel, words)
    assert (judged.value, judged.quality, judged.reason) == (value, quality, reason)


@pytest.mark.parametrize(("raw", "limits", "quality", "reason"), [
    (1500, ValidRange(0, 100), Quality.BAD, "out_of_range"),
    (1001, ValidRange(0, 100, Quality.SUSPECT), Quality.SUSPECT, "out_of_range"),
    (1000, ValidRange(0, 100), Quality.GOOD, None),  # 100.0 after scaling: inside
    (0xFFF6, ValidRange(0, None), Quality.BAD, "out_of_range"),
    (0xFFF6, ValidRange(None, 0), Quality.GOOD, None),
])
def test_valid_range_is_checked_after_scaling_and_keeps_the_value(raw, limits, quality,
                                                                   reason):
    channel = Channel("x", 0, data_type=DataType.INT16, scale=0.1, valid_range=limits)
    judged = judge_words(channel, [raw])
    assert (judged.quality, judged.reason) == (quality, reason)
    assert judged.value is not None


def test_string_channel_spans_its_length_and_bits_span_one():
    assert Channel("s", 0, data_type=DataType.STRING, length=8).span == 8
    assert Channel("c", 0, register=RegisterKind.COIL, data_type=DataType.BOOL).span == 1
    assert Channel("e", 7001, data_type=DataType.FLOAT32, enron=True).span == 1
    assert Channel("e", 7001, data_type=DataType.FLOAT32, enron=True).words == 2
