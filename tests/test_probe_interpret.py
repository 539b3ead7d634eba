"""The probe's pure parts by tables: every interpretation of known register words, manual
numbers, finding a display value, command-line values, and the rendered table's width."""

from __future__ import annotations

import json
import math
import struct

import pytest
from edge_agent_drivers.modbus.settings import RegisterKind
from edge_agent_drivers.modbus.settings import WordOrder as WO

from edge_agent.config.schema import LinkProtocol, Parity, SerialLink, TcpLink
from edge_agent.tools.probe import render
from edge_agent.tools.probe.interpret import (
    find,
    interpret,
    manual_number,
    parse_manual_number,
    range_text,
)
from edge_agent.tools.probe.options import (
    SerialSettings,
    Target,
    build_link,
    default_tolerance,
    parse_table,
    parse_target,
    parse_tolerance,
    parse_units,
)


def wire_words(raw: bytes, order: WO) -> list[int]:
    """Independent encoder: the value's bytes (most significant first) laid out on the
    wire per order. CDAB reverses the words, BADC swaps bytes in each word, DCBA both."""
    words = [raw[i:i + 2] for i in range(0, len(raw), 2)]
    if order in (WO.CDAB, WO.DCBA):
        words.reverse()
    if order in (WO.BADC, WO.DCBA):
        words = [word[::-1] for word in words]
    return [int.from_bytes(word, "big") for word in words]


WIDE_CASES = [
    # type, struct code, value as the instrument means it
    ("float32", ">f", 12.5),
    ("float32", ">f", -123.456),
    ("int32", ">i", -123456789),
    ("uint32", ">I", 3_000_000_000),
    ("float64", ">d", 1234.5678),
    ("float64", ">d", -2.5e-7),
]


@pytest.mark.parametrize("order", list(WO))
@pytest.mark.parametrize(("type_name", "code", "value"), WIDE_CASES)
def test_every_order_reads_back_the_value_it_was_written_in(type_name, code, value, order):
    raw = struct.pack(code, value)
    views = interpret(100, [*wire_words(raw, order), 0, 0])
    (expected,) = struct.unpack(code, raw)
    assert views[0].address == 100
    assert views[0].wide[type_name, order] == expected


def test_64_bit_layouts_match_the_lead_examples():
    # 1.0 is 3FF0 0000 0000 0000: where 3FF0 sits shows each order's layout
    assert interpret(0, [0x3FF0, 0, 0, 0])[0].wide["float64", WO.ABCD] == 1.0
    assert interpret(0, [0, 0, 0, 0x3FF0])[0].wide["float64", WO.CDAB] == 1.0
    assert interpret(0, [0xF03F, 0, 0, 0])[0].wide["float64", WO.BADC] == 1.0
    assert interpret(0, [0, 0, 0, 0xF03F])[0].wide["float64", WO.DCBA] == 1.0


@pytest.mark.parametrize(("word", "int16", "uint16", "high", "low"), [
    (0x0000, 0, 0, "..", ".."),
    (0x7FFF, 32767, 32767, "..", ".."),
    (0x8000, -32768, 32768, "..", ".."),
    (0xFFFF, -1, 65535, "..", ".."),
    (0x4142, 16706, 16706, "AB", "BA"),
    (0x2030, 8240, 8240, " 0", "0 "),
    (0x7E41, 32321, 32321, "~A", "A~"),
])
def test_sixteen_bit_values_and_text(word, int16, uint16, high, low):
    (view,) = interpret(0, [word])
    assert (view.int16, view.uint16) == (int16, uint16)
    assert (view.text_high_first, view.text_low_first) == (high, low)


def test_range_text_both_byte_orders():
    words = [0x4743, 0x2D31, 0x0000]  # "GC-1" padded with NULs
    assert range_text(words, high_first=True) == "GC-1.."
    assert range_text(words, high_first=False) == "CG1-.."


def test_wide_types_stop_where_the_range_ends():
    views = interpret(0, [1, 2, 3, 4])
    assert [("float64", WO.ABCD) in view.wide for view in views] == [True, False, False, False]
    assert [("int32", WO.ABCD) in view.wide for view in views] == [True, True, True, False]


def test_words_outside_16_bits_are_refused():
    with pytest.raises(ValueError, match="0..65535"):
        interpret(0, [0x10000])


@pytest.mark.parametrize(("kind", "address", "number"), [
    (RegisterKind.HOLDING, 0, "40001"),
    (RegisterKind.HOLDING, 9998, "49999"),
    (RegisterKind.HOLDING, 9999, "410000"),
    (RegisterKind.HOLDING, 65535, "465536"),
    (RegisterKind.INPUT, 0, "30001"),
    (RegisterKind.DISCRETE, 4, "10005"),
    (RegisterKind.COIL, 0, "00001"),
])
def test_manual_numbers_round_trip(kind, address, number):
    assert manual_number(kind, address) == number
    assert parse_manual_number(number) == (kind, address)


@pytest.mark.parametrize(("text", "kind", "address"), [
    ("400001", RegisterKind.HOLDING, 0),
    ("300100", RegisterKind.INPUT, 99),
    ("000010", RegisterKind.COIL, 9),
])
def test_six_digit_manual_numbers(text, kind, address):
    assert parse_manual_number(text) == (kind, address)


@pytest.mark.parametrize(("text", "message"), [
    ("1", "table digit"), ("40000", "1..9999"), ("465537", "1..65536"),
    ("20001", "table digit"), ("4000a", "table digit"), ("4000001", "table digit"),
])
def test_manual_numbers_without_a_table_or_out_of_range_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_manual_number(text)


def float32_cdab_words(value: float) -> list[int]:
    return wire_words(struct.pack(">f", value), WO.CDAB)


def test_find_names_the_float32_cdab_register_first():
    views = interpret(0, [*float32_cdab_words(12.5), 7, 7])
    matches = find(views, 12.5, 0.05)
    assert (matches[0].address, matches[0].type_name, matches[0].order) == (0, "float32",
                                                                            WO.CDAB)
    assert matches[0].value == 12.5 and matches[0].divisor == 1


def test_find_tries_integer_scales_but_never_scales_floats():
    views = interpret(10, [125, 0xFF83])  # 125 -> 12.5 at /10; 0xFF83 = -125 as int16
    found = {(m.address, m.type_name, m.divisor) for m in find(views, 12.5, 0.05)}
    assert (10, "int16|uint16", 10) in found
    negative = find(views, -1.25, 0.005)
    assert [(m.address, m.type_name, m.divisor) for m in negative] == [(11, "int16", 100)]
    assert negative[0].config_type == "int16"


def test_find_tolerance_is_inclusive_and_nan_never_matches():
    views = interpret(0, [*float32_cdab_words(12.45), *float32_cdab_words(math.nan)])
    assert [m.address for m in find(views, 12.5, 0.05) if m.order is WO.CDAB] == [0]
    assert not [m for m in find(views, 12.5, 0.04) if m.type_name == "float32"]


def test_find_lists_exact_before_near_and_unscaled_before_scaled():
    views = interpret(0, [125, 0x4148, 0x0000, 126])  # float32 ABCD 12.5 at 1
    matches = [(m.address, m.type_name, m.order, m.divisor) for m in find(views, 12.5, 0.1)]
    assert matches[:2] == [(1, "float32", WO.ABCD, 1), (0, "int16|uint16", None, 10)]
    assert (3, "int16|uint16", None, 10) in matches[2:]  # 12.6: near, not exact


@pytest.mark.parametrize(("text", "target"), [
    ("/dev/ttyUSB0", Target(serial_port="/dev/ttyUSB0")),
    ("COM3", Target(serial_port="COM3")),
    ("192.168.1.20", Target(host="192.168.1.20")),
    ("gc-1.plant:5020", Target(host="gc-1.plant", tcp_port=5020)),
    ("[fe80::1]:502", Target(host="fe80::1")),
])
def test_targets(text, target):
    assert parse_target(text) == target


@pytest.mark.parametrize("text", ["192.168.1.20:99999", "a b", "host:port"])
def test_bad_targets_are_refused(text):
    with pytest.raises(ValueError):
        parse_target(text)


def test_protocols_map_to_link_protocols():
    serial = SerialSettings(19200, Parity.EVEN, 2, 7)
    tcp = Target(host="10.0.0.5")
    assert build_link(tcp, None, serial, 300) == TcpLink("probe", "10.0.0.5", 502,
                                                         timeout_ms=300)
    gateway = build_link(tcp, "modbus-rtu-over-tcp", serial, 300)
    assert isinstance(gateway, TcpLink) and gateway.protocol is LinkProtocol.MODBUS_RTU
    ascii_link = build_link(Target(serial_port="/dev/ttyS1"), "modbus-ascii", serial, 300)
    assert ascii_link == SerialLink("probe", "/dev/ttyS1", LinkProtocol.MODBUS_ASCII, 19200,
                                    7, Parity.EVEN, 2, 300)
    with pytest.raises(ValueError, match="network address"):
        build_link(Target(serial_port="/dev/ttyS1"), "modbus-tcp", serial, 300)


@pytest.mark.parametrize(("text", "units"), [
    ("1-3", [1, 2, 3]), ("5,1-2,2", [1, 2, 5]), ("247", [247]), ("0-0", [0]),
])
def test_unit_ranges(text, units):
    assert parse_units(text) == units


@pytest.mark.parametrize("text", ["3-1", "1-256", "x", "1,,2"])
def test_bad_unit_ranges_are_refused(text):
    with pytest.raises(ValueError):
        parse_units(text)


@pytest.mark.parametrize(("value", "tolerance"), [
    ("12.5", 0.05), ("350", 0.5), ("0.012", 0.0005), ("1.2e3", 50.0), ("-3", 0.5),
])
def test_default_tolerance_is_half_the_display_step(value, tolerance):
    assert default_tolerance(value) == pytest.approx(tolerance)


def test_tolerance_absolute_or_percent():
    assert parse_tolerance("0.2", "12.5") == 0.2
    assert parse_tolerance("2%", "-50") == pytest.approx(1.0)
    with pytest.raises(ValueError):
        parse_tolerance("-1", "12.5")


@pytest.mark.parametrize(("text", "kind"), [
    ("holding", RegisterKind.HOLDING), ("4", RegisterKind.INPUT), ("COIL", RegisterKind.COIL),
    ("discrete", RegisterKind.DISCRETE),
])
def test_tables_by_name_or_function_code(text, kind):
    assert parse_table(text) is kind


EXTREMES = [0x8000, 0x0001, 0xFF7F, 0xFFFF, 0x7F7F, 0xFFFF, 0x0080, 0x0000, 0xFFFE, 0x8001]


def test_table_fits_120_columns_and_marks_the_match():
    views = interpret(65524, [*EXTREMES, *float32_cdab_words(12.5)])
    source = render.ReadSource("/dev/ttyUSB0 (9600 8N1, modbus-rtu)", 247,
                               RegisterKind.HOLDING, 65524, 12)
    spec = render.FindSpec("12.5", 12.5, 0.05)
    text = render.registers_table(source, views, spec, find(views, 12.5, 0.05))
    assert max(len(line) for line in text.splitlines()) <= 120
    row = next(line for line in text.splitlines()
               if line.startswith("  65534  465535") and "12.5*" in line)
    assert row.split()[3] == "12.5*"  # the CDAB column of the float32 table
    assert "{address: 65534, type: float32, word_order: CDAB}" in text


def test_json_is_valid_with_nan_and_infinity():
    views = interpret(0, [0x7FC0, 0x0000, 0x7F80, 0x0000])
    source = render.ReadSource("h:502 (modbus-tcp)", 1, RegisterKind.INPUT, 0, 4)
    document = json.loads(render.registers_json(source, views, None, []))
    assert document["registers"][0]["float32"]["ABCD"] == "nan"
    assert document["registers"][2]["float32"]["ABCD"] == "inf"
    assert document["registers"][0]["manual"] == "30001"
