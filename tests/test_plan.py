"""Request planning is a pure function: channels in, Modbus reads out."""

from __future__ import annotations

import pytest
from edge_agent_drivers.modbus.plan import plan, split
from edge_agent_drivers.modbus.settings import (
    AddressRange,
    Channel,
    DataType,
    ReadLimits,
    RegisterKind,
)


def ch(name, address, register=RegisterKind.HOLDING, data_type=DataType.UINT16, **extra):
    if register.is_bit:
        data_type = DataType.BOOL
    return Channel(name, address, register=register, data_type=data_type, **extra)


def spans(requests):
    return [(r.register.value, r.address, r.count, [c.name for c in r.channels])
            for r in requests]


def test_contiguous_channels_share_one_read():
    channels = [ch("a", 0, data_type=DataType.FLOAT32), ch("b", 2), ch("c", 3)]
    assert spans(plan(channels)) == [("holding", 0, 4, ["a", "b", "c"])]


def test_gap_splits_reads_so_unlisted_registers_are_never_read():
    assert spans(plan([ch("a", 0), ch("b", 2)])) == [
        ("holding", 0, 1, ["a"]), ("holding", 2, 1, ["b"])]


def test_register_tables_are_never_mixed():
    channels = [ch("a", 0), ch("b", 1, register=RegisterKind.INPUT)]
    assert spans(plan(channels)) == [("holding", 0, 1, ["a"]), ("input", 1, 1, ["b"])]


def test_unsorted_channels_are_planned_in_address_order():
    assert spans(plan([ch("b", 1), ch("a", 0)])) == [("holding", 0, 2, ["a", "b"])]


def test_reads_respect_the_125_register_limit():
    channels = [ch(f"c{i}", i) for i in range(130)]
    result = plan(channels)
    assert [(r.address, r.count) for r in result] == [(0, 125), (125, 5)]


def test_overlapping_channels_are_read_once():
    channels = [ch("whole", 10, data_type=DataType.UINT32), ch("high", 10)]
    assert spans(plan(channels)) == [("holding", 10, 2, ["whole", "high"])]


def test_function_codes_1_to_4_each_get_their_own_reads():
    channels = [ch("c", 0, RegisterKind.COIL), ch("d", 0, RegisterKind.DISCRETE),
                ch("h", 0), ch("i", 0, RegisterKind.INPUT)]
    assert sorted(r.register.function_code for r in plan(channels)) == [1, 2, 3, 4]


def test_bits_merge_up_to_2000_per_read():
    channels = [ch(f"b{i}", i, RegisterKind.COIL) for i in range(2100)]
    assert [(r.address, r.count) for r in plan(channels)] == [(0, 2000), (2000, 100)]


GAP_TABLE = [
    # (addresses, max_gap, forbidden, expected (address, count) reads)
    ([0, 2], 0, [], [(0, 1), (2, 1)]),
    ([0, 2], 1, [], [(0, 3)]),
    ([0, 3], 1, [], [(0, 1), (3, 1)]),
    ([0, 3, 5, 9], 2, [], [(0, 6), (9, 1)]),
    ([0, 2], 5, [(1, 1)], [(0, 1), (2, 1)]),
    ([0, 2, 10], 10, [(5, 6)], [(0, 3), (10, 1)]),
    ([0, 2], 5, [(0, 0)], [(0, 3)]),  # a listed channel on a forbidden address: its own
]


@pytest.mark.parametrize(("addresses", "max_gap", "forbidden", "expected"), GAP_TABLE)
def test_gaps_are_filled_only_up_to_max_gap_and_never_over_forbidden(addresses, max_gap,
                                                                      forbidden, expected):
    zones = tuple(AddressRange(first, last, register=RegisterKind.HOLDING)
                  for first, last in forbidden)
    limits = ReadLimits(max_gap=max_gap, forbidden=zones)
    channels = [ch(f"c{a}", a) for a in addresses]
    assert [(r.address, r.count) for r in plan(channels, limits)] == expected


def test_forbidden_zone_of_another_table_does_not_split():
    zones = (AddressRange(1, 1, register=RegisterKind.INPUT),)
    assert len(plan([ch("a", 0), ch("b", 2)], ReadLimits(max_gap=1, forbidden=zones))) == 1


def test_per_device_register_limit_is_smaller_than_modbus():
    channels = [ch(f"c{i}", i) for i in range(20)]
    reads = plan(channels, ReadLimits(max_registers=8))
    assert [(r.address, r.count) for r in reads] == [(0, 8), (8, 8), (16, 4)]


def test_a_value_is_never_cut_across_two_reads():
    channels = [ch(f"f{i}", i * 2, data_type=DataType.FLOAT32) for i in range(70)]
    for request in plan(channels):
        assert request.count <= 125 and request.count % 2 == 0


def test_enron_values_are_counted_per_address_and_never_mixed_with_16_bit_registers():
    enron = [ch(f"e{i}", 7001 + i, data_type=DataType.FLOAT32, enron=True) for i in range(70)]
    plain = [ch("p", 7071)]
    reads = plan(enron + plain)
    assert sorted((r.address, r.count, r.enron) for r in reads) == [
        (7001, 60, True), (7061, 10, True), (7071, 1, False)]


def test_string_channel_reads_its_whole_length():
    channels = [ch("tag", 0, data_type=DataType.STRING, length=8), ch("next", 8)]
    assert spans(plan(channels)) == [("holding", 0, 9, ["tag", "next"])]


def test_alone_channels_get_their_own_read():
    channels = [ch("a", 0), ch("b", 1), ch("c", 2)]
    assert spans(plan(channels, alone={"b"})) == [
        ("holding", 0, 1, ["a"]), ("holding", 1, 1, ["b"]), ("holding", 2, 1, ["c"])]


def test_split_first_drops_filled_gaps_then_halves_by_channel():
    channels = [ch("a", 0), ch("b", 5), ch("c", 6), ch("d", 7), ch("e", 8)]
    (merged,) = plan(channels, ReadLimits(max_gap=10))
    assert merged.has_gaps
    no_gaps = split(merged, ReadLimits(max_gap=10))
    assert spans(no_gaps) == [("holding", 0, 1, ["a"]), ("holding", 5, 4, ["b", "c", "d", "e"])]
    halves = split(no_gaps[1], ReadLimits(max_gap=10))
    assert spans(halves) == [("holding", 5, 2, ["b", "c"]), ("holding", 7, 2, ["d", "e"])]
    assert split(plan([ch("x", 3)])[0], ReadLimits()) == plan([ch("x", 3)])


def test_a_relay_module_of_2100_coils_takes_two_full_reads():
    """The group's end is carried as it grows: planning stays linear in the channels
    (re-scanning the group for each channel took seconds at this size)."""
    channels = [ch(f"do{i}", i, register=RegisterKind.COIL) for i in range(2100)]
    requests = plan(channels)
    assert [(r.address, r.count, len(r.channels)) for r in requests] == \
        [(0, 2000, 2000), (2000, 100, 100)]
