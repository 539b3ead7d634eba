"""Every link type that carries IP is imported, per pcapng interface; frames of any other
link type are counted per interface and reported, never dropped in silence.

Files built byte by byte (tests/support/pcap_files.py); each session is one master
polling one device with read-holding-registers exchanges, all answered.
"""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest
from support.pcap_files import (
    ETHERNET,
    LOOP,
    NULL,
    RAW,
    RAW_IPV4,
    RAW_IPV6,
    SLL,
    SLL2,
    T0_US,
    WIFI,
    Packet,
    Session,
    pcap_bytes,
    pcapng_bytes,
    pcapng_offsets,
)

from edge_agent.tools.capture.format import Frame
from edge_agent.tools.capture.pcap_import import import_pcap
from edge_agent.tools.capture.pcap_records import Interface

V4 = Session("10.0.0.2", "10.0.0.9", exchanges=5)
V6 = Session("fd00::2", "fd00::9", exchanges=5)
CASES = [(ETHERNET, V4), (ETHERNET, V6), (RAW, V4), (RAW, V6), (RAW_IPV4, V4),
         (RAW_IPV6, V6), (SLL, V4), (SLL, V6), (SLL2, V4), (SLL2, V6), (NULL, V4),
         (NULL, V6), (LOOP, V4), (LOOP, V6)]


def _per_link(imported) -> dict[str, tuple[list[int], list[int]]]:
    """Per device link: the transaction ids of its requests and of its answers."""
    links: dict[str, tuple[list[int], list[int]]] = {}
    for r in imported.records:
        if isinstance(r, Frame):
            requests, answers = links.setdefault(r.link, ([], []))
            (requests if r.dir == "tx" else answers).append(r.info.tid)
    return links


@pytest.mark.parametrize("container", ["pcap", "pcapng"])
@pytest.mark.parametrize(("link_type", "session"), CASES,
                         ids=[f"{lt}-{'v6' if ':' in s.server else 'v4'}" for lt, s in CASES])
def test_each_ip_link_type_imports_the_same_exchanges_as_ethernet(tmp_path, container,
                                                                   link_type, session):
    reference = tmp_path / "ethernet.pcap"
    reference.write_bytes(pcap_bytes(ETHERNET, session.packets(ETHERNET)))
    path = tmp_path / f"link.{container}"
    packets = session.packets(link_type)
    path.write_bytes(pcap_bytes(link_type, packets) if container == "pcap"
                     else pcapng_bytes([(link_type, "if0")], packets))
    imported = import_pcap(path)
    assert imported.records == import_pcap(reference).records
    assert (imported.counts["requests"], imported.counts["answers"]) == (5, 5)
    assert imported.pcap.packets == 12 and not imported.pcap.skipped()
    assert imported.pcap.not_tcp == 0 and not imported.pcap.undecodable


def test_a_linux_null_capture_with_linux_s_ipv6_family_number_imports(tmp_path):
    """AF_INET6 is 10 on Linux, 24/28/30 on the BSDs and macOS."""
    packets = [Packet(p.t_us, bytes([10, 0, 0, 0]) + p.frame[4:])
               for p in V6.packets(NULL)]
    path = tmp_path / "null.pcap"
    path.write_bytes(pcap_bytes(NULL, packets))
    assert import_pcap(path).counts["answers"] == 5


def test_a_pcapng_mixing_link_types_imports_every_interface(tmp_path):
    sessions = [(ETHERNET, Session("10.0.0.2", "10.0.0.9", 5)),
                (RAW, Session("10.0.1.2", "10.0.1.9", 4, first_t_us=T0_US + 30_000)),
                (SLL2, Session("fd00::2", "fd00::9", 3, first_t_us=T0_US + 60_000)),
                (LOOP, Session("127.0.0.1", "127.0.0.1", 2, first_t_us=T0_US + 70_000))]
    packets = sorted((p for number, (link_type, session) in enumerate(sessions)
                      for p in session.packets(link_type, interface=number)),
                     key=lambda p: p.t_us)
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(pcapng_bytes([(lt, f"if{n}") for n, (lt, _) in enumerate(sessions)],
                                  packets, nanosecond_interfaces=(1,)))
    imported = import_pcap(path)
    assert (imported.counts["requests"], imported.counts["answers"]) == (14, 14)
    assert imported.counts["unanswered"] == 0 and imported.counts["malformed"] == 0
    assert _per_link(imported) == {
        "10.0.0.9:502": ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]),
        "10.0.1.9:502": ([1, 2, 3, 4], [1, 2, 3, 4]),
        "[fd00::9]:502": ([1, 2, 3], [1, 2, 3]),
        "127.0.0.1:502": ([1, 2], [1, 2]),
    }
    assert [i.link_type for i in imported.pcap.interfaces] == [ETHERNET, RAW, SLL2, LOOP]
    first_request_on_raw_ip = next(r for r in imported.records if isinstance(r, Frame)
                                   and r.link == "10.0.1.9:502")
    assert first_request_on_raw_ip.t == 0.130  # nanosecond interface, same clock


@pytest.mark.real_parts
def test_frames_of_an_interface_without_ip_are_counted_and_reported(tmp_path):
    wifi = [Packet(T0_US + 50_000 * n, bytes(24) + b"beacon", interface=1) for n in range(3)]
    packets = sorted([*V4.packets(ETHERNET), *wifi], key=lambda p: p.t_us)
    path, out = tmp_path / "mixed.pcapng", tmp_path / "mixed.capture.jsonl"
    path.write_bytes(pcapng_bytes([(ETHERNET, "eth0"), (WIFI, "wlan0")], packets))
    imported = import_pcap(path)
    skipped = imported.pcap.skipped()
    assert [(s.interface, s.frames) for s in skipped] == [(Interface(1, WIFI, "wlan0"), 3)]
    assert imported.counts["answers"] == 5
    result = subprocess.run([sys.executable, "-m", "edge_agent", "capture", "import",
                             str(path), "--out", str(out)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"warning: {path}: 3 frame(s) of interface 1 (wlan0) skipped: link type 105 " \
           "(IEEE 802.11 wireless without radio header) is not one that carries IP as " \
           "read here" in result.stderr


@pytest.mark.real_parts
def test_a_pcap_of_only_an_unreadable_link_type_says_why_nothing_was_imported(tmp_path):
    path = tmp_path / "usb.pcap"
    path.write_bytes(pcap_bytes(220, [Packet(T0_US, bytes(64)), Packet(T0_US + 1, bytes(64))]))
    result = subprocess.run([sys.executable, "-m", "edge_agent", "capture", "import",
                             str(path), "--out", str(tmp_path / "usb.capture.jsonl")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{path}: 2 frame(s) of interface 0 skipped: link type 220 (Linux USB)" \
        in result.stderr
    assert f"{path}: no Modbus/TCP traffic on port(s) 502" in result.stderr


def test_nanosecond_and_big_endian_pcaps_give_the_same_capture(tmp_path):
    packets = V4.packets(ETHERNET)
    (tmp_path / "us.pcap").write_bytes(pcap_bytes(ETHERNET, packets))
    (tmp_path / "ns.pcap").write_bytes(pcap_bytes(ETHERNET, packets, nanoseconds=True,
                                                  big_endian=True))
    assert import_pcap(tmp_path / "ns.pcap").records == \
        import_pcap(tmp_path / "us.pcap").records


def test_simple_packet_blocks_and_undescribed_interfaces_in_a_pcapng(tmp_path):
    """Simple packet blocks (no interface id, no time) belong to interface 0; an enhanced
    block naming an interface the file never described is reported, not guessed at."""
    whole = pcapng_bytes([(RAW, "tun0")], [])
    for packet in V4.packets(RAW):
        body = struct.pack("<I", len(packet.frame)) + packet.frame
        body += b"\0" * (-len(body) % 4)
        whole += struct.pack("<II", 3, len(body) + 12) + body \
            + struct.pack("<I", len(body) + 12)
    stray = pcapng_bytes([(RAW, "tun0"), (RAW, "tun1")],
                         [Packet(T0_US, V4.packets(RAW)[2].frame, interface=1)])
    stray_block = stray[pcapng_offsets(stray)[0]:]
    path = tmp_path / "simple.pcapng"
    path.write_bytes(whole + stray_block)
    imported = import_pcap(path)
    assert (imported.counts["requests"], imported.counts["answers"]) == (5, 5)
    assert [(d.number, d.offset, d.at_end) for d in imported.pcap.damage] == \
        [(13, len(whole), False)]
    assert "it names interface 1, which the file does not describe" in \
        imported.pcap.damage[0].what
