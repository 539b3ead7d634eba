"""Importing Modbus/TCP from pcap and pcapng files.

The public captures in ../shared/captures/ (see its SOURCES.md; not copied into the
project, by their terms) must import without errors, and what the import finds must match
what an independent reader finds: scapy's own Modbus dissector, walking each TCP segment
by the MBAP length. Field conditions the public files lack (a capture starting
mid-stream, retransmissions, reordering, a lost segment, two frames in one segment, one
frame over two) are built packet by packet with scapy.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from scapy.contrib.modbus import ModbusADURequest, ModbusADUResponse
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import CookedLinux, Ether
from scapy.packet import Raw
from scapy.utils import PcapNgWriter, rdpcap, wrpcap
from support.capture_session import PUBLIC, public_capture

from edge_agent.tools.capture.files import read_capture, write_capture
from edge_agent.tools.capture.format import Event, Frame
from edge_agent.tools.capture.modbus_frames import encode_tcp, mbap_header_problem, tcp_adu
from edge_agent.tools.capture.pcap_import import Imported, import_pcap
from edge_agent.tools.capture.pcap_read import PcapError

# -- the independent reader ---------------------------------------------------------------


def scapy_view(path: Path) -> tuple[list[tuple], int]:
    """Per frame (direction, unit, function code, exception code) as scapy dissects it,
    and the count of byte runs that carry no valid MBAP header."""
    frames, unframed = [], 0
    for packet in rdpcap(str(path)):
        payload, is_request = _tcp_payload(packet), packet[TCP].dport == 502
        while payload:
            adu = (ModbusADURequest if is_request else ModbusADUResponse)(payload) \
                if len(payload) >= 8 else None
            if adu is None or adu.protoId != 0 or not 2 <= adu.len <= 254 \
                    or 6 + adu.len > len(payload):
                unframed += 1
                break
            pdu = adu.payload
            fc = getattr(pdu, "funcCode", None)
            fc = bytes(pdu)[0] if fc is None else fc
            exception = getattr(pdu, "exceptCode", getattr(pdu, "exceptionCode", None))
            frames.append(("tx" if is_request else "rx", adu.unitId, fc,
                           exception if fc & 0x80 else None))
            payload = payload[6 + adu.len:]
    return frames, unframed


def _tcp_payload(packet: Ether) -> bytes:
    """The segment's bytes as captured. Not ``packet[TCP].payload``: scapy's Modbus layer
    drops whatever follows the first ADU of a segment."""
    ip = packet[IP]
    start = len(Ether()) + ip.ihl * 4 + packet[TCP].dataofs * 4
    return bytes(packet.original)[start:len(Ether()) + ip.len]


def _whole(packet: Ether) -> Ether:
    """The packet with its TCP payload as captured (see ``_tcp_payload``), for writing."""
    copy = packet.copy()
    copy[TCP].remove_payload()
    copy = copy / Raw(_tcp_payload(packet))
    copy.time = packet.time
    return copy


def our_view(imported: Imported) -> tuple[list[tuple], int]:
    frames = [r for r in imported.records if isinstance(r, Frame)]
    framed = [(f.dir, f.info.unit_id, f.info.function_code, f.info.exception_code)
              for f in frames if tcp_adu(f.data) is not None]
    return framed, sum(1 for f in frames if tcp_adu(f.data) is None)


@pytest.mark.sweep
@pytest.mark.parametrize("name", PUBLIC)
def test_public_captures_import_as_the_independent_reader_sees_them(name):
    path = public_capture(name)
    imported = import_pcap(path)
    assert our_view(imported) == scapy_view(path)
    units = {frame[1] for frame in scapy_view(path)[0]}
    assert imported.header.unit_ids == tuple(sorted(units))


@pytest.mark.parametrize("name", PUBLIC)
def test_every_answer_is_paired_with_an_earlier_request_of_the_same_transaction(name):
    imported = import_pcap(public_capture(name))
    requests = {r.xid: r for r in imported.records
                if isinstance(r, Frame) and r.dir == "tx" and r.xid is not None}
    answers = [r for r in imported.records if isinstance(r, Frame) and r.dir == "rx" and r.xid]
    assert answers
    for answer in answers:
        request = requests[answer.xid]
        assert (request.conn, request.info.tid, request.info.unit_id) == \
            (answer.conn, answer.info.tid, answer.info.unit_id)
        assert request.info.function_code == answer.info.function_code & 0x7F
        assert request.t <= answer.t


def test_the_gateway_capture_keeps_unanswered_requests_and_its_mid_stream_start():
    imported = import_pcap(public_capture(PUBLIC[0]))
    counts = imported.counts
    assert (counts["requests"], counts["answers"]) == (1142, 1116)
    assert counts["unanswered"] == 27 and counts["without request"] == 1
    assert imported.header.unit_ids == (1, 2, 3, 7)
    first = imported.records[0]
    assert isinstance(first, Event) and "mid-stream" in first.note


def test_the_edge_case_capture_keeps_exceptions_and_malformed_frames():
    imported = import_pcap(public_capture(PUBLIC[1]))
    frames = [r for r in imported.records if isinstance(r, Frame)]
    assert {f.info.exception_code for f in frames if f.info.exception_code} == {5, 6, 11}
    problems = [f.info.malformed for f in frames if f.info.malformed]
    assert sum("protocol id 16" in p for p in problems) == 2
    assert sum("length 34820" in p for p in problems) == 2
    assert imported.counts["without request"] == 14


@pytest.mark.parametrize("name", PUBLIC)
def test_an_imported_capture_reads_back_unchanged(tmp_path, name):
    imported = import_pcap(public_capture(name))
    out = tmp_path / "imported.capture.jsonl"
    write_capture(out, imported.header, imported.records)
    assert read_capture(out).records == imported.records


def test_pcapng_imports_like_pcap(tmp_path):
    path = public_capture(PUBLIC[1])
    pcapng = tmp_path / "same.pcapng"
    with PcapNgWriter(str(pcapng)) as writer:
        for packet in rdpcap(str(path)):
            writer.write(_whole(packet))
    from_pcapng, from_pcap = import_pcap(pcapng).records, import_pcap(path).records
    # scapy's pcapng writer truncates times to whole microseconds: allow that, no more.
    assert [replace(r, t=0.0) for r in from_pcapng] == [replace(r, t=0.0) for r in from_pcap]
    assert max(abs(a.t - b.t) for a, b in zip(from_pcapng, from_pcap, strict=True)) <= 1.5e-6


# -- field conditions, built packet by packet ----------------------------------------------

MASTER, DEVICE = ("10.1.1.2", 40000), ("10.1.1.9", 502)


def _to_device(t: float, seq: int, payload: bytes, flags: str = "PA") -> Ether:
    packet = Ether() / IP(src=MASTER[0], dst=DEVICE[0]) / TCP(
        sport=MASTER[1], dport=DEVICE[1], flags=flags, seq=seq) / Raw(payload)
    packet.time = t
    return packet


def _to_master(t: float, seq: int, payload: bytes, flags: str = "PA") -> Ether:
    packet = Ether() / IP(src=DEVICE[0], dst=MASTER[0]) / TCP(
        sport=DEVICE[1], dport=MASTER[1], flags=flags, seq=seq) / Raw(payload)
    packet.time = t
    return packet


def req(tid: int) -> bytes:
    return encode_tcp(tid, 1, bytes.fromhex("0300000002"))


def ans(tid: int) -> bytes:
    return encode_tcp(tid, 1, bytes.fromhex("030400010002"))


def field_packets() -> list[Ether]:
    """Master seq from 1000, device seq from 5000; requests 12 bytes, answers 13. Times
    are binary fractions, which every writer stores exactly."""
    r, a = 1000, 5000
    return [
        _to_master(1.0, a - 6, ans(99)[7:]),              # the tail of an answer: mid-stream
        _to_device(2.0, r, req(1)), _to_master(2.125, a, ans(1)),
        _to_device(3.0, r + 12, req(2)), _to_device(3.25, r + 12, req(2)),  # retransmitted
        _to_master(3.375, a + 13, ans(2)),
        _to_device(4.0, r + 24, req(3) + req(4)),          # two requests in one segment
        _to_master(4.125, a + 26, ans(4)),                 # answered out of order ...
        _to_master(4.25, a + 39 + 6, ans(3)[6:]),          # ... the second half first,
        _to_master(4.375, a + 39, ans(3)[:6]),             # then its first half
        _to_device(5.0, r + 48, req(5)),                   # never answered
        # r + 60: request 6 never captured (lost)
        _to_device(7.0, r + 72, req(7)),
        _to_master(7.125, a + 52, encode_tcp(7, 1, bytes.fromhex("8302"))),
        _to_device(8.0, r + 84, b"", flags="R"),
    ]


def test_a_field_capture_survives_mid_stream_start_retransmission_reordering_and_loss(
        tmp_path):
    path = tmp_path / "field.pcap"
    wrpcap(str(path), field_packets())
    imported = import_pcap(path)
    frames = [r for r in imported.records if isinstance(r, Frame)]
    seen = [(f.dir, f.info.tid, f.xid, f.info.exception_code, f.info.malformed is not None)
            for f in frames]
    assert seen == [
        ("rx", None, None, None, True),  # the answer tail the capture began with
        ("tx", 1, 1, None, False), ("rx", 1, 1, None, False),
        ("tx", 2, 2, None, False), ("rx", 2, 2, None, False),
        ("tx", 3, 3, None, False), ("tx", 4, 4, None, False),
        ("rx", 4, 4, None, False), ("rx", 3, 3, None, False),
        ("tx", 5, 5, None, False),
        ("tx", 7, 6, None, False), ("rx", 7, 6, 2, False),
    ]
    assert imported.retransmissions == 1
    gaps = [r for r in imported.records if isinstance(r, Event) and r.event == "gap"]
    assert [g.note for g in gaps] == ["12 bytes from master to device missing from the capture"]
    assert imported.counts["unanswered"] == 1
    closing = imported.records[-1]
    assert isinstance(closing, Event) and closing.note == "reset by the master"


def test_pcapng_and_pcap_of_the_same_packets_import_the_same(tmp_path):
    wrpcap(str(tmp_path / "field.pcap"), field_packets())
    with PcapNgWriter(str(tmp_path / "field.pcapng")) as writer:
        for packet in field_packets():
            writer.write(packet)
    assert import_pcap(tmp_path / "field.pcapng").records == \
        import_pcap(tmp_path / "field.pcap").records


@pytest.mark.parametrize("link", ["linux-cooked", "raw-ip"])
def test_captures_without_ethernet_headers_import_alike(tmp_path, link):
    """tcpdump -i any writes Linux cooked headers; tunnels and VPNs often raw IP."""
    wrpcap(str(tmp_path / "ethernet.pcap"), field_packets())
    packets = []
    for packet in field_packets():
        inner = packet[IP].copy()
        outer = CookedLinux(proto=0x0800) / inner if link == "linux-cooked" else inner
        outer.time = packet.time
        packets.append(outer)
    path = tmp_path / f"{link}.pcap"
    wrpcap(str(path), packets, linktype=113 if link == "linux-cooked" else 101)
    assert import_pcap(path).records == import_pcap(tmp_path / "ethernet.pcap").records


def test_a_pcap_cut_short_keeps_the_packets_before_the_cut(tmp_path):
    path = tmp_path / "cut.pcap"
    wrpcap(str(path), field_packets()[:3])
    whole = path.read_bytes()
    path.write_bytes(whole[:-(len(bytes(field_packets()[2])) + 8)])  # into the last header
    imported = import_pcap(path)
    assert imported.pcap.cut_short and imported.pcap.packets == 2
    assert imported.counts["requests"] == 1


def test_a_file_that_is_not_a_pcap_is_refused_by_name(tmp_path):
    path = tmp_path / "notes.pcap"
    path.write_text("this is not a capture\n")
    with pytest.raises(PcapError, match=rf"^{path}: not a pcap or pcapng file"):
        import_pcap(path)


def test_the_mbap_header_check_agrees_with_scapy_on_what_is_a_frame():
    for header, good in [("000100000006", True), ("000100100006", False),
                         ("000100008804", False), ("000100000001", False)]:
        assert (mbap_header_problem(bytes.fromhex(header)) is None) == good
