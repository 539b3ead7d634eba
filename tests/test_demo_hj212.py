"""``scripts/demo --hj212``: the worked VOC station of docs/hj212.md runs end to end on
this machine (issue 13 items 5 and 7): the GC, NMHC and H2S/Cl2 readings reach two
``edge-agent hj212-platform`` processes, one HJ 212-2025 with SM4 and one HJ 212-2017, as
2011 packets whose CRC checks, while MQTT gets every sample; the demo says where each
platform's decoded log is and sums each platform up at the end."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.hj212.cp import parse_region
from edge_agent.hj212.crc import CrcVariant, hj212_crc16
from edge_agent.hj212.packet import ParseOptions, parse
from edge_agent.tools.demo.hj212 import format_tally
from edge_agent.tools.demo.platforms import read_events, tally

pytestmark = pytest.mark.real_parts  # the demo starts Mosquitto, two platforms, the agent

ROOT = Path(__file__).resolve().parents[1]
KEY = b"0" * 16  # the demo's SM4 key (HJ 212-2025 Appendix A.2's example)
CODES = {"city-hj212": {"a25002", "a25003", "a25005", "a24088", "a21028", "a21022"},
         "park-2017": {"x90001", "a21028"}}


def test_demo_hj212_feeds_both_platforms_valid_2011_packets(tmp_path):
    result = subprocess.run([str(ROOT / "scripts" / "demo"), "--hj212", "--duration", "15",
                             "--workdir", str(tmp_path)],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for name, version in (("city-hj212", "2025"), ("park-2017", "2017")):
        log = tmp_path / f"platform-{name}.log"
        assert (f"demo: platform {name} (HJ 212-{version}) on 127.0.0.1:" in out
                and f"decoded log {log}" in out), out[:2000]
        assert "CN=2011 real-time data" in log.read_text(encoding="utf-8")
        events = read_events(tmp_path / f"platform-{name}.jsonl")
        assert not [e for e in events if e["event"] == "rejected"]
        realtime = [e for e in events if e["event"] == "packet" and e["cn"] == "2011"]
        assert realtime, f"no 2011 reached {name}"
        codes = set()
        for packet in realtime:
            assert packet["version"] == version and packet["ack_requested"]
            # checked again here, not only by the simulator: CRC, length, fields, SM4
            parsed = parse(packet["raw"], ParseOptions(sm4_key=KEY))
            assert parsed.crc_variant is CrcVariant.HJ212
            assert parsed.encrypted == (version == "2025")
            if version == "2017":
                segment = packet["raw"].strip()[6:-4]
                assert f"{hj212_crc16(segment.encode()):04X}" == packet["raw"].strip()[-4:]
            region = parse_region(parsed.packet.cp)
            codes |= {factor.code for factor in region.factors()}
            assert all(factor.get("Flag") == "N" for factor in region.factors()), region
        assert codes == CODES[name], (name, codes)
        summary = re.search(rf"^demo: platform {name} received 2011 ×(\d+), 2051 ×\d+, "
                            r"2061 ×\d+; acknowledged (\d+) \(9014\); re-sent RF=1 ×\d+; "
                            r"rejected 0$", out, re.MULTILINE)
        assert summary and int(summary[1]) == len(realtime), out[-1500:]
        assert int(summary[2]) >= len(realtime)  # every upload asked for a 9014 and got it
    mqtt = re.search(r"^demo: MQTT received \d+ messages with (\d+) samples", out, re.MULTILINE)
    assert mqtt and int(mqtt[1]) > 0


def test_demo_hj212_refuses_uplinks(tmp_path):
    result = subprocess.run([sys.executable, "-m", "edge_agent", "demo", "--hj212",
                             "--uplinks", "2", "--workdir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--uplinks" in result.stderr
    assert not (tmp_path / "station.yaml").exists()


def test_the_tally_counts_the_platforms_own_log():
    events = [{"event": "listening", "port": 1},
              {"event": "packet", "cn": "2081", "rf": False},
              {"event": "sent", "cn": "9014"},
              {"event": "packet", "cn": "2011", "rf": False},
              {"event": "sent", "cn": "9014"},
              {"event": "packet", "cn": "2011", "rf": True},
              {"event": "packet", "cn": "2051", "rf": True},
              {"event": "sent", "cn": "9013"},
              {"event": "rejected", "kind": "crc"}]
    counted = tally(events)
    assert counted.by_cn == {"2081": 1, "2011": 2, "2051": 1}
    assert (counted.acknowledged, counted.resent, counted.rejected) == (2, 2, 1)
    assert format_tally("p", counted) == ("demo: platform p received 2011 ×2, 2051 ×1, "
                                          "2061 ×0; acknowledged 2 (9014); re-sent RF=1 ×2; "
                                          "rejected 1")
