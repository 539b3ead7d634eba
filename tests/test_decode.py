"""Register words -> values, by tables of raw words (as a device would send them)."""

from __future__ import annotations

import math
import struct

import pytest
from edge_agent_drivers.modbus.driver import decode_channel

from edge_agent.config.schema import Channel, DataType, WordOrder
from edge_agent.modbus.decode import decode_words, scale_value
from edge_agent.model import Quality


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
    assert decode_channel(channel, words) == (None, Quality.BAD, reason)
