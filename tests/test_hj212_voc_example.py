"""The worked VOC station of docs/hj212.md is a real file (issue 13 item 7):
``config/hj212-voc-station.example.yaml`` passes ``edge-agent check`` as a technician runs
it, and the ``uplinks:`` block the docs show (English and Chinese) is that file's, so
neither can drift from the other. tests/test_config_examples.py loads it with the others.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "hj212-voc-station.example.yaml"
SECRETS = {"CITY_HJ212_PW": "123456", "CITY_HJ212_SM4": "30" * 16, "PARK_HJ212_PW": "654321"}


@pytest.mark.real_parts
def test_edge_agent_check_accepts_the_worked_voc_station():
    result = subprocess.run([sys.executable, "-m", "edge_agent", "check", str(EXAMPLE)],
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", **SECRETS})
    assert result.returncode == 0, result.stderr
    assert ("uplink city-hj212 (hj212): 10.20.30.40:9001 (HJ 212-2025, "
            "MN 010000A8900016F000169DC0, 6 codes); every device") in result.stdout
    assert ("uplink park-2017 (hj212): park-platform.example:8801 (HJ 212-2017, "
            "MN LD130133000015, 2 codes); devices gc-1, h2s-1") in result.stdout
    assert "uplink default (mqtt)" in result.stdout


@pytest.mark.real_parts
def test_edge_agent_check_names_the_missing_platform_password():
    env = {"PATH": "/usr/bin:/bin", **SECRETS}
    del env["PARK_HJ212_PW"]
    result = subprocess.run([sys.executable, "-m", "edge_agent", "check", str(EXAMPLE)],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode != 0
    assert "PARK_HJ212_PW" in result.stderr


@pytest.mark.parametrize("doc", ["hj212.md", "hj212.zh.md"])
def test_the_docs_show_the_example_files_uplinks(doc):
    text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
    blocks = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    shown = [block["uplinks"] for block in blocks
             if isinstance(block, dict) and "city-hj212" in (block.get("uplinks") or {})]
    assert shown, f"docs/{doc} shows no uplinks: block with city-hj212"
    assert shown[0] == yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["uplinks"]
