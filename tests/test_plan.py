"""Request planning is a pure function: channels in, Modbus reads out."""

from __future__ import annotations

from edge_agent_drivers.modbus.driver import plan

from edge_agent.config.schema import Channel, DataType, RegisterKind


def ch(name, address, register=RegisterKind.HOLDING, data_type=DataType.UINT16):
    return Channel(name, address, register=register, data_type=data_type)


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
