"""A pcap or pcapng file cut short or damaged: `capture import` names every packet it
could not import (number and byte offset), imports every whole one, and says so in its
exit status (0 for a file merely cut short, 3 for damage before the end).

The files are built byte by byte (tests/support/pcap_files.py) around one master polling
one device: packet 1 SYN, 2 SYN-ACK, then request/answer pairs (packets 3 and 4 are
transaction 1, 5 and 6 transaction 2, ...). Requests are 12 bytes, answers 13.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
from support.pcap_files import (
    ETHERNET,
    Packet,
    Session,
    ip_tcp,
    pcap_bytes,
    pcap_offsets,
    pcapng_bytes,
    pcapng_offsets,
)

from edge_agent.tools.capture.files import read_capture
from edge_agent.tools.capture.format import Event, Frame
from edge_agent.tools.capture.pcap_import import import_pcap
from edge_agent.tools.capture.pcap_read import PcapSummary, tcp_segments

SESSION = Session("10.0.0.2", "10.0.0.9", exchanges=5)
PACKETS = SESSION.packets(ETHERNET)  # 12 packets
ETHERNET_IP_TCP = 14 + 20 + 20  # bytes before the Modbus payload


def edge_agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent", *args], capture_output=True,
                          text=True, timeout=60)


def _tids(path: Path, direction: str) -> list[int]:
    return [r.info.tid for r in import_pcap(path).records
            if isinstance(r, Frame) and r.dir == direction]


def test_a_pcap_cut_inside_the_last_packet_s_data_reports_that_packet(tmp_path):
    whole = pcap_bytes(ETHERNET, PACKETS)
    path = tmp_path / "cut.pcap"
    path.write_bytes(whole[:-3])  # `head -c -3`: into the last answer's Modbus bytes
    imported = import_pcap(path)
    last = pcap_offsets(PACKETS)[-1]
    assert [(d.number, d.offset, d.at_end) for d in imported.pcap.damage] == [(12, last, True)]
    assert f"the file ends after {len(PACKETS[-1].frame) - 3} of its " \
           f"{len(PACKETS[-1].frame)} captured bytes" in imported.pcap.damage[0].what
    assert imported.pcap.cut_short and imported.pcap.packets == 11
    counts = imported.counts
    assert (counts["requests"], counts["answers"], counts["malformed"]) == (5, 4, 0)
    assert counts["unanswered"] == 1  # the cut answer is not imported as 10 stray bytes


@pytest.mark.real_parts
def test_import_of_a_cut_pcap_warns_and_exits_0(tmp_path):
    path, out = tmp_path / "cut.pcap", tmp_path / "cut.capture.jsonl"
    path.write_bytes(pcap_bytes(ETHERNET, PACKETS)[:-3])
    result = edge_agent("capture", "import", str(path), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"warning: {path} is cut short: packet 12 at byte {pcap_offsets(PACKETS)[-1]}: " \
           "the file ends after 64 of its 67 captured bytes; imported the 11 whole packet(s)" \
           in result.stderr
    assert "5 requests, 4 answers from 11 packets" in result.stdout
    assert len(read_capture(out).frames()) == 9


def test_a_pcap_cut_inside_a_record_header_is_still_reported_as_cut(tmp_path):
    path = tmp_path / "cut.pcap"
    path.write_bytes(pcap_bytes(ETHERNET, PACKETS)[:pcap_offsets(PACKETS)[-1] + 7])
    imported = import_pcap(path)
    assert [(d.number, d.at_end) for d in imported.pcap.damage] == [(12, True)]
    assert "the file ends 7 bytes into its 16-byte record header" in \
        imported.pcap.damage[0].what


def test_bytes_lost_inside_a_packet_in_the_middle_are_reported_and_the_rest_imported(
        tmp_path):
    whole = pcap_bytes(ETHERNET, PACKETS)
    start = pcap_offsets(PACKETS)[6]  # packet 7: request 3
    data = start + 16 + ETHERNET_IP_TCP
    path = tmp_path / "damaged.pcap"
    path.write_bytes(whole[:data + 4] + whole[data + 7:])  # 3 bytes of its Modbus request
    imported = import_pcap(path)
    assert [(d.number, d.offset, d.at_end) for d in imported.pcap.damage] == \
        [(7, start, False)]
    assert "only 63 of its 66 captured bytes before the next whole record" in \
        imported.pcap.damage[0].what
    assert imported.pcap.packets == 11 and not imported.pcap.cut_short
    assert _tids(path, "tx") == [1, 2, 4, 5]  # everything after the damage is imported
    assert _tids(path, "rx") == [1, 2, 3, 4, 5]
    gaps = [r.note for r in imported.records if isinstance(r, Event) and r.event == "gap"]
    assert gaps == ["12 bytes from master to device missing from the capture"]


def test_a_damaged_record_header_in_the_middle_is_reported_and_reading_resumes(tmp_path):
    whole = bytearray(pcap_bytes(ETHERNET, PACKETS))
    start = pcap_offsets(PACKETS)[4]  # packet 5: request 2
    struct.pack_into("<I", whole, start + 8, 0x00FFFFFF)  # its captured length
    path = tmp_path / "damaged.pcap"
    path.write_bytes(bytes(whole))
    imported = import_pcap(path)
    assert [(d.number, d.offset, d.at_end) for d in imported.pcap.damage] == \
        [(5, start, False)]
    assert f"skipped to the next whole record (byte {pcap_offsets(PACKETS)[5]})" in \
        imported.pcap.damage[0].what
    assert [s.index for s in tcp_segments(path, PcapSummary())] == \
        [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]
    assert _tids(path, "tx") == [1, 3, 4, 5]


@pytest.mark.real_parts
def test_import_of_a_pcap_damaged_in_the_middle_writes_the_capture_and_exits_3(tmp_path):
    whole = pcap_bytes(ETHERNET, PACKETS)
    offsets = pcap_offsets(PACKETS)
    first, second = offsets[4] + 16 + ETHERNET_IP_TCP, offsets[8] + 16 + ETHERNET_IP_TCP
    path, out = tmp_path / "damaged.pcap", tmp_path / "damaged.capture.jsonl"
    path.write_bytes(whole[:first] + whole[first + 5:second] + whole[second + 2:])
    result = edge_agent("capture", "import", str(path), "--out", str(out))
    assert result.returncode == 3, result.stderr
    assert f"{path} is damaged: 2 place(s) before its end are not whole packet records" \
        in result.stderr
    assert f"  packet 5 at byte {offsets[4]}: only 61 of its 66 captured bytes" \
        in result.stderr
    assert f"  packet 9 at byte {offsets[8] - 5}: only 64 of its 66 captured bytes" \
        in result.stderr
    assert "3 requests, 5 answers from 10 packets" in result.stdout
    assert len(read_capture(out).frames()) == 8


def test_a_pcapng_block_that_lost_bytes_in_the_middle_is_reported(tmp_path):
    whole = pcapng_bytes([(ETHERNET, "eth0")], PACKETS)
    start = pcapng_offsets(whole)[2]  # packet 3: request 1
    data = start + 28 + ETHERNET_IP_TCP
    path = tmp_path / "damaged.pcapng"
    path.write_bytes(whole[:data + 2] + whole[data + 3:])
    imported = import_pcap(path)
    assert [(d.number, d.offset, d.at_end) for d in imported.pcap.damage] == \
        [(3, start, False)]
    assert "length fields disagree" in imported.pcap.damage[0].what
    assert _tids(path, "tx") == [2, 3, 4, 5]


def test_a_pcapng_cut_inside_its_last_packet_is_reported_as_cut(tmp_path):
    whole = pcapng_bytes([(ETHERNET, "eth0")], PACKETS)
    path = tmp_path / "cut.pcapng"
    path.write_bytes(whole[:-9])  # the trailing length and 5 bytes of the packet's data
    imported = import_pcap(path)
    last = pcapng_offsets(whole)[-1]
    assert [(d.number, d.offset, d.at_end) for d in imported.pcap.damage] == \
        [(12, last, True)]
    assert imported.counts["answers"] == 4 and imported.counts["malformed"] == 0


def test_a_packet_whose_tcp_header_is_cut_is_named_not_counted_as_other_traffic(tmp_path):
    request = ip_tcp("10.0.0.2", "10.0.0.9", 40001, 502, 1, 1, 0x18, b"")
    broken = Packet(PACKETS[-1].t_us + 1000, PACKETS[0].frame[:14] + request[:30])
    path = tmp_path / "broken.pcap"
    path.write_bytes(pcap_bytes(ETHERNET, [*PACKETS, broken]))
    imported = import_pcap(path)
    assert imported.pcap.undecodable == [(13, pcap_offsets([*PACKETS, broken])[-1])]
    assert imported.pcap.not_tcp == 0 and not imported.pcap.damage


def test_packets_cut_by_the_snap_length_are_counted(tmp_path):
    short = [Packet(p.t_us, p.frame[:ETHERNET_IP_TCP + 8], p.interface, len(p.frame))
             if i in (4, 6) else p for i, p in enumerate(PACKETS)]
    path = tmp_path / "snap.pcap"
    path.write_bytes(pcap_bytes(ETHERNET, short))
    imported = import_pcap(path)
    assert imported.pcap.snap_cut == 2 and not imported.pcap.damage


def test_a_clock_that_jumps_years_mid_capture_is_not_damage(tmp_path):
    """A logger without a battery-backed clock starts in 1970 and jumps when NTP sets it."""
    jumped = [Packet(p.t_us - 1_690_000_000_000_000 if i < 6 else p.t_us, p.frame)
              for i, p in enumerate(PACKETS)]
    path = tmp_path / "jump.pcap"
    path.write_bytes(pcap_bytes(ETHERNET, jumped))
    imported = import_pcap(path)
    assert not imported.pcap.damage and imported.pcap.packets == 12
    assert _tids(path, "tx") == _tids(path, "rx") == [1, 2, 3, 4, 5]
