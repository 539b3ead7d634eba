"""Which samples a platform gets as 2011 (hj212/rtd_schedule.py), by tables: the first
sample at or after each interval's start, intervals counted from local midnight; a
failed upload does not count as sent; interval 0 sends everything; a changed interval
applies at once. And the CRC variants a ``crc:`` setting sends, on the standard's own
example packet (README A.4: Appendix A's CRC 1C80, the Modbus CRC 0759)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from edge_agent.hj212.crc import CrcVariant
from edge_agent.hj212.packet import Flag, Packet, ParseOptions, Version, encode, parse
from edge_agent.hj212.rtd_schedule import RealtimeSchedule, slot_of

DAY = datetime(2026, 3, 15)


def at(clock: str) -> datetime:
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return DAY + timedelta(hours=hours, minutes=minutes, seconds=seconds)


@pytest.mark.parametrize(("clock", "interval_s", "slot"), [
    ("00:00:00", 30, 0),
    ("00:00:29", 30, 0),
    ("00:00:30", 30, 1),
    ("10:00:00", 60, 600),
    ("10:59:59", 3600, 10),
    ("23:59:59", 3600, 23),
    ("00:16:39", 1000, 0),  # an interval not dividing the day restarts at midnight
    ("00:16:40", 1000, 1),
])
def test_slots_count_whole_intervals_from_local_midnight(clock, interval_s, slot):
    assert slot_of(at(clock), interval_s) == (date(2026, 3, 15), slot)


def sent_of(clocks: list[str], interval_s: int) -> list[str]:
    schedule = RealtimeSchedule()
    sent = []
    for clock in clocks:
        if schedule.due("gc-1", at(clock), interval_s):
            schedule.sent("gc-1", at(clock))
            sent.append(clock)
    return sent


@pytest.mark.parametrize(("clocks", "interval_s", "sent"), [
    # 10 s samples, 30 s interval: the one on each boundary
    (["10:00:00", "10:00:10", "10:00:20", "10:00:30", "10:00:40"], 30,
     ["10:00:00", "10:00:30"]),
    # off the boundaries: the first of each minute; a silent minute sends nothing
    (["10:00:05", "10:00:45", "10:01:05", "10:01:25", "10:03:00"], 60,
     ["10:00:05", "10:01:05", "10:03:00"]),
    # a GC every 5 minutes, interval 60 s: every analysis goes
    (["10:00:00", "10:05:00", "10:10:00"], 60, ["10:00:00", "10:05:00", "10:10:00"]),
    # interval 0: every sample, as many per second as there are
    (["10:00:00", "10:00:00", "10:00:01"], 0, ["10:00:00", "10:00:00", "10:00:01"]),
    # the clock stepped back an hour: another interval, sent
    (["10:00:00", "09:00:10", "09:00:20"], 60, ["10:00:00", "09:00:10"]),
])
def test_the_first_sample_of_each_interval_is_sent(clocks, interval_s, sent):
    assert sent_of(clocks, interval_s) == sent


def test_midnight_starts_a_new_interval_even_after_a_short_last_one():
    schedule = RealtimeSchedule()
    schedule.sent("gc-1", at("23:59:50"))
    assert not schedule.due("gc-1", at("23:59:59"), 3600)
    assert schedule.due("gc-1", at("00:00:05") + timedelta(days=1), 3600)


def test_a_sample_not_delivered_is_chosen_again_and_devices_are_apart():
    schedule = RealtimeSchedule()
    assert schedule.due("gc-1", at("10:00:00"), 60)  # asked, upload failed: not sent
    assert schedule.due("gc-1", at("10:00:00"), 60)
    schedule.sent("gc-1", at("10:00:00"))
    assert not schedule.due("gc-1", at("10:00:10"), 60)
    assert schedule.due("h2s-1", at("10:00:10"), 60)


def test_a_changed_interval_applies_to_the_next_sample():
    schedule = RealtimeSchedule()
    schedule.sent("gc-1", at("10:00:00"))
    assert not schedule.due("gc-1", at("10:01:00"), 120)
    assert schedule.due("gc-1", at("10:01:00"), 60)


APPENDIX_A = Packet(st="32", cn="1062", pw="100000", mn="010000A8900016F000169DC0",
                    cp="RtdInterval=30", qn="20160801085857223",
                    flag=Flag(Version.HJ212_2017, ack=True))
ANY = ParseOptions(accept_crc=frozenset(CrcVariant))


@pytest.mark.parametrize(("variant", "crc"), [
    (CrcVariant.HJ212, "1C80"),
    (CrcVariant.MODBUS_HIGH_FIRST, "0759"),
    (CrcVariant.MODBUS_LOW_FIRST, "5907"),
])
def test_each_crc_variant_is_sent_as_named_and_recognised(variant, crc):
    raw = encode(APPENDIX_A, crc=variant)
    assert raw.endswith(f"&&{crc}\r\n") and raw.startswith("##0101")
    assert parse(raw, ANY).crc_variant == variant
    assert parse(raw.replace(crc, crc.lower()), ANY).crc_variant == variant


def test_the_watchdog_bound_counts_the_pieces_of_the_longest_record():
    """The uplink's heartbeat bound must cover every retry of every piece: a 120-channel
    device's 2011 has more pieces than the four a short one is given."""
    from edge_agent.forward.hj212uplink import max_pieces
    from edge_agent.hj212.realtime import DeviceMap

    wide = DeviceMap(tuple((f"c{n}", f"x9{n:04d}", "mg/m3", None) for n in range(120)))
    short = DeviceMap((("benzene", "a25002", "mg/m3", 3),))
    assert max_pieces({"gc-1": short}) == 4
    assert max_pieces({"gc-1": short, "ftir-1": wide}) >= 7
