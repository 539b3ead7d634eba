"""``edge-agent demo --sparkplug``: the demo station with a Sparkplug B uplink beside its
MQTT JSON one, ``edge-agent sparkplug-host`` as its primary host printing what it
decodes, and a summary of what reached the SCADA broker (issue 16)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from edge_agent.config.loader import load_config

pytestmark = pytest.mark.real_parts  # the demo starts Mosquittos, the host and the agent

NODE = "demo/demo-station"
DEVICES = ("gc-1", "ftir-1", "detector-1", "detector-2")


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent", "demo", *args],
                          capture_output=True, text=True, timeout=120)


def test_demo_sparkplug_host_sees_nbirth_a_dbirth_per_device_and_ddata(tmp_path):
    result = demo("--sparkplug", "--duration", "8", "--workdir", str(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    ready = lines.index(next(line for line in lines if line.startswith("READY host demo-host")))
    births = [i for i, line in enumerate(lines) if line.startswith(f"NBIRTH {NODE} seq=0 ")]
    assert births and births[0] > ready, "NBIRTH before the primary host was online"
    for device in DEVICES:
        assert any(line.startswith(f"DBIRTH {NODE}/{device} ") for line in lines), device
    assert any(line.startswith(f"DDATA {NODE}/") for line in lines)
    assert "STOPPED 0 rule break(s) seen" in lines, result.stdout[-2000:]
    summary = re.search(r"^demo: the SCADA broker got (\d+) NBIRTH, (\d+) DBIRTH, (\d+) DDATA "
                        r"\((\d+) historical\), \d+ DDEATH, (\d+) NDEATH; the JSON uplink "
                        r"delivered (\d+) samples; files kept in ", result.stdout, re.MULTILINE)
    assert summary, result.stdout[-2000:]
    nbirth, dbirth, ddata, _historical, ndeath, samples = map(int, summary.groups())
    assert nbirth >= 1 and dbirth >= len(DEVICES) and ddata > 0 and samples > 0
    assert ndeath == 1  # the clean stop's
    config = load_config(tmp_path / "station.yaml")  # the file a newcomer can start from
    scada = next(u for u in config.every_uplink() if u.name == "scada")
    assert scada.sparkplug is not None and scada.sparkplug.primary_host_id == "demo-host"


def test_demo_sparkplug_refuses_uplinks_too(tmp_path):
    result = demo("--sparkplug", "--uplinks", "2", "--duration", "1", "--workdir",
                  str(tmp_path))
    assert result.returncode == 2
    assert "--sparkplug" in result.stderr and not (tmp_path / "station.yaml").exists()


def test_demo_sparkplug_and_hj212_are_two_demos(tmp_path):
    result = demo("--sparkplug", "--hj212", "--duration", "1", "--workdir", str(tmp_path))
    assert result.returncode == 2
    assert "--hj212" in result.stderr and "--sparkplug" in result.stderr
    assert not (tmp_path / "station.yaml").exists()
