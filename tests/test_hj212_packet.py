"""The HJ 212 packet codec against the public packets (tests/fixtures/hj212/), round trips
for 2017 and 2025, and the errors a station engineer reads."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime

import pytest
from support.hj212 import KEY, PACKETS, public

from edge_agent.hj212.cp import Factor, build_region, parse_region
from edge_agent.hj212.crc import CrcVariant, crc_text, hj212_crc16, modbus_crc16
from edge_agent.hj212.packet import (
    ErrorKind,
    Flag,
    Packet,
    PacketError,
    ParseOptions,
    Version,
    encode,
    parse,
    qn_for,
)

MODBUS_OK = ParseOptions(accept_crc=frozenset(CrcVariant))


def test_the_appendix_a_worked_example_has_crc_1c80_not_the_modbus_one():
    segment = (b"QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;"
               b"Flag=5;CP=&&RtdInterval=30&&")
    assert len(segment) == 101
    assert crc_text(segment) == "1C80"
    assert modbus_crc16(segment) == 0x0759 != hj212_crc16(segment)


@pytest.mark.parametrize("number", [n for n in range(1, 21) if n not in (4, 8, 17, 18)])
def test_every_valid_public_packet_parses_and_encodes_back_to_the_same_bytes(number):
    raw = public(number)
    parsed = parse(raw + "\r\n")
    assert parsed.crc_variant == CrcVariant.HJ212
    packet = parsed.packet
    assert packet.segment() == raw[6:-4]  # every field kept, in order
    if packet.qn is not None and len(packet.qn) == 17 and packet.flag is not None:
        assert encode(packet) == raw + "\r\n"


def test_expected_fail_packet_8_fails_on_its_crc_naming_both_values():
    with pytest.raises(PacketError) as caught:
        parse(public(8))
    assert caught.value.kind == ErrorKind.CRC
    assert str(caught.value) == "CRC expected 3C00, got 4980"


@pytest.mark.parametrize("number, given", [(17, "0137"), (18, "1CBA")])
def test_modbus_crc_packets_are_recognised_and_refused_unless_allowed(number, given):
    with pytest.raises(PacketError) as caught:
        parse(public(number))
    assert caught.value.kind == ErrorKind.CRC
    assert f"CRC {given} is the modbus-high-first variant" in str(caught.value)
    parsed = parse(public(number), MODBUS_OK)
    assert parsed.crc_variant == CrcVariant.MODBUS_HIGH_FIRST
    assert "CRC variant modbus-high-first" in parsed.notes


def test_packet_17_is_a_history_pull_and_18_a_notice_with_its_qn_inside_cp():
    pull = parse(public(17), MODBUS_OK).packet
    region = parse_region(pull.cp)
    assert (pull.cn, region.time("BeginTime"), region.time("EndTime")) == (
        "2051", datetime(2017, 3, 2), datetime(2017, 3, 3))
    notice = parse(public(18), MODBUS_OK).packet
    assert notice.qn is None and parse_region(notice.cp).get("QN") == "20170516010101001"


def test_modbus_crc_printed_low_byte_first_is_a_third_variant():
    good = public(5)
    segment = good[6:-4].encode()
    crc = modbus_crc16(segment)
    swapped = f"{(crc & 0xFF) << 8 | crc >> 8:04X}"
    parsed = parse(good[:-4] + swapped, MODBUS_OK)
    assert parsed.crc_variant == CrcVariant.MODBUS_LOW_FIRST


def test_lenient_where_real_platforms_are_and_says_so():
    millisecond_qn = parse(public(9))  # platform 1012 with a 13-digit Unix-ms QN
    assert millisecond_qn.packet.qn == "1617937097417"
    assert "13-digit millisecond QN" in millisecond_qn.notes
    ack_with_flag_5 = parse(public(13)).packet  # a 9014 asking for an answer itself
    assert (ack_with_flag_5.cn, ack_with_flag_5.flag) == ("9014", Flag(Version.HJ212_2017, True))
    lowercase = parse(public(5)[:-4] + public(5)[-4:].lower())
    assert "lowercase CRC hex" in lowercase.notes
    old_style = parse(public(7))  # HJ/T 212-2005: no QN, no Flag
    assert old_style.packet.flag is None
    assert {"no QN (HJ/T 212-2005 style)", "no Flag (HJ/T 212-2005 style)"} <= set(
        old_style.notes)


def test_flag_bits_per_version():
    assert Flag.from_value(4) == Flag(Version.HJ212_2017)
    assert Flag.from_value(5) == Flag(Version.HJ212_2017, ack=True)
    assert Flag.from_value(7) == Flag(Version.HJ212_2017, ack=True, split=True)
    assert Flag.from_value(9) == Flag(Version.HJ212_2025, ack=True)  # the standard's example
    assert Flag.from_value(10) == Flag(Version.HJ212_2025, split=True)
    assert Flag(Version.HJ212_2025, ack=True, split=True).value == 11
    with pytest.raises(PacketError, match="version bits 000011 name no known standard"):
        Flag.from_value(12)


def test_public_2025_packets_carry_version_2_and_the_ack_bit():
    for number in (1, 2, 3):
        assert parse(public(number)).packet.flag == Flag(Version.HJ212_2025, ack=True)


def _upload(version: Version, **changes: object) -> Packet:
    region = build_region([("DataTime", "20260315101500")], [
        Factor("a25002", (("Rtd", "0.012"), ("Flag", "N"))),
        Factor("a24088", (("Rtd", "1.250"), ("Flag", "C")))])
    packet = Packet(st="27", cn="2011", pw="123456", mn="010000A8900016F000169DC0",
                    cp=region, qn=qn_for(datetime(2026, 3, 15, 10, 15, 0, 123000)),
                    flag=Flag(version, ack=True))
    return replace(packet, **changes)


@pytest.mark.parametrize("version", [Version.HJ212_2017, Version.HJ212_2025])
def test_round_trip_for_both_versions(version):
    packet = _upload(version)
    raw = encode(packet)
    assert raw.startswith(f"##{len(raw) - 12:04d}QN=20260315101500123;ST=27;CN=2011;")
    assert raw.endswith("\r\n") and raw[-6:-2] == raw[-6:-2].upper()
    back = parse(raw)
    assert back.packet == packet and back.notes == ()
    factors = parse_region(back.packet.cp).factors()
    assert [(f.code, f.number("Rtd"), f.get("Flag")) for f in factors] == [
        ("a25002", 0.012, "N"), ("a24088", 1.25, "C")]


def test_resent_flag_only_under_2025():
    resent = encode(_upload(Version.HJ212_2025, rf=True))
    assert ";Flag=9;RF=1;CP=&&" in resent and parse(resent).packet.rf
    with pytest.raises(PacketError, match="RF=1 exists only in HJ 212-2025"):
        encode(_upload(Version.HJ212_2017, rf=True))
    with pytest.raises(PacketError, match="RF=0: the only value is 1"):
        parse(_with_crc(encode(_upload(Version.HJ212_2025, rf=True)).replace("RF=1", "RF=0")))


def _with_crc(raw: str) -> str:
    """``raw`` with its length and CRC recomputed (to build a packet wrong in one field)."""
    segment = raw[6:-6]
    return f"##{len(segment):04d}{segment}{crc_text(segment.encode())}\r\n"


def test_strict_on_what_we_send():
    with pytest.raises(PacketError, match="we send 17 digits"):
        encode(_upload(Version.HJ212_2017, qn="1617937097417"))
    with pytest.raises(PacketError, match="Flag missing"):
        encode(_upload(Version.HJ212_2017, flag=None))
    with pytest.raises(PacketError, match=r"MN='01;02': expected a non-empty value"):
        encode(_upload(Version.HJ212_2017, mn="01;02"))
    with pytest.raises(PacketError, match="data segment is 1[0-9]{3} characters, more than 1024"):
        encode(_upload(Version.HJ212_2017, cp="DataTime=20260315101500;" + "x" * 1000))


@pytest.mark.parametrize("raw, kind, message", [
    (public(5)[:2] + "0086" + public(5)[6:], ErrorKind.LENGTH,
     "length field says 0086, data segment is 87 characters"),
    (public(5).replace("F001", "F002"), ErrorKind.CRC, "CRC expected F001, got F002"),
    ("QN=1;ST=91&&F001", ErrorKind.FRAMING, "expected ## + 4-digit length"),
    ("##00x7QN=20201015123632010;ST=91&&F001", ErrorKind.FRAMING,
     "length field '00x7': expected 4 decimal digits"),
    (_with_crc(public(5).replace("MN=410183160889201000212505;", "") + "\r\n"),
     ErrorKind.FIELD, "missing field MN"),
    (_with_crc(public(5).replace(";CP=&&&&", ";CP=&&") + "\r\n"), ErrorKind.FIELD,
     "missing field CP=&&…&&"),
    (_with_crc(public(5).replace("QN=20201015123632010", "QN=2020101512") + "\r\n"),
     ErrorKind.FIELD, "QN=2020101512: expected 17 digits"),
    (_with_crc(public(5).replace("Flag=4", "Flag=6") + "\r\n"), ErrorKind.FIELD,
     "Flag=6 says split but PNUM/PNO missing"),
    (_with_crc(public(5).replace("ST=91", "ST=91;ST=22") + "\r\n"), ErrorKind.FIELD,
     "field ST appears twice"),
])
def test_errors_name_what_is_wrong(raw, kind, message):
    with pytest.raises(PacketError) as caught:
        parse(raw)
    assert caught.value.kind == kind
    assert message in str(caught.value)


def test_cp_region_items_factors_and_stray_fields():
    region = parse_region(parse(public(19)).packet.cp)  # ...;a34001-Rtd=92;Flag=N
    assert region.time("DataTime") == datetime(2025, 1, 31, 20, 28, 9)
    assert [f.code for f in region.factors()] == ["a34001"]
    assert region.get("Flag") == "N"  # a stray item not bound to a code stays a plain field
    running = parse_region(parse(public(15)).packet.cp)
    assert [(f.code, f.get("RS")) for f in running.factors()] == [("SB1", "1"), ("SB2", "1")]
    with pytest.raises(PacketError, match="CP item 'a25002-Rtd': expected name=value"):
        parse_region("DataTime=20260101000000;a25002-Rtd")
    with pytest.raises(PacketError, match=r"a25002-Rtd='--': expected a number"):
        parse_region("a25002-Rtd=--").factors()[0].number("Rtd")


def test_qns_from_the_clock_never_repeat_even_in_one_millisecond_or_a_step_back():
    from edge_agent.hj212.packet import QnClock
    clock = QnClock()
    moment = datetime(2026, 3, 15, 10, 15, 0, 999500)
    assert [clock.next(moment), clock.next(moment), clock.next(datetime(2026, 3, 15, 10))] == [
        "20260315101500999", "20260315101501000", "20260315101501001"]


def test_realtime_items_and_number_formatting():
    from edge_agent.hj212.cp import format_number, realtime_factor
    assert realtime_factor("a24088", 1.25, "N", decimals=3).values == (
        ("Rtd", "1.250"), ("Flag", "N"))
    assert realtime_factor("a21028", None, "B").values == (("Flag", "B"),)
    assert realtime_factor("a21028", float("nan"), "D").values == (("Flag", "D"),)
    assert [format_number(v) for v in (2.0, 0.1, 1e-7, 123456789.5)] == [
        "2", "0.1", "0.0000001", "123456789.5"]
    with pytest.raises(ValueError, match="cannot be sent"):
        format_number(float("inf"))


@pytest.mark.parametrize("given", ["+140", " 140", "1_40"])
def test_a_crc_field_must_be_four_hex_digits(given):
    """#13's CRC is 0140: Python's int(…, 16) reads each of these as 0x140 too."""
    assert public(13).endswith("0140")
    with pytest.raises(PacketError, match=re.escape(f"CRC expected 0140, got {given}")):
        parse(public(13)[:-4] + given)


def test_garbled_packets_raise_packet_error_and_nothing_else():
    """Mutated public packets, their length and CRC made right again so the damage reaches
    the fields and the region: every outcome is a packet or a PacketError."""
    import random

    rng = random.Random(212)
    alphabet = "#;=,&{}0123456789ABCDEFx-\r\n\x00é"
    outcomes = {"parsed": 0, "refused": 0}
    for _ in range(3000):
        segment = list(rng.choice(PACKETS)[6:-4])
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(len(segment))
            choice = rng.random()
            if choice < 0.4:
                segment[position] = rng.choice(alphabet)
            elif choice < 0.7:
                del segment[position]
            else:
                segment.insert(position, rng.choice(alphabet))
        text = "".join(segment)
        raw = f"##{len(text.encode()):04d}{text}{crc_text(text.encode())}\r\n"
        try:
            region = parse_region(parse(raw, ParseOptions(sm4_key=KEY)).packet.cp)
            region.factors()
            outcomes["parsed"] += 1
        except PacketError:
            outcomes["refused"] += 1
    assert outcomes["parsed"] > 500 and outcomes["refused"] > 500, outcomes


def _appendix_a_loop(data: bytes, modbus: bool = False) -> int:
    """The CRC loops as the standard (and the Modbus spec) write them, bit by bit."""
    crc = 0xFFFF
    for byte in data:
        crc = crc ^ byte if modbus else (crc >> 8) ^ byte
        for _ in range(8):
            lsb = crc & 1
            crc >>= 1
            if lsb:
                crc ^= 0xA001
    return crc


def test_the_table_driven_crcs_equal_the_loops_as_written():
    import random

    rng = random.Random(16)
    samples = [line[6:-4].encode() for line in PACKETS]
    samples += [bytes(rng.randrange(256) for _ in range(rng.randrange(300))) for _ in range(200)]
    for data in samples:
        assert hj212_crc16(data) == _appendix_a_loop(data)
        assert modbus_crc16(data) == _appendix_a_loop(data, modbus=True)


def test_the_appendix_a_crc_takes_only_256_values_as_docs_hj212_md_says():
    import random

    rng = random.Random(256)
    values = {hj212_crc16(bytes(rng.randrange(256) for _ in range(20))) for _ in range(8000)}
    assert len(values) == 256
