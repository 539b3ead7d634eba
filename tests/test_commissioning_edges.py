"""Rough edges a new technician met while commissioning (issue 14, item 5): what
bootstrap says while it installs, the start-up line's counts, where the ``password_env``
message sends the technician, and the units and registers replay and simulate serve."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.station import write_station

from edge_agent.agent import Agent
from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config
from edge_agent.config.validate_mqtt import SECRETS_FILE
from edge_agent.tools.sim.ranges import ranges_text

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.real_parts
def test_bootstrap_announces_each_step_before_it_runs():
    result = subprocess.run([str(ROOT / "scripts/bootstrap"), "--dry-run"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    steps = result.stdout.splitlines()
    assert all(line.startswith("bootstrap: ") for line in steps), steps
    assert steps[0] == ("bootstrap: checking for Python 3.11+, venv, Mosquitto, systemd "
                        "tools, dpkg-dev and lintian")
    assert re.fullmatch(r"bootstrap: (creating the virtual environment \.venv \(Python "
                        r"3\.\d+\.\d+\)|using the existing virtual environment \.venv)",
                        steps[2]), steps
    assert steps[3].startswith("bootstrap: upgrading pip in .venv, from ")
    assert steps[4].startswith("bootstrap: installing edge-agent and its test tools into "
                               ".venv, from ")
    assert steps[4].endswith("(a few minutes on a slow link; log: .venv/pip-install.log)")
    assert steps[-1] == "bootstrap: dry run: nothing was installed"


@pytest.mark.real_parts
def test_bootstrap_refuses_an_unknown_option_before_doing_anything():
    result = subprocess.run([str(ROOT / "scripts/bootstrap"), "--dryrun"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == \
        (2, "", "usage: scripts/bootstrap [--dry-run]\n")


def test_startup_line_counts_one_device_on_one_link(tmp_path, broker, caplog):
    config = write_station(tmp_path / "station.yaml", links={
        "lan": {"type": "tcp", "host": "127.0.0.1", "port": 1, "timeout_ms": 100}},
        devices=[{"id": "det-1", "link": "lan", "unit_id": 1,
                  "profile": "generic-gas-detector"}], broker_port=broker.port)
    agent = Agent(load_config(config))
    with caplog.at_level(logging.INFO, logger="edge_agent.agent"):
        agent.start()
        agent.stop()
    started = [record.getMessage() for record in caplog.records
               if "edge-agent running for station" in record.getMessage()]
    assert started == [f"edge-agent running for station test-station: 1 device on 1 link, "
                       f"outbox {tmp_path / 'outbox.sqlite3'}"]


def test_password_env_message_names_the_secrets_file_the_installer_creates(tmp_path):
    config = write_station(tmp_path / "station.yaml", links={
        "lan": {"type": "tcp", "host": "127.0.0.1"}}, devices=[
        {"id": "det-1", "link": "lan", "unit_id": 1, "profile": "generic-gas-detector"}],
        broker_port=1883, mqtt={"username": "st01", "password_env": "ST01_PASSWORD"})
    with pytest.raises(ConfigError) as raised:
        load_config(config, env={})
    assert f"the secrets file the installer creates, {SECRETS_FILE}: add the line " \
           f"ST01_PASSWORD=<password> there" in str(raised.value)
    # The file the message names is the one the installer writes and the service reads.
    installer = (ROOT / "scripts/install").read_text()
    assert 'create_once "$WORK/edge-agent.env" "$ETC/edge-agent.env"' in installer
    assert "ETC=$ROOT/etc/edge-agent" in installer  # $ROOT: empty, or a test's root
    assert f"EnvironmentFile=-{SECRETS_FILE}" in \
        (ROOT / "systemd/edge-agent.service").read_text()


# -- replay and simulate say which units and registers they answer -----------------------


@pytest.mark.parametrize(("addresses", "expected"), [
    ({"holding": [0, 1, 2, 5]}, "holding 0-2, 5"),
    ({"holding": [7, 3, 4, 3]}, "holding 3-4, 7"),
    ({"holding": [], "input": [10]}, "input 10"),
    ({"coil": [0], "input": range(0, 58)}, "coil 0; input 0-57"),
    ({}, "no registers"),
])
def test_register_ranges_are_joined_runs_of_addresses(addresses, expected):
    assert ranges_text(addresses) == expected


@contextmanager
def first_lines(args: list[str], until: str) -> Iterator[list[str]]:
    """The lines ``edge-agent ARGS`` prints up to and including the one starting with
    ``until``; the process is killed after."""
    process = subprocess.Popen([sys.executable, "-m", "edge_agent", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines: list[str] = []
        while not lines or not lines[-1].startswith(until):
            line = process.stdout.readline()
            assert line, (lines, process.stderr.read())
            lines.append(line.rstrip("\n"))
        yield lines
    finally:
        process.kill()
        process.wait(timeout=30)


@pytest.mark.real_parts
def test_replay_prints_each_unit_and_the_register_ranges_it_answers():
    capture = ROOT / "drivers/gas_detector/fixtures/generic-gas-detector-faults.capture.jsonl"
    with first_lines(["replay", "rtu", str(capture), "--pty"], "  unit ") as lines:
        assert "(link gas_detector, 2 requests, strict mode) as Modbus RTU on" in lines[0]
        assert lines[1] == "  unit 4: holding 0-5, 16-19"


@pytest.mark.real_parts
def test_simulate_prints_each_unit_and_the_register_ranges_it_serves(tmp_path):
    config = tmp_path / "sim.yaml"
    config.write_text(
        "servers:\n  lan: {listen: '127.0.0.1:0'}\n"
        "devices:\n"
        "  - {id: gc-1, server: lan, unit_id: 1, profile: generic-gc}\n"
        "  - {id: ng-gc, server: lan, unit_id: 2, profile: daniel-enron-gc}\n")
    with first_lines(["simulate", str(config)], "simulating") as lines:
        assert lines[1:3] == [
            "  unit 1 (gc-1): values at holding 0-19; addresses 0-1023 of every table answer "
            "(0 where no value)",
            "  unit 2 (ng-gc): values at holding 3001-3003, 5001, 7001-7005, 7020 (32-bit "
            "Enron registers: 5001-5999, 7001-7999); addresses 0-7999 of every table answer "
            "(0 where no value)"]
