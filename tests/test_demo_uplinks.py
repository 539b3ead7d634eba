"""``edge-agent demo --uplinks N``: the demo feeds N private brokers, the ``mqtt:``
section's and N-1 named uplinks, and shows what each one receives (issue 12)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from edge_agent.config.loader import load_config

pytestmark = pytest.mark.real_parts  # the demo starts Mosquittos and the agent


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent", "demo", *args],
                          capture_output=True, text=True, timeout=120)


def test_demo_with_two_uplinks_feeds_both_brokers_each_on_its_own(tmp_path):
    result = demo("--uplinks", "2", "--duration", "8", "--workdir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert re.match(r"demo: uplink uplink-2: broker on 127\.0\.0\.1:\d+$", lines[1]), lines[:3]
    for name in ("default", "uplink-2"):
        shown = [line for line in lines if line.startswith(f"{name} ")]
        assert any(" ftir-1 " in line for line in shown), f"nothing from ftir-1 at {name}"
        assert f"{name} [edge/demo-station/status] station demo-station is online" in lines
        received = re.search(rf"^demo: uplink {name} received \d+ messages with (\d+) "
                             r"samples$", result.stdout, re.MULTILINE)
        assert received and int(received[1]) > 0, result.stdout[-2000:]
    config = load_config(tmp_path / "station.yaml")  # the file a newcomer can start from
    assert [uplink.name for uplink in config.every_uplink()] == ["default", "uplink-2"]
    assert config.uplinks[0].mqtt.port != config.mqtt.port


def test_demo_refuses_more_uplinks_than_a_station_feeds(tmp_path):
    result = demo("--uplinks", "9", "--duration", "1", "--workdir", str(tmp_path))
    assert result.returncode == 2
    assert "--uplinks" in result.stderr and not (tmp_path / "station.yaml").exists()
