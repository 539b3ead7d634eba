"""The commands as a technician runs them: check, run (refusal and clean stop), demo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.station import AgentProcess, write_station

from edge_agent.tools.sim.simserver import SimServer, SimUnit

# Every test here starts the agent or a tool as a real process.
pytestmark = pytest.mark.real_parts

REPO = Path(__file__).resolve().parent.parent


def edge_agent(*args: str, env: dict | None = None, timeout: float = 60):
    return subprocess.run([sys.executable, "-m", "edge_agent", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_check_accepts_the_example_station_file():
    result = edge_agent("check", str(REPO / "config" / "station.example.yaml"),
                        env={"EDGE_AGENT_MQTT_PASSWORD": "secret"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: ")


def test_output_read_by_a_closed_pipe_ends_quietly_not_with_a_traceback():
    """`edge-agent status | head -1` printed a BrokenPipeError traceback when head had
    gone. The pipe's read end is closed before the command starts, so every write fails."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "edge_agent", "check", str(REPO / "config" / "reference.yaml")],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 141


def test_check_lists_every_problem_and_exits_nonzero(tmp_path):
    path = tmp_path / "station.yaml"
    path.write_text("station: {id: s1}\n"
                    "links:\n  rs485-1: {type: serial, port: /dev/ttyUSB0}\n"
                    "devices:\n  - id: a\n    link: nowhere\n")
    result = edge_agent("check", str(path))
    assert result.returncode == 2
    assert f"{path}:6: devices[0].link: 'nowhere' is not defined" in result.stderr
    assert f"{path}: mqtt: required setting is missing" in result.stderr
    assert "problems found; nothing was started" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_refuses_to_start_on_an_invalid_file_and_touches_nothing(tmp_path):
    path = tmp_path / "station.yaml"
    path.write_text("station: {id: s1}\nmqtt: {host: 127.0.0.1, port: 99999}\n")
    result = edge_agent("run", str(path))
    assert result.returncode == 2
    assert "mqtt.port" in result.stderr and "nothing was started" in result.stderr
    assert not list(tmp_path.glob("*.sqlite3"))


def test_sigterm_stops_cleanly_and_publishes_offline_status(tmp_path, broker, collector):
    server = SimServer([SimUnit(1, holding={0: 5})]).start()
    try:
        config = write_station(
            tmp_path / "station.yaml", broker_port=broker.port,
            links={"gw": {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port}},
            devices=[{"id": "d1", "link": "gw", "unit_id": 1, "interval_s": 0.1,
                      "channels": [{"name": "v", "address": 0}]}])
        agent = AgentProcess(config, tmp_path / "agent.log").start().wait_running()
        collector.wait_for(lambda c: len(c.seqs("d1")) >= 3, 30, "data")
        assert agent.terminate(timeout_s=30) == 0
    finally:
        server.stop()
    collector.wait_for(lambda c: c.status and c.status[-1]["state"] == "offline", 30,
                       "offline status")
    assert "edge-agent stopped" in agent.log()


def test_demo_shows_readings_from_every_simulated_instrument(tmp_path):
    result = edge_agent("demo", "--duration", "8", "--workdir", str(tmp_path), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    for device in ("gc-1", "ftir-1", "detector-1", "detector-2"):
        readings = [line for line in lines if f" {device} " in line]
        assert readings, f"no readings from {device}:\n{result.stdout}"
        assert "BAD" not in readings[0]
    assert "station demo-station is online" in result.stdout


def test_demo_speaks_chinese_with_lang_zh(tmp_path):
    """The demo's own lines in Chinese; the payload's words (online, GOOD) stay as sent."""
    result = edge_agent("--lang", "zh", "demo", "--duration", "6", "--workdir", str(tmp_path),
                        timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("demo：MQTT 服务器在 127.0.0.1:")
    assert "站点 demo-station 状态：online" in result.stdout
    assert any(" gc-1 " in line for line in result.stdout.splitlines())
    assert result.stdout.rstrip().splitlines()[-1].startswith("demo：收到 ")


def test_demo_without_mosquitto_says_how_to_install_it(tmp_path):
    result = edge_agent("demo", "--duration", "1", "--workdir", str(tmp_path),
                        env={"EDGE_AGENT_MOSQUITTO": str(tmp_path / "none")})
    assert result.returncode == 3
    assert "apt-get install -y mosquitto" in result.stderr
    assert "Traceback" not in result.stderr

