"""``edge-agent status`` with no agent answering shows the alarms the outbox's
``alarm_state`` holds as active (issue 17; tools/ops/alarmlines.py), in English and in
Chinese, read-only: the read works beside a running agent and changes nothing.

Real parts: a pymodbus instrument, a real agent process, ``edge-agent status`` as a
child process once the agent is gone."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from edge_agent_drivers.modbus.settings import RegisterKind
from support.station import AgentProcess, accepted_seqs, write_station
from support.waiting import wait_until

from edge_agent.store.readonly import open_read_only
from edge_agent.tools.ops.alarmlines import saved_alarms
from edge_agent.tools.sim.broker import Mosquitto, free_port
from edge_agent.tools.sim.simserver import SimServer, SimUnit

HOLDING = RegisterKind.HOLDING


@pytest.fixture
def instrument() -> Iterator[SimServer]:
    server = SimServer([SimUnit(1, holding={0: 50, 1: 0})], tcp_port=0).start()
    yield server
    server.stop()


def status(config: Path, *lang: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_agent", *lang, "status", str(config)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "LANG": "en_US.UTF-8"})


def active_in_file(outbox: Path) -> list[str]:
    conn = open_read_only(outbox)
    try:
        return sorted(event.alarm for event in saved_alarms(conn))
    finally:
        conn.close()


@pytest.mark.real_parts
def test_status_of_a_stopped_agent_lists_the_alarms_it_left_active(
        tmp_path: Path, broker: Mosquitto, instrument: SimServer) -> None:
    config = write_station(
        tmp_path / "station.yaml", broker_port=broker.port, health={"port": free_port()},
        links={"gw": {"type": "tcp", "host": "127.0.0.1", "port": instrument.tcp_port}},
        devices=[{"id": "dev-1", "link": "gw", "unit_id": 1, "interval_s": 0.05,
                  "channels": [{"name": "value", "address": 0, "type": "uint16"},
                               {"name": "other", "address": 1, "type": "uint16"}],
                  "alarms": {"value": {"high": {"limit": 100, "deadband": 10}},
                             "other": {"high": 100}}}])
    outbox = tmp_path / "outbox.sqlite3"
    agent = AgentProcess(config, tmp_path / "agent.log").start().wait_running()
    try:
        instrument.set_words(1, HOLDING, 1, [150])  # other: raised, then cleared
        wait_until(lambda: "alarm raised: dev-1/other/high" in agent.log(), 30, "other high")
        instrument.set_words(1, HOLDING, 1, [0])
        wait_until(lambda: "alarm cleared: dev-1/other/high" in agent.log(), 30, "its clear")
        instrument.set_words(1, HOLDING, 0, [150])  # value: raised and left active
        wait_until(lambda: active_in_file(outbox) == ["dev-1/value/high"], 30,
                   "the active alarm read beside the running agent")
        seq = accepted_seqs(outbox)["dev-1"]
        wait_until(lambda: accepted_seqs(outbox)["dev-1"] > seq + 5, 30,
                   "the agent storing on after the read")
    finally:
        assert agent.terminate() == 0
    digest = hashlib.sha256(outbox.read_bytes()).hexdigest()
    english, chinese = status(config), status(config, "--lang", "zh")
    assert hashlib.sha256(outbox.read_bytes()).hexdigest() == digest
    assert english.returncode == 0 and chinese.returncode == 0, english.stderr
    lines = english.stdout.splitlines()
    assert "the agent is NOT answering" in lines[0]
    title = lines.index("ALARMS: 1 alarm active when the agent last stored its state")
    assert lines[title + 1].split() == ["LEVEL", "DEVICE/CHANNEL", "RULE", "VALUE", "/",
                                        "LIMIT", "SINCE", "CONFIRMED"]
    row = lines[title + 2]
    assert row.startswith("LEVEL 1") and "dev-1/value" in row
    assert "150 (limit 100)" in row and row.rstrip().endswith("confirmed")
    assert "dev-1/other" not in english.stdout  # cleared: not shown
    assert title < next(i for i, line in enumerate(lines) if line.startswith("DEVICE "))
    zh = chinese.stdout.splitlines()
    assert "报警：采集代理最后保存状态时有 1 个报警未解除" in zh
    assert any("dev-1/value" in line and "150（限值 100）" in line for line in zh), zh
