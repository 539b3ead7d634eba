"""Disk and database faults with a real agent process: the outbox's disk fills up during a
broker outage and frees again; the outbox file is garbage, truncated or has a damaged
page; it comes from a newer release. The agent stays up (or, for the newer file, refuses
clearly), says what is wrong, counts what it lost and announces it to the platform."""

from __future__ import annotations

import random
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from support.health import logged_port, scrape, status
from support.smalldisk import PipedAgentProcess, small_disk
from support.station import AgentProcess, accepted_seqs, write_station
from support.waiting import wait_until

from edge_agent.config.schema import Retention
from edge_agent.model import Quality, Reading, Sample
from edge_agent.store.outbox import Outbox
from edge_agent.store.schema import SCHEMA_VERSION
from edge_agent.tools.sim.broker import free_port
from edge_agent.tools.sim.simserver import SimServer, SimUnit

BACKLOG = 200


@pytest.fixture
def detector():
    server = SimServer([SimUnit(1, holding={0: 50})]).start()
    yield server
    server.stop()


def station(tmp_path, broker_port, detector, outbox, health=None):
    return write_station(
        tmp_path / "station.yaml", broker_port=broker_port,
        links={"gw": {"type": "tcp", "host": "127.0.0.1", "port": detector.tcp_port}},
        devices=[{"id": "det", "link": "gw", "unit_id": 1, "interval_s": 0.05,
                  "channels": [{"name": "h2s", "address": 0, "type": "uint16"}]}],
        store={"path": str(outbox),
               "retention": {"max_rows": None, "max_bytes": None, "max_age_s": None}},
        health=health)


def waiting_seqs(outbox) -> set[int]:
    conn = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    try:
        return {s for (s,) in conn.execute("SELECT seq FROM outbox WHERE kind = 'sample'")}
    finally:
        conn.close()


def assert_every_accepted_sample_delivered_or_waiting(collector, outbox, first_seq=1):
    last = accepted_seqs(outbox)["det"]
    waiting = waiting_seqs(outbox)
    expected = set(range(first_seq, last + 1))
    collector.wait_for(lambda c: expected <= set(c.seqs("det")) | waiting, 60,
                       f"det seqs {first_seq}..{last}")


def test_full_disk_agent_keeps_running_counts_the_loss_and_announces_it_when_space_returns(
        tmp_path, broker, collector, detector):
    disk = small_disk(tmp_path)
    try:
        outbox = disk.dir / "outbox.sqlite3"
        agent = PipedAgentProcess(station(tmp_path, broker.port, detector, outbox),
                                  tmp_path / "agent.log").start().wait_running()
        try:
            failures = fill_and_free_during_outage(disk, agent, broker, collector, detector,
                                                   outbox)
        finally:
            status = agent.terminate()
        assert status == 0, agent.log()[-3000:]
        assert_every_accepted_sample_delivered_or_waiting(collector, outbox)
    finally:
        disk.close()
    assert {tuple(g["reasons"]) for g in collector.gaps} == {("store_error",)}
    assert all(g["first_seq"] is None for g in collector.gaps), "never stored: no seq"
    assert sum(g["count"] for g in collector.gaps) == failures, "every lost sample counted"
    assert failures >= 20, "the polls made while the disk was full were all lost"
    assert agent.log().count("cannot store samples") == 1, "logged once, not every poll"


def fill_and_free_during_outage(disk, agent, broker, collector, detector, outbox) -> int:
    """Fill the disk while the broker is away, check the report, let 20 more polls fail,
    free it, bring the broker back; returns the number of samples the agent says it
    could not store."""
    collector.wait_for(lambda c: len(c.seqs("det")) >= 5, 30, "data before the outage")
    broker.stop()  # nothing leaves the outbox now: it has to grow
    disk.fill(agent.process.pid)
    wait_until(lambda: "cannot store samples" in agent.log(), 60,
               "the agent to report that it cannot store samples")
    report = next(line for line in agent.log().splitlines() if "cannot store samples" in line)
    assert " ERROR " in report and disk.report in report and str(outbox) in report, report
    served = len(detector.requests)
    wait_until(lambda: len(detector.requests) >= served + 20, 60,
               "20 more polls while the disk is full")
    assert agent.alive()
    assert_backlog_shown_while_disk_full(agent)
    disk.free(agent.process.pid)
    broker.start()
    wait_until(lambda: "storing samples again after" in agent.log(), 60,
               "storing to work again once space is back")
    failures = int(re.search(r"storing samples again after (\d+) failures",
                             agent.log()).group(1))
    collector.wait_for(lambda c: sum(g["count"] for g in c.gaps) >= failures, 60,
                       f"a gap event announcing the {failures} samples not stored")
    resumed = accepted_seqs(outbox)["det"]
    collector.wait_for(lambda c: max(c.seqs("det")) > resumed + 5, 60, "live data again")
    return failures


def assert_backlog_shown_while_disk_full(agent) -> None:
    """Depth is read without writing: the backlog is known in exactly this fault."""
    port = logged_port(agent.log())
    depth = status(port)["outbox"]
    assert depth["error"] is None and depth["samples"] is not None, depth
    assert scrape(port).value("edge_agent_outbox_samples") == depth["samples"]


def backlog_outbox(path, count=BACKLOG) -> None:
    """A real outbox with ``count`` undelivered samples of det, as a broker outage leaves it."""
    box = Outbox(path, Retention(None, None, None))
    start = datetime.now(UTC) - timedelta(hours=1)
    for i in range(count):
        at = start + timedelta(seconds=i)
        box.append(Sample("det", at, (Reading("det", "h2s", i, "", Quality.GOOD, at),)))
    box.close()


def write_garbage(path) -> None:
    """Garbage over an outbox an agent kept here (its lock file stays beside it)."""
    backlog_outbox(path)
    path.write_bytes(random.Random(11).randbytes(200_000))


def truncate(path) -> None:
    """Cut the file in the middle of its sample pages: the schema's root pages stay whole
    and about half the rows stay readable, however many tables a schema version adds
    (halving the file itself cut every row page once schema 5 added two)."""
    backlog_outbox(path)
    conn = sqlite3.connect(path)
    last_root, = conn.execute("SELECT MAX(rootpage) FROM sqlite_master").fetchone()
    page_size, = conn.execute("PRAGMA page_size").fetchone()
    pages, = conn.execute("PRAGMA page_count").fetchone()
    conn.close()
    with open(path, "r+b") as file:
        file.truncate((last_root + (pages - last_root) // 2) * page_size)


def overwrite_index_page(path) -> None:
    backlog_outbox(path)
    conn = sqlite3.connect(path)
    root, = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'outbox_device'").fetchone()
    page_size, = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    with open(path, "r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(random.Random(root).randbytes(page_size))


@pytest.mark.parametrize("damage, first_new_seq", [
    (write_garbage, 1), (truncate, BACKLOG + 1), (overwrite_index_page, BACKLOG + 1)],
    ids=["garbage", "truncated", "index page overwritten"])
def test_corrupt_outbox_is_set_aside_and_a_new_one_publishes(
        tmp_path, broker, collector, detector, damage, first_new_seq):
    outbox = tmp_path / "outbox.sqlite3"
    damage(outbox)
    damaged = outbox.read_bytes()
    agent = AgentProcess(station(tmp_path, broker.port, detector, outbox),
                         tmp_path / "agent.log").start().wait_running()
    try:
        collector.wait_for(lambda c: len(c.seqs("det")) >= 10, 60, "samples from a new outbox")
    finally:
        status = agent.terminate()
    assert status == 0, agent.log()[-3000:]
    [aside] = [p for p in tmp_path.glob("outbox.sqlite3.corrupt-*")
               if not p.name.endswith(("-wal", "-shm"))]
    [report] = [line for line in agent.log().splitlines() if " is corrupt (" in line]
    assert " ERROR " in report and f"set aside as {aside}" in report
    if damage is write_garbage:
        assert aside.read_bytes() == damaged, "the corrupt file is kept as it was"
    assert min(collector.seqs("det")) == first_new_seq
    assert_every_accepted_sample_delivered_or_waiting(collector, outbox, first_new_seq)
    lost = [g for g in collector.gaps if g["device"] == "det"]
    for gap in lost:
        assert gap["reasons"] == ["store_error"]
        assert gap["last_seq"] - gap["first_seq"] + 1 == gap["count"]
        assert gap["last_seq"] < first_new_seq
    if damage is overwrite_index_page:  # the rows were all readable: every one announced
        collector.wait_for(lambda c: sum(g["count"] for g in c.gaps) == BACKLOG, 30,
                           "gap events for the whole backlog")
        assert f"{BACKLOG} undelivered samples of 1 device(s)" in report
    elif damage is truncate:
        assert "at least" in report and "the exact number is unknown" in report
    else:
        assert not lost and "the number of undelivered samples lost is unknown" in report


def test_set_aside_outbox_and_its_lost_samples_show_in_metrics_and_status(
        tmp_path, broker, collector, detector):
    outbox = tmp_path / "outbox.sqlite3"
    overwrite_index_page(outbox)
    port = free_port()
    config = station(tmp_path, broker.port, detector, outbox, health={"port": port})
    agent = AgentProcess(config, tmp_path / "agent.log").start().wait_running()
    try:
        collector.wait_for(lambda c: len(c.seqs("det")) >= 3, 60, "samples from a new outbox")
        metrics = scrape(port)
        live = status_command(config)
    finally:
        assert agent.terminate() == 0, agent.log()[-3000:]
    stopped = status_command(config)
    [aside] = [p for p in tmp_path.glob("outbox.sqlite3.corrupt-*")
               if not p.name.endswith(("-wal", "-shm"))]
    assert metrics.value("edge_agent_outbox_files_set_aside_total") == 1
    assert metrics.value("edge_agent_outbox_corrupt_lost_samples_total") == BACKLOG
    lost = (f"          {BACKLOG} undelivered samples lost with corrupt outbox files over "
            "this outbox's life (announced as gap events)")
    assert f"Corrupt:  outbox file set aside as {aside} (in this run; a new outbox took its " \
           "place; kept for recovery by a person)" in live and lost in live, live
    assert f"Corrupt:  outbox file set aside as {aside} (found beside the outbox; kept for " \
           "recovery by a person)" in stopped and lost in stopped, stopped


def status_command(config) -> list[str]:
    result = subprocess.run([sys.executable, "-m", "edge_agent", "status", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_outbox_from_a_newer_release_refuses_to_start_and_is_left_alone(
        tmp_path, broker, detector):
    outbox = tmp_path / "outbox.sqlite3"
    backlog_outbox(outbox, 3)
    conn = sqlite3.connect(outbox)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    before = outbox.read_bytes()
    config = station(tmp_path, broker.port, detector, outbox)
    for command in ("check", "run"):  # refused as a station-file problem: no restart loop
        result = subprocess.run([sys.executable, "-m", "edge_agent", command, str(config)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert f": store.path: {outbox} is an outbox written by a newer edge-agent (schema " \
               f"version 99; this one reads up to {SCHEMA_VERSION}); it is left as it is. " \
               "Expected: upgrade " \
               "edge-agent, or move the file aside" in result.stderr
        assert "Traceback" not in result.stderr
    assert outbox.read_bytes() == before and not list(tmp_path.glob("*.corrupt-*"))
