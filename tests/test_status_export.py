"""`edge-agent status` and `edge-agent export` as a technician runs them (real commands,
real agent, real broker), with their output checked against what the test made happen
and the outbox proven unchanged by reading it."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.collector import VALIDATOR
from support.health import detector_server, detectors, status, status_when_up
from support.station import AgentProcess, write_station
from support.waiting import wait_until

from edge_agent.config.schema import Retention
from edge_agent.model import Quality, Reading, Sample
from edge_agent.store.outbox import Outbox
from edge_agent.tools.ops.text import local_time
from edge_agent.tools.sim.broker import free_port

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STATION = "cp-east-03"


def edge_agent(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_agent", *map(str, args)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def columns(line: str) -> list[str]:
    """A table row of the status output, split on the runs of spaces between columns."""
    return re.split(r" {2,}", line.strip())


def _states(document: dict) -> dict[str, str]:
    return {device["id"]: device["state"] for device in document.get("devices", [])}


def row_of(output: str, device: str) -> list[str]:
    rows = [columns(line) for line in output.splitlines() if line.startswith(device + " ")]
    assert len(rows) == 1, output
    return rows[0]


def file_state(path: Path) -> tuple[str, list[tuple]]:
    """The outbox's bytes (hash) and rows: what 'unchanged' means."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT * FROM outbox ORDER BY id").fetchall()
        rows += conn.execute("SELECT * FROM meta ORDER BY key").fetchall()
        rows += conn.execute("SELECT * FROM device_seq ORDER BY device_id").fetchall()
    finally:
        conn.close()
    return digest, rows


def test_status_from_a_running_agent_shows_device_states_broker_backlog_and_drops(
        tmp_path, broker):
    server = detector_server()
    port = free_port()
    links, devices = detectors(server.tcp_port)
    config = write_station(tmp_path / "station.yaml", broker_port=broker.port, links=links,
                           devices=devices, station_id=STATION, health={"port": port})
    agent = AgentProcess(config, tmp_path / "agent.log").start().wait_running()
    try:
        wait_until(lambda: _states(status_when_up(port)) == {"det-ok": "ok", "det-mute": "down"}
                   and status(port)["broker"]["connected"], 60, "det-mute down, broker up")
        result = edge_agent("status", config)
        document = status(port)
        (tmp_path / "other").mkdir()
        other = write_station(tmp_path / "other" / "station.yaml", broker_port=broker.port,
                              links=links, devices=devices, station_id="other-station",
                              health={"port": port})
        mistaken = edge_agent("status", other)
    finally:
        assert agent.terminate() == 0
        server.stop()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    lines = out.splitlines()
    assert lines[0] == (f"Station {STATION}: status from the RUNNING agent "
                        f"(http://127.0.0.1:{port}/status)")
    # The agent's own health apart from its devices' (it used to print "Health: OK" alone).
    assert lines[2] == "Agent:    OK (worker threads alive, outbox answering)"
    assert lines[3] == "Devices:  1 of 2 not ok: det-mute DOWN"
    assert columns(lines[5]) == ["DEVICE", "LINK", "STATE", "LAST GOOD READING", "LAST ERROR"]
    # Last values: what the simulator holds (5 and 7 around a hole at address 1).
    values = {tuple(columns(line)[:6]) for line in lines if line.startswith("  det-")}
    assert ("det-ok", "a", "5", "ppm", "GOOD", "-") in values
    assert ("det-ok", "b", "-", "ppm", "BAD", "exception_02") in values
    assert ("det-ok", "c", "7", "ppm", "GOOD", "-") in values
    assert ("det-mute", "a", "-", "ppm", "BAD", "timeout") in values
    wire = next(line for line in lines if line.startswith("  det-mute: ") and "requests" in line)
    found = re.fullmatch(r"  det-mute: (\d+) requests?, 0 answers, (\d+) timeouts?, "
                         r"0 exceptions, 0 split reads since start", wire)
    assert found and found.group(1) == found.group(2) != "0", wire
    ok, mute = row_of(out, "det-ok"), row_of(out, "det-mute")
    assert ok[:3] == ["det-ok", "gw", "ok"] and ok[3].endswith(" ago)") and ok[4] == "-"
    assert mute[:4] == ["det-mute", "gw", "DOWN", "none since start"]
    assert mute[4].startswith("timeout: unit 2: no answer within 100 ms")
    assert ("  det-ok: channel b answers exception 02 (illegal data address) on its own"
            in lines)
    failed = [line for line in lines if line.startswith("  det-mute: ") and "polls" in line]
    assert len(failed) == 1 and re.fullmatch(
        r"  det-mute: (\d+) of \d+ polls failed since start \(timeout \1\)", failed[0])
    broker_line = next(line for line in lines if line.startswith("Broker:"))
    assert f"127.0.0.1:{broker.port} connected for" in broker_line
    assert any(line.startswith("Backlog:  ") for line in lines)
    assert lines[-1] == ("Drops:    none dropped by retention since start (this outbox file: "
                         "0 in total)")
    assert document["outbox"]["path"] == str(tmp_path / "outbox.sqlite3")
    # Another station file with the same health port is not shown this agent's state.
    assert f"is station '{STATION}', not 'other-station'" in mistaken.stdout + mistaken.stderr
    assert "status from the RUNNING agent" not in mistaken.stdout


def test_status_of_a_stopped_agent_reads_the_outbox_file_and_changes_nothing(
        tmp_path, broker):
    broker.stop()  # nothing is delivered: the backlog stays in the file
    server = detector_server()
    port = free_port()
    links, devices = detectors(server.tcp_port)
    config = write_station(tmp_path / "station.yaml", broker_port=broker.port, links=links,
                           devices=devices, station_id=STATION, health={"port": port})
    outbox = tmp_path / "outbox.sqlite3"
    agent = AgentProcess(config, tmp_path / "agent.log").start().wait_running()
    try:
        wait_until(lambda: _states(status_when_up(port)).get("det-mute") == "down", 60,
                   "det-mute down")
    finally:
        assert agent.terminate() == 0
        server.stop()
    before = file_state(outbox)
    result = edge_agent("status", config)
    assert file_state(outbox) == before
    assert result.returncode == 0, result.stderr

    conn = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    spans = {device: (count, oldest, newest) for device, count, oldest, newest in conn.execute(
        "SELECT device_id, COUNT(*), MIN(acquired_at), MAX(acquired_at) FROM outbox "
        "GROUP BY device_id")}
    conn.close()
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Station {STATION}: the agent is NOT answering: nothing "
                               f"answers at http://127.0.0.1:{port}/status")
    assert lines[1] == f"Showing what the OUTBOX FILE holds: {outbox}"
    for device, newest_sample in (("det-ok", "GOOD 2, BAD 1 (b: exception_02)"),
                                  ("det-mute", "BAD 1 (a: timeout)")):
        count, oldest, newest = spans[device]
        row = row_of(result.stdout, device)
        assert row[:2] == [device, str(count)]
        assert row[2].startswith(local_time(oldest) + " (")
        assert row[3].startswith(local_time(newest) + " (")
        assert row[4] == newest_sample
    total = sum(count for count, _, _ in spans.values())
    oldest = min(oldest for _, oldest, _ in spans.values())
    assert f"Backlog:  {total} samples waiting; oldest acquired {local_time(oldest)} (" \
        in result.stdout
    assert lines[-1] == "Drops:    none dropped by retention over this outbox file's life"


def _known_backlog(path: Path) -> dict[str, list[tuple[int, str, datetime]]]:
    """gc-1 and det-1, one sample a minute from T0 for 10 minutes; retention keeps 18 of
    the 20, so the oldest sample of each is dropped and announced by a gap event.
    Returns per device (seq, sample id, acquired_at) of what stays."""
    box = Outbox(path, Retention(max_rows=18, max_bytes=None, max_age_s=None))
    kept: dict[str, list[tuple[int, str, datetime]]] = {"gc-1": [], "det-1": []}
    for i in range(10):
        at = T0 + timedelta(minutes=i)
        gc = Sample("gc-1", at, (
            Reading("gc-1", "benzene", 1.5 + i, "mg/m3", Quality.GOOD, at),
            Reading("gc-1", "toluene, total", None, "mg/m3", Quality.BAD, at, "exception_02"),
        ), instrument_time=at - timedelta(seconds=30))
        det = Sample("det-1", at, (Reading("det-1", "h2s", None, "ppm", Quality.BAD, at,
                                           "timeout"),))
        for sample in (gc, det):
            accepted = box.append(sample)
            kept[sample.device_id].append((accepted.seq, accepted.sample_id, at))
    box.close()
    return {device: samples[1:] for device, samples in kept.items()}


def _export_station(tmp_path: Path, outbox: Path) -> Path:
    return write_station(
        tmp_path / "station.yaml", broker_port=1883, station_id=STATION,
        links={"gw": {"type": "tcp", "host": "127.0.0.1", "port": 502}},
        devices=[{"id": device, "link": "gw", "unit_id": unit, "interval_s": 60,
                  "channels": [{"name": "v", "address": 0}]}
                 for unit, device in enumerate(("gc-1", "det-1"), start=1)],
        store={"path": str(outbox)})


@pytest.mark.real_parts
def test_export_of_a_known_backlog_to_csv_and_jsonl_leaves_the_outbox_unchanged(tmp_path):
    outbox = tmp_path / "outbox.sqlite3"
    kept = _known_backlog(outbox)
    config = _export_station(tmp_path, outbox)
    before = file_state(outbox)

    # gc-1 from minute 3 to minute 7 (not included), written as this PC's local time
    # in Shanghai: 08:03 there is 00:03 UTC.
    csv_path = tmp_path / "gc.csv"
    result = edge_agent("export", config, "--from", "2026-01-01 08:03", "--to",
                        "2026-01-01T00:07Z", "--device", "gc-1", "--out", csv_path,
                        env={"TZ": "CST-8"})  # POSIX: UTC+8, no tzdata needed
    assert result.returncode == 0, result.stderr
    with open(csv_path, newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    expected = [["station", "device", "seq", "sample_id", "acquired_at", "instrument_time",
                 "stream", "channel", "value", "unit", "quality", "reason"]]
    for seq, sample_id, at in kept["gc-1"]:
        if T0 + timedelta(minutes=3) <= at < T0 + timedelta(minutes=7):
            stamp = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            earlier = (at - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            head = [STATION, "gc-1", str(seq), sample_id, stamp, earlier, ""]
            minute = int((at - T0).total_seconds() // 60)
            expected += [[*head, "benzene", str(1.5 + minute), "mg/m3", "GOOD", ""],
                         [*head, "toluene, total", "", "mg/m3", "BAD", "exception_02"]]
    assert rows == expected and len(rows) == 1 + 4 * 2
    assert "Exported 4 samples" in result.stdout
    assert "  gc-1: 4 samples, acquired 2026-01-01 08:03:00+08:00 .. 2026-01-01 " \
           "08:06:00+08:00" in result.stdout

    jsonl_path = tmp_path / "all.jsonl"
    result = edge_agent("export", config, "--out", jsonl_path)
    assert result.returncode == 0, result.stderr
    messages = [json.loads(line) for line in jsonl_path.read_text().splitlines()]
    for message in messages:
        VALIDATOR.validate(message)  # each line is a payload-v1 message
        assert (message["station"], message["historical"]) == (STATION, True)
    samples = {(m["device"], s["seq"], s["id"]) for m in messages if m["type"] == "data"
               for s in m["samples"]}
    assert samples == {(device, seq, sample_id) for device, kept_samples in kept.items()
                       for seq, sample_id, _ in kept_samples}
    gaps = sorted((m["device"], g["first_seq"], g["last_seq"], g["count"], g["reasons"][0])
                  for m in messages if m["type"] == "gap" for g in m["gaps"])
    assert gaps == [("det-1", 1, 1, 1, "max_rows"), ("gc-1", 1, 1, 1, "max_rows")]
    assert "Exported 18 samples and 2 gap events" in result.stdout

    result = edge_agent("export", config, "--out", tmp_path / "all.csv")
    assert "2 gap events (samples dropped by retention) in this range cannot be written " \
           "as CSV rows" in result.stdout
    assert file_state(outbox) == before
    assert sorted(path.name for path in tmp_path.iterdir() if "partial" in path.name) == []


def test_export_while_the_agent_runs_reads_a_snapshot_and_takes_nothing_away(
        tmp_path, broker):
    broker.stop()
    server = detector_server()
    links, devices = detectors(server.tcp_port, interval_s=0.05)
    config = write_station(tmp_path / "station.yaml", broker_port=broker.port, links=links,
                           devices=devices[:1], station_id=STATION)
    outbox = tmp_path / "outbox.sqlite3"
    agent = AgentProcess(config, tmp_path / "agent.log").start().wait_running()
    try:
        wait_until(lambda: _sample_ids(outbox) and len(_sample_ids(outbox)) >= 20, 60,
                   "20 samples")
        result = edge_agent("export", config, "--out", tmp_path / "now.jsonl")
        exported = [s for line in (tmp_path / "now.jsonl").read_text().splitlines()
                    for s in json.loads(line)["samples"]]
        wait_until(lambda: len(_sample_ids(outbox)) > len(exported) + 5, 60,
                   "the agent to store more after the export")
        assert agent.alive()
    finally:
        assert agent.terminate() == 0
        server.stop()
    assert result.returncode == 0, result.stderr
    seqs = [sample["seq"] for sample in exported]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 20, \
        "a consistent snapshot: every sample up to the newest one read, in order"
    assert {sample["id"] for sample in exported} <= set(_sample_ids(outbox)), \
        "nothing exported was taken out of the outbox"


def _sample_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [entry for (entry,) in conn.execute(
            "SELECT entry_id FROM outbox WHERE kind = 'sample' ORDER BY id")]
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        conn.close()


@pytest.mark.real_parts
def test_export_refuses_what_would_surprise_a_technician(tmp_path):
    outbox = tmp_path / "outbox.sqlite3"
    _known_backlog(outbox)
    config = _export_station(tmp_path, outbox)
    existing = tmp_path / "old.csv"
    existing.write_text("keep me\n")
    cases = [
        (["--out", existing], f"{existing} exists; choose another name, or add --force"),
        (["--device", "gc-9", "--out", tmp_path / "x.csv"],
         "--device gc-9: no such device in the station file or the outbox (known: det-1, "
         "gc-1)"),
        (["--from", "2026-01-02", "--to", "2026-01-01", "--out", tmp_path / "x.csv"],
         "--from must be earlier than --to"),
        (["--out", tmp_path / "x.txt"], "say --format csv or --format jsonl"),
        (["--from", "yesterday", "--out", tmp_path / "x.csv"], "expected a date or time"),
    ]
    for args, message in cases:
        result = edge_agent("export", config, *args)
        assert result.returncode == 2, (args, result.stdout)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert existing.read_text() == "keep me\n"
    assert not (tmp_path / "x.csv").exists()
