"""``edge-agent probe ... --record FILE``: what the probe did is in the capture, frame for
frame, and replays to the very same probe output; a scan records the silence of absent
units; a capture that cannot be written does not stop the probe. Real processes, real
pymodbus servers on pseudo-terminal pairs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from edge_agent_drivers.modbus.settings import RegisterKind
from support.command import EDGE_AGENT, running, served_at

from edge_agent.tools.capture.files import read_capture
from edge_agent.tools.sim.ptypair import PtyPair
from edge_agent.tools.sim.simserver import SimServer, SimUnit

# Every test here starts the agent or a tool as a real process.
pytestmark = pytest.mark.real_parts

DETECTOR = {0: 0, 1: 0, 2: 209, 3: 12, 4: 35, 5: 4}


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGE_AGENT, "probe", *args], capture_output=True, text=True,
                          timeout=120)


@contextmanager
def replaying(capture: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``edge-agent replay rtu CAPTURE --pty``, and the path the master opens."""
    with running("replay", "rtu", capture, "--pty") as (process, first):
        yield process, served_at(first, r"Modbus RTU on (\S+);")


def test_probe_read_records_what_it_did_and_the_capture_replays_to_the_same_output(
        tmp_path):
    path = tmp_path / "h2s.capture.jsonl"
    args = ["--unit", "3", "--count", "6", "--format", "json"]
    with PtyPair() as pty, SimServer([SimUnit(3, holding=DETECTOR)],
                                     serial_port=pty.device_path):
        recorded = probe("read", pty.agent_path, *args, "--record", str(path))
    assert recorded.returncode == 0, recorded.stderr
    assert f"recorded 2 frames in {path}" in recorded.stderr
    capture = read_capture(path)
    link = capture.header.links[0]
    assert (link.protocol, link.endpoint, capture.header.recorded_with) == (
        "modbus-rtu", pty.agent_path, "agent")
    request, answer = capture.frames()
    assert (request.dir, request.info.unit_id, request.info.function_code,
            request.info.address, request.info.count) == ("tx", 3, 3, 0, 6)
    assert (answer.dir, answer.xid) == ("rx", request.xid)
    with replaying(str(path)) as (replay, master_path):
        replayed = probe("read", master_path, *args)
        assert replay.wait(timeout=30) == 0  # strict: the very request, nothing else
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.replace(master_path, "PORT") == \
        recorded.stdout.replace(pty.agent_path, "PORT")


def test_probe_scan_records_answers_and_silences_and_continues_an_earlier_recording(
        tmp_path):
    path = tmp_path / "bus.capture.jsonl"
    with PtyPair() as pty, SimServer([SimUnit(2, holding={0: 5}),
                                      SimUnit(4, holes={RegisterKind.HOLDING: [0]})],
                                     serial_port=pty.device_path):
        first = probe("read", pty.agent_path, "--unit", "2", "--count", "1",
                      "--record", str(path))
        scan = probe("scan", pty.agent_path, "--units", "1-4", "--timeout-ms", "300",
                     "--record", str(path))
    assert first.returncode == 0 and scan.returncode == 0, scan.stderr
    frames = read_capture(path).frames()
    requests = [(f.xid, f.info.unit_id) for f in frames if f.dir == "tx"]
    assert requests == [(1, 2), (2, 1), (3, 2), (4, 3), (5, 4)]  # numbering went on
    answers = {f.xid: f.info for f in frames if f.dir == "rx"}
    assert sorted(answers) == [1, 3, 5]  # units 1 and 3 are silent
    assert answers[5].exception_code == 2


def test_probe_reads_on_when_its_capture_cannot_be_written(tmp_path):
    with PtyPair() as pty, SimServer([SimUnit(3, holding=DETECTOR)],
                                     serial_port=pty.device_path):
        result = probe("read", pty.agent_path, "--unit", "3", "--count", "6",
                       "--record", "/dev/full")
    assert result.returncode == 0, result.stderr
    assert "unit 3" in result.stdout or "40001" in result.stdout, result.stdout
    assert "cannot record into /dev/full: No space left on device" in result.stderr
    assert "frames in /dev/full" not in result.stderr  # no claim of a recording
