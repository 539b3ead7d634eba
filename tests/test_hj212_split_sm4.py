"""Packets over 1024 characters split with PNUM/PNO and put back together; HJ 212-2025's
SM4 examples (Appendix A.2) byte for byte."""

from __future__ import annotations

from datetime import datetime

import pytest
from support.hj212 import KEY, PACKETS

from edge_agent.hj212 import sm4
from edge_agent.hj212.cp import Factor, build_region, parse_region
from edge_agent.hj212.packet import (
    MAX_SEGMENT,
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
from edge_agent.hj212.split import Reassembler, split_packet


def long_upload(version: Version, factors: int = 60) -> Packet:
    region = build_region([("DataTime", "20260315101500")], [
        Factor(f"a{25000 + n}", (("Rtd", f"{n}.123"), ("Flag", "N"))) for n in range(factors)])
    return Packet(st="27", cn="2011", pw="123456", mn="010000A8900016F000169DC0", cp=region,
                  qn=qn_for(datetime(2026, 3, 15, 10, 15, 0, 998000)),
                  flag=Flag(version, ack=True))


@pytest.mark.parametrize("version, split_flag", [(Version.HJ212_2017, 7),
                                                 (Version.HJ212_2025, 11)])
def test_a_long_upload_is_split_under_1024_and_reassembled_whole(version, split_flag):
    packet = long_upload(version)
    assert len(packet.segment()) > MAX_SEGMENT
    pieces = split_packet(packet)
    assert len(pieces) == 3
    raws = [encode(piece) for piece in pieces]
    assert all(int(raw[2:6]) <= MAX_SEGMENT for raw in raws)
    parsed = [parse(raw).packet for raw in raws]
    assert [(p.pnum, p.pno, p.flag.value) for p in parsed] == [
        (3, 1, split_flag), (3, 2, split_flag), (3, 3, split_flag)]
    # consecutive QNs, across a second boundary
    assert [p.qn for p in parsed] == ["20260315101500998", "20260315101500999",
                                      "20260315101501000"]
    # each piece alone still says when
    assert all(parse_region(p.cp).get("DataTime") == "20260315101500" for p in parsed)
    joined = Reassembler()
    assert joined.add(parsed[2]) is None and joined.add(parsed[0]) is None
    whole = joined.add(parsed[1])
    assert whole == packet


def test_a_short_packet_is_not_split_and_passes_the_reassembler_as_it_is():
    packet = long_upload(Version.HJ212_2017, factors=3)
    assert split_packet(packet) == [packet]
    assert Reassembler().add(packet) is packet


def test_a_station_dying_mid_split_cannot_grow_the_reassembler():
    joined = Reassembler(max_pending=2)
    for n in range(5):
        first = split_packet(long_upload(Version.HJ212_2017))[0]
        assert joined.add(Packet(**{**first.__dict__, "cn": f"20{n}1"})) is None
    assert joined.dropped == 3


def test_one_factor_longer_than_a_packet_is_refused_clearly():
    huge = Factor("a25002", tuple((f"K{n}", "1.0") for n in range(200)))
    packet = Packet(st="27", cn="2011", pw="1", mn="M", cp=build_region([], [huge]),
                    qn="20260101000000000", flag=Flag(Version.HJ212_2017))
    with pytest.raises(PacketError, match="alone is longer than a packet may carry"):
        split_packet(packet)


@pytest.mark.parametrize("plain, sent", [(3, 4)])
def test_the_standards_sm4_example_comes_out_byte_for_byte(plain, sent):
    plaintext, encrypted = PACKETS[plain - 1], PACKETS[sent - 1]
    packet = parse(plaintext).packet
    assert sm4.needs_encryption(packet.cn)
    assert encode(packet, sm4_key=KEY) == encrypted + "\r\n"
    back = parse(encrypted, ParseOptions(sm4_key=KEY))
    assert back.packet == packet and back.encrypted
    assert back.notes == ("SM4-encrypted data region", "length field counts the plaintext segment")


def test_the_208_character_example_is_13_whole_blocks_and_decrypts_back():
    packet = parse(PACKETS[1]).packet
    assert len(packet.cp) == 208
    region = sm4.encrypt_region(packet.cp, KEY)
    assert region.startswith("{0xE4,0x3E,0x15,0x9A,") and region.endswith("}")  # no tail
    assert region.count("0x") == 208
    assert sm4.decrypt_region(region, KEY) == packet.cp


def test_encrypted_data_without_the_key_or_with_a_wrong_one_is_refused():
    with pytest.raises(PacketError) as caught:
        parse(PACKETS[3])
    assert caught.value.kind == ErrorKind.ENCRYPTION
    assert "SM4-encrypted and no key is set" in str(caught.value)
    with pytest.raises(PacketError, match="wrong SM4 key"):
        parse(PACKETS[3], ParseOptions(sm4_key=b"1" * 16))


def test_which_commands_2025_encrypts():
    assert [cn for cn in ("2011", "2051", "2999", "1014", "3020", "9014", "1011", "9015")
            if sm4.needs_encryption(cn)] == ["2011", "2051", "2999", "1014", "3020"]


def test_a_region_shorter_than_a_block_stays_plaintext():
    assert sm4.encrypt_region("QnRtn=1", KEY) == "QnRtn=1"
