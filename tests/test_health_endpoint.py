"""The health endpoint of a real agent: /metrics parsed by Prometheus's own parser and
checked against what each test made happen, /healthz, /status, and the `health:` section.

Agents here listen on port 0 (any free port) and the tests read the port from the log
line the agent writes, so nothing competes for a fixed port.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.health import detector_server, detectors, get, logged_port, scrape, status
from support.station import AgentProcess, write_station
from support.waiting import wait_until

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.config.schema import HealthConfig, Retention
from edge_agent.health import server as health_server
from edge_agent.health.histogram import Histogram
from edge_agent.model import Quality, Reading, Sample
from edge_agent.poller import DOWN_AFTER_FAILED_POLLS
from edge_agent.store.outbox import Outbox, OutboxError
from edge_agent.tools.sim.simserver import SimServer

CASES = Path(__file__).parent / "config_cases"
UNLIMITED = Retention(max_rows=None, max_bytes=None, max_age_s=None)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def sample(device: str, value: float, at: datetime) -> Sample:
    return Sample(device, at, (Reading(device, "ch", value, "ppm", Quality.GOOD, at),))


def _port_of(agent: AgentProcess) -> int:
    wait_until(lambda: logged_port(agent.log()) is not None or not agent.alive(), 30,
               "the health endpoint to listen")
    port = logged_port(agent.log())
    assert port is not None, agent.log()[-3000:]
    return port


def test_metrics_show_a_muted_device_down_with_timeouts_and_an_isolated_channel(
        tmp_path, broker, collector):
    started = time.time()
    server = detector_server()
    links, devices = detectors(server.tcp_port)
    config = write_station(tmp_path / "station.yaml", broker_port=broker.port, links=links,
                           devices=devices)
    agent = AgentProcess(config, tmp_path / "agent.log").start().wait_running()
    try:
        port = _port_of(agent)
        down = {"device": "det-mute", "link": "gw", "state": "down"}
        wait_until(lambda: scrape(port).value("edge_agent_device_state", **down) == 1, 60,
                   "det-mute marked down in /metrics")
        collector.wait_for(lambda c: len(c.seqs("det-ok")) >= 3, 30, "det-ok's samples")
        wait_until(lambda: scrape(port).value(
            "edge_agent_mqtt_messages_acknowledged_total") >= 3, 30, "acknowledged messages")
        metrics = scrape(port)
        health = get(port, "/healthz")
        document = status(port)
    finally:
        assert agent.terminate() == 0
        server.stop()
    scraped = time.time()

    ok, mute = {"device": "det-ok", "link": "gw"}, {"device": "det-mute", "link": "gw"}
    assert metrics.types["edge_agent_device_polls"] == "counter"
    assert metrics.types["edge_agent_mqtt_ack_latency_seconds"] == "histogram"
    for state, expected in (("ok", 0), ("degraded", 0), ("down", 1)):
        assert metrics.value("edge_agent_device_state", **mute, state=state) == expected
    assert metrics.value("edge_agent_device_state", **ok, state="ok") == 1
    timeouts = metrics.value("edge_agent_device_errors_total", **mute, reason="timeout")
    assert timeouts >= DOWN_AFTER_FAILED_POLLS
    errors = metrics.series("edge_agent_device_errors_total")
    assert errors == {frozenset({**mute, "reason": "timeout"}.items()): timeouts}, \
        "only the muted device failed, and only by timeouts"
    polls = metrics.value("edge_agent_device_polls_total", **mute)
    assert timeouts <= polls <= timeouts + 1  # a poll is counted when it starts
    assert metrics.value("edge_agent_device_state_entered_total", **mute, state="down") == 1
    assert metrics.value("edge_agent_device_state_entered_total", **mute,
                         state="degraded") == 1
    last_good = metrics.series("edge_agent_device_last_good_timestamp_seconds")
    assert list(last_good) == [frozenset(ok.items())], "the muted device never answered"
    assert started <= last_good[frozenset(ok.items())] <= scraped
    assert metrics.series("edge_agent_device_channel_isolated") == {
        frozenset({**ok, "channel": "b"}.items()): 1}

    assert metrics.value("edge_agent_mqtt_connected") == 1
    assert metrics.value("edge_agent_mqtt_sessions_total") == 1
    acknowledged = metrics.value("edge_agent_mqtt_messages_acknowledged_total")
    assert metrics.value("edge_agent_mqtt_messages_published_total") >= acknowledged >= 3
    buckets = sorted((float(dict(labels)["le"]), value) for labels, value in
                     metrics.series("edge_agent_mqtt_ack_latency_seconds_bucket").items())
    counts = [value for _, value in buckets]
    assert counts == sorted(counts), "buckets are cumulative"
    count = metrics.value("edge_agent_mqtt_ack_latency_seconds_count")
    assert buckets[-1] == (float("inf"), count) and 1 <= count <= acknowledged
    assert metrics.value("edge_agent_mqtt_ack_latency_seconds_sum") > 0
    assert metrics.value("edge_agent_healthy") == 1
    assert metrics.value("edge_agent_info", version="0.1.0", station="test-station") == 1

    assert health == (200, "ok\n")
    states = {device["id"]: device["state"] for device in document["devices"]}
    assert states == {"det-ok": "ok", "det-mute": "down"}
    assert document["devices"][0]["isolated_channels"] == {
        "b": "answers exception 02 (illegal data address) on its own"}


def _file_view(path: Path) -> dict:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        counts = dict(conn.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind"))
        oldest = conn.execute("SELECT MIN(acquired_at) FROM outbox WHERE kind = 'sample'")
        dropped = conn.execute("SELECT value FROM meta WHERE key = 'dropped_total'")
        return {"samples": counts.get("sample", 0), "rows": sum(counts.values()),
                "oldest": oldest.fetchone()[0], "dropped": int(dropped.fetchone()[0]),
                "at": time.time()}
    finally:
        conn.close()


def test_metrics_show_the_backlog_and_drops_while_the_broker_is_stopped(tmp_path, broker):
    """Nothing is ever delivered, so the file only grows: what a scrape reports must lie
    between what the file held just before and just after it."""
    broker.stop()
    server = detector_server()
    links, devices = detectors(server.tcp_port, interval_s=0.05)
    config = write_station(tmp_path / "station.yaml", broker_port=broker.port, links=links,
                           devices=devices[:1], store={"retention": {"max_rows": 20}})
    outbox = tmp_path / "outbox.sqlite3"
    agent = AgentProcess(config, tmp_path / "agent.log").start().wait_running()
    try:
        port = _port_of(agent)
        wait_until(lambda: _file_view(outbox)["dropped"] >= 10, 60, "10 samples dropped")
        before = _file_view(outbox)
        metrics = scrape(port)
        after = _file_view(outbox)
        health = get(port, "/healthz")
    finally:
        assert agent.terminate() == 0
        server.stop()

    assert before["samples"] == after["samples"] == 20  # the retention limit
    assert metrics.value("edge_agent_outbox_samples") == 20
    assert before["rows"] <= metrics.value("edge_agent_outbox_rows") <= after["rows"]
    assert metrics.value("edge_agent_outbox_rows") > 20, "the drops' gap event waits too"
    dropped = metrics.value("edge_agent_outbox_dropped_samples_total")
    assert before["dropped"] <= dropped <= after["dropped"]
    age = metrics.value("edge_agent_outbox_oldest_sample_age_seconds")
    assert before["at"] - after["oldest"] <= age <= after["at"] - before["oldest"]
    assert metrics.value("edge_agent_mqtt_connected") == 0
    assert metrics.value("edge_agent_mqtt_sessions_total") == 0
    assert metrics.value("edge_agent_mqtt_connect_failures_total") >= 1
    assert metrics.value("edge_agent_outbox_bytes") > 0
    assert health == (200, "ok\n"), "a broker outage is no reason to restart the agent"


def _in_process_agent(tmp_path: Path, server: SimServer, health: dict | None = None) -> Agent:
    links, devices = detectors(server.tcp_port)
    path = write_station(tmp_path / "station.yaml", broker_port=1, links=links,
                         devices=devices[:1], health=health)
    return Agent(load_config(path))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_healthz_is_503_and_names_a_poller_thread_that_ended(tmp_path):
    server = detector_server()
    agent = _in_process_agent(tmp_path, server)
    agent.start()
    try:
        wait_until(lambda: agent.health.port is not None, 30, "the endpoint to listen")
        port = agent.health.port
        assert get(port, "/healthz") == (200, "ok\n")

        def die(*_args: object) -> None:
            raise SystemExit  # not an Exception: the poller's safety net lets it through

        agent.pollers[0].devices[0].driver.poll = die
        wait_until(lambda: not agent.pollers[0].thread.is_alive(), 30, "the poller to end")
        code, body = get(port, "/healthz")
        metrics = scrape(port)
        document = status(port)
    finally:
        agent.stop()
        server.stop()
    assert (code, body) == (503, "unhealthy: worker thread poll-gw has ended\n")
    assert metrics.value("edge_agent_healthy") == 0
    assert document["healthy"] is False and document["problems"] == [
        "worker thread poll-gw has ended"]


def test_healthz_is_503_while_the_outbox_writer_hangs_and_200_once_it_goes_on(
        tmp_path, monkeypatch):
    # 1 s, not the 5 s of service: the same path to the same 503, 4 s sooner
    monkeypatch.setattr(health_server, "OUTBOX_TIMEOUT_S", 1.0)
    server = detector_server()
    agent = _in_process_agent(tmp_path, server)
    agent.start()
    inside, gate = threading.Event(), threading.Event()

    def hang(_conn: object) -> None:
        inside.set()
        gate.wait(60)

    try:
        wait_until(lambda: agent.health.port is not None, 30, "the endpoint to listen")
        port = agent.health.port
        blocker = threading.Thread(target=agent.outbox._submit, args=(hang,), daemon=True)
        blocker.start()
        assert inside.wait(30)
        hung = get(port, "/healthz")
        gate.set()
        blocker.join(30)
        recovered = get(port, "/healthz")
    finally:
        gate.set()
        agent.stop()
        server.stop()
    assert hung == (503, "unhealthy: outbox not answering: outbox writer did not answer "
                         "within 1 s\n")
    assert recovered == (200, "ok\n")


def test_a_taken_port_is_logged_once_and_taken_when_it_is_free(tmp_path, caplog,
                                                                monkeypatch):
    caplog.set_level(logging.INFO, logger="edge_agent")
    # retries from 0.1 s, not the 2 s of service: the same retrying, without the wait
    monkeypatch.setattr(health_server, "BIND_RETRY_MIN_S", 0.1)
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    server = detector_server()
    agent = _in_process_agent(tmp_path, server, health={"port": taken})
    agent.start()
    try:
        wait_until(lambda: any("cannot listen" in r.getMessage() for r in caplog.records),
                   30, "the failed bind to be logged")
        assert agent.health.port is None
        assert not agent.dead_threads(), "the agent runs on without its endpoint"
        holder.close()
        wait_until(lambda: agent.health.port == taken, 60, "the endpoint to take the port")
        answer = get(taken, "/healthz")
    finally:
        holder.close()
        agent.stop()
        server.stop()
    assert answer == (200, "ok\n")
    failures = [r for r in caplog.records if "cannot listen" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.ERROR
    assert any("listening on" in r.getMessage() and "after" in r.getMessage()
               for r in caplog.records)


def test_unknown_paths_list_the_routes(tmp_path):
    server = detector_server()
    agent = _in_process_agent(tmp_path, server)
    agent.start()
    try:
        wait_until(lambda: agent.health.port is not None, 30, "the endpoint to listen")
        answer = get(agent.health.port, "/nothing-here")
    finally:
        agent.stop()
        server.stop()
    assert answer == (404, "/healthz\n/metrics\n/status\n/\n")  # "/": the page


def test_outbox_depth_counters_agree_with_a_full_count_through_drops_gaps_and_acks(tmp_path):
    """``depth`` keeps counts instead of scanning; they must match ``stats`` (a scan)
    whatever happened: retention drops around a claimed sample (two gap events), a
    store_error gap from failed appends, acknowledged samples and gaps, a restart."""
    path = tmp_path / "outbox.sqlite3"

    def agree(box: Outbox) -> None:
        depth, stats = box.depth(), box.stats()
        assert (depth.rows, depth.samples, depth.dropped_total, depth.oldest_acquired_at) \
            == (stats.rows, stats.samples, stats.dropped_total, stats.oldest_acquired_at)

    box = Outbox(path, Retention(max_rows=3, max_bytes=None, max_age_s=None))
    agree(box)
    for i in range(2):
        box.append(sample("a", i, T0 + timedelta(seconds=i)))
    claimed = box.claim(1, 1, 10_000)  # seq 2 in flight: drops go around it
    for i in range(2, 9):
        box.append(sample("a", i, T0 + timedelta(seconds=i)))
    agree(box)
    pages = box._submit(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
    box._submit(lambda conn: conn.execute(f"PRAGMA max_page_count={pages}"))
    big = Sample("b", T0, (Reading("b", "x" * 4000, 1, "", Quality.GOOD, T0),))
    with pytest.raises(OutboxError):
        for _ in range(20):
            box.append(big)
    box._submit(lambda conn: conn.execute("PRAGMA max_page_count=1073741823"))
    box.append(sample("b", 1, T0 + timedelta(seconds=20)))  # writes the store_error gap
    agree(box)
    assert box.stats().gaps == 3
    box.ack_many([claimed.msg_id])
    messages = list(iter(lambda: box.claim(0, 2, 10_000_000), None))
    for message in messages[::2]:  # some gap and some sample messages
        box.ack_many([message.msg_id])
    agree(box)
    box.close()
    box = Outbox(path, UNLIMITED)
    agree(box)
    box.close()


def test_histogram_buckets_are_cumulative_and_inclusive():
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 2.0):
        histogram.observe(value)
    snapshot = histogram.snapshot()
    assert (snapshot.cumulative, snapshot.count, snapshot.sum) == ((2, 3), 4, 2.65)


def test_health_endpoint_defaults_to_this_pc_only(tmp_path):
    config = load_config(CASES / "health_endpoint_valid" / "station.yaml", env={})
    assert config.health == HealthConfig(enabled=True, host="0.0.0.0", port=9200)
    minimal = (CASES / "qos_must_be_1" / "station.yaml").read_text().replace("  qos: 0\n", "")
    (tmp_path / "station.yaml").write_text(minimal)
    assert load_config(tmp_path / "station.yaml", env={}).health == HealthConfig(
        enabled=True, host="127.0.0.1", port=9108)
    disabled = load_config(CASES / "health_false_disables_the_endpoint" / "station.yaml", env={})
    assert disabled.health.enabled is False


def test_a_disabled_endpoint_is_not_started(tmp_path):
    server = detector_server()
    agent = _in_process_agent(tmp_path, server, health={"enabled": False})
    agent.start()
    try:
        wait_until(lambda: agent.pollers[0].devices[0].polls >= 2, 30, "two polls")
        assert agent.health.port is None and agent.health.thread.ident is None
        assert json.loads(json.dumps(agent.health.snapshot().to_json()))["healthy"]
    finally:
        agent.stop()
        server.stop()
