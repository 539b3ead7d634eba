"""Reload (SIGHUP, what ``systemctl reload`` sends) of a real agent process while messages
are in flight on a dead uplink: an invalid file, an identical one, a changed one. Nothing
accepted is lost, the unchanged device is never interrupted, the changed one polls with
its new settings, and the forwarder moves to the new broker address."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
from collections import defaultdict

import pytest
from support.blackhole import BlackHoleProxy
from support.station import AgentProcess, accepted_seqs, write_station
from support.waiting import wait_until

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.tools.sim.simserver import SimServer, SimUnit


def claimed_rows(outbox) -> int:
    """Rows published (or about to be) and not yet acknowledged."""
    conn = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT COUNT(*) FROM outbox o JOIN claims c ON c.device_id = o.device_id "
            "AND o.id BETWEEN c.first_row AND c.last_row").fetchone()[0]
    finally:
        conn.close()


def waiting_seqs(outbox) -> set[tuple[str, int]]:
    conn = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    try:
        return set(conn.execute("SELECT device_id, seq FROM outbox WHERE kind = 'sample'"))
    finally:
        conn.close()


@pytest.fixture
def instruments():
    """Two Modbus TCP instruments, each on its own link, each behind a relay that counts
    the agent's connections (a restarted poller opens a new one)."""
    servers = [SimServer([SimUnit(1, holding={0: 7, 1: 40})]).start() for _ in range(2)]
    relays = [BlackHoleProxy(server.tcp_port).start() for server in servers]
    yield relays
    for relay in relays:
        relay.stop()
    for server in servers:
        server.stop()


def station(path, relays, mqtt_port, dev_b=None):
    links = {name: {"type": "tcp", "host": "127.0.0.1", "port": relay.port,
                    "timeout_ms": 3000} for name, relay in zip(("gw-a", "gw-b"), relays,
                                                                strict=True)}
    value = {"name": "v", "address": 0, "type": "uint16"}
    devices = [{"id": "dev-a", "link": "gw-a", "unit_id": 1, "interval_s": 0.1,
                "channels": [value]},
               {"id": "dev-b", "link": "gw-b", "unit_id": 1, "interval_s": 0.1,
                "channels": [value], **(dev_b or {})}]
    return write_station(path, links=links, devices=devices, broker_port=mqtt_port,
                         mqtt={"shutdown_grace_s": 1, "max_inflight": 5,
                               "max_samples_per_message": 3})


class Scenario:
    """One agent process on the station file ``config``, and what it has accepted."""

    def __init__(self, agent: AgentProcess, config, outbox) -> None:
        self.agent, self.config, self.outbox = agent, config, outbox

    def accepted(self, device: str) -> int:
        return accepted_seqs(self.outbox).get(device, 0)

    def polling_goes_on(self, what: str) -> None:
        targets = {d: self.accepted(d) + 5 for d in ("dev-a", "dev-b")}
        wait_until(lambda: all(self.accepted(d) >= n for d, n in targets.items()), 30,
                   f"both devices polled on after {what}")
        assert self.agent.alive(), self.agent.log()[-3000:]

    def reload_invalid(self, original: str) -> None:
        """Two mistakes: the log must list both, as ``edge-agent check`` words them."""
        self.config.write_text(original.replace('"link": "gw-b"', '"link": "nowhere"')
                               .replace('"interval_s": 0.1', '"interval_s": -1', 1))
        check = subprocess.run([sys.executable, "-m", "edge_agent", "check", str(self.config)],
                               capture_output=True, text=True, timeout=60)
        problems = [line for line in check.stderr.splitlines()
                    if line.startswith(str(self.config)) and "problem" not in line]
        assert check.returncode == 2 and len(problems) == 2, check.stderr
        self.agent.reload()
        wait_until(lambda: "refused: 2 problems found" in self.agent.log(), 30, "the refusal")
        for problem in problems:
            assert f"reload: {problem}" in self.agent.log()
        self.polling_goes_on("the invalid file")

    def reload_identical(self, original: str) -> None:
        self.config.write_text(original)
        self.agent.reload()
        wait_until(lambda: f"reload of {self.config}: nothing changed" in self.agent.log(), 30,
                   "the identical file to be read")
        self.polling_goes_on("the identical file")

    def reload_changed(self, instruments, broker_port: int) -> None:
        """dev-b: slower, scaled, one more channel; mqtt: the broker's own address."""
        station(self.config, instruments, broker_port, dev_b={"interval_s": 0.2, "channels": [
            {"name": "v", "address": 0, "type": "uint16", "scale": 0.5},
            {"name": "w", "address": 1, "type": "uint16"}]})
        self.agent.reload()
        wait_until(lambda: f"reload of {self.config}: devices changed: dev-b; pollers "
                           "restarted: gw-b; mqtt: reconnecting with the new settings"
                           in self.agent.log(), 30, "the changed file to be applied")


def test_reload_changed_invalid_identical_with_messages_in_flight_loses_nothing(
        tmp_path, broker, collector, instruments):
    uplink = BlackHoleProxy(broker.port).start()
    config = station(tmp_path / "station.yaml", instruments, uplink.port)
    original = config.read_text()
    outbox = tmp_path / "outbox.sqlite3"
    run = Scenario(AgentProcess(config, tmp_path / "agent.log").start().wait_running(),
                   config, outbox)
    try:
        collector.wait_for(lambda c: c.seqs("dev-a") and c.seqs("dev-b"), 30, "first data")
        uplink.freeze()  # from here on, published messages wait for a PUBACK in vain
        wait_until(lambda: claimed_rows(outbox) >= 5, 30, "messages in flight on the dead link")
        run.reload_invalid(original)
        run.reload_identical(original)
        changed_at = run.accepted("dev-b")
        run.reload_changed(instruments, broker.port)
        collector.wait_for(lambda c: any(r.device == "dev-b" and "w" in r.sample["values"]
                                         for r in c.samples), 60, "dev-b's new channel")
        a_after = run.accepted("dev-a")
        collector.wait_for(lambda c: c.has_seqs("dev-a", a_after), 60,
                           "dev-a's samples through the new broker address")
    finally:
        status = run.agent.terminate()
        uplink.stop()
    assert status == 0, run.agent.log()[-3000:]
    assert_nothing_lost(collector, outbox)
    relay_a, relay_b = instruments
    assert relay_a.connections == 1, "dev-a's poller must never have been restarted"
    assert relay_b.connections == 2, "dev-b's poller restarts exactly once, for the change"
    b = collector.first_deliveries("dev-b")
    before = [r.sample["values"] for r in b if r.sample["seq"] <= changed_at]
    after = [r.sample["values"] for r in b if "w" in r.sample["values"]]
    assert all(set(v) == {"v"} and v["v"]["value"] == 7 for v in before)
    assert after and all(v["v"]["value"] == 3.5 and v["w"]["value"] == 40 for v in after)
    assert min(r.sample["seq"] for r in b if "w" in r.sample["values"]) > changed_at
    log = run.agent.log()
    assert log.count("reload of ") == 3, "one line per reload"
    assert "edge-agent stopped" in log


def assert_nothing_lost(collector, outbox) -> None:
    """Every accepted sample arrived (or waits in the outbox for the next start), each
    seq is one sample, a resent sample kept its message id, and nothing was dropped."""
    final = accepted_seqs(outbox)
    left = waiting_seqs(outbox)
    for device, last in final.items():
        collector.wait_for(lambda c, d=device, n=last: set(range(1, n + 1)) <= (
            set(c.seqs(d)) | {s for dd, s in left if dd == d}), 60, f"{device} 1..{last}")
    ids_by_seq = defaultdict(set)
    msg_ids_by_sample = defaultdict(set)
    for received in collector.samples:
        ids_by_seq[(received.device, received.sample["seq"])].add(received.sample["id"])
        msg_ids_by_sample[received.sample["id"]].add(received.msg_id)
    assert all(len(ids) == 1 for ids in ids_by_seq.values()), "a seq always means one sample"
    assert all(len(ids) == 1 for ids in msg_ids_by_sample.values()), \
        "a sample in flight at the switch is re-sent in the same message"
    assert not collector.gaps, "nothing was dropped, so nothing may be announced as lost"


def test_reload_refuses_a_new_outbox_path_and_changes_nothing(tmp_path, broker, caplog,
                                                              instruments):
    caplog.set_level(logging.INFO, logger="edge_agent")
    path = station(tmp_path / "station.yaml", instruments, broker.port)
    agent = Agent(load_config(path))
    agent.start()
    try:
        pollers = list(agent.pollers)
        doc = json.loads(path.read_text())
        doc["store"]["path"] = str(tmp_path / "elsewhere.sqlite3")
        doc["devices"][0]["interval_s"] = 0.5
        path.write_text(json.dumps(doc))
        assert agent.reload() is False
        assert agent.pollers == pollers and agent.config.devices[0].interval_s == 0.1
        assert all(p.thread.is_alive() for p in pollers)
        assert not (tmp_path / "elsewhere.sqlite3").exists()
    finally:
        agent.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        f"reload: store.path changed from {tmp_path / 'outbox.sqlite3'} to "
        f"{tmp_path / 'elsewhere.sqlite3'}: the outbox cannot move while the agent runs; "
        "restart the service to use the new file (samples still waiting in "
        f"{tmp_path / 'outbox.sqlite3'} stay there)",
        f"reload of {path} refused; still running on the previous configuration"]


def test_reload_applies_retention_in_place_without_restarting_any_poller(
        tmp_path, caplog, instruments):
    from edge_agent.tools.sim.broker import free_port

    caplog.set_level(logging.INFO, logger="edge_agent")
    path = station(tmp_path / "station.yaml", instruments, free_port())  # no broker: all
    agent = Agent(load_config(path))                                    # stays in the outbox
    agent.start()
    try:
        wait_until(lambda: agent.outbox.stats().samples >= 20, 30, "a backlog")
        pollers = list(agent.pollers)
        doc = json.loads(path.read_text())
        doc["store"]["retention"] = {"max_rows": 10, "max_bytes": None, "max_age_s": None}
        doc["polling"]["retries"] = 2
        path.write_text(json.dumps(doc))
        assert agent.reload() is True
        wait_until(lambda: agent.outbox.stats().dropped_total > 0, 30,
                   "the new retention limit to drop the oldest samples")
        assert agent.outbox.stats().samples <= 10
        assert agent.pollers == pollers and all(p.thread.is_alive() for p in pollers)
    finally:
        agent.stop()
    assert [relay.connections for relay in instruments] == [1, 1], "no poller restarted"
    assert f"reload of {path}: polling policy updated; retention limits updated" in [
        r.getMessage() for r in caplog.records]


def test_reload_waits_for_a_slow_poll_while_the_service_keeps_getting_keepalives(
        tmp_path, broker):
    """A changed link whose device is mid-poll on a slow answer: the reload waits for that
    poll (it is legitimate: within the device's own timeout) rather than give up after a
    fixed time, and keeps ticking the service supervisor meanwhile, so systemd's watchdog
    never sees a silent agent during a reload."""
    server = SimServer([SimUnit(1, holding={0: 7})]).start()
    try:
        def write(scale: float):
            return write_station(
                tmp_path / "station.yaml", broker_port=broker.port,
                links={"slow": {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port,
                                "timeout_ms": 5000}},
                devices=[{"id": "slow-dev", "link": "slow", "unit_id": 1, "interval_s": 0.2,
                          "channels": [{"name": "a", "address": 0, "scale": scale}]}])

        agent = Agent(load_config(write(1.0)))
        agent.start()
        try:
            wait_until(lambda: accepted_seqs(tmp_path / "outbox.sqlite3").get("slow-dev", 0)
                       >= 1, 30, "a first sample")
            server.set_delay(1, 2.0)  # every answer now takes 2 s of the 5 s timeout
            served = len(server.requests)
            wait_until(lambda: len(server.requests) > served, 30, "a poll in progress")
            ticks = []
            write(2.0)
            assert agent.reload(tick=lambda: ticks.append(1)) is True
            assert ticks, "the supervisor was not ticked while the reload waited"
            assert agent.dead_threads() == []
            server.set_delay(1, 0.0)
            poller = next(p for p in agent.pollers if p.link.name == "slow")
            assert poller.thread.is_alive()
        finally:
            agent.stop()
    finally:
        server.stop()
