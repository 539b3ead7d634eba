"""Named uplinks from the station file, end to end (issue 12): the real ``edge-agent run``
on a YAML file whose ``uplinks:`` section the test writes, real Mosquittos, a real
pymodbus-backed simulator.

* A file with no ``mqtt:`` section, only named uplinks, feeds each uplink's broker, with
  a status topic per uplink, and ``/status`` and ``edge-agent status`` show each uplink.
* An uplink carrying a device subset never gets the other devices' samples; those leave
  the outbox as soon as the uplinks that carry them have them.
* SIGHUP after editing ``uplinks:``: an uplink added starts from the backlog, one removed
  releases what only it held, a changed broker reconnects that uplink alone, a changed
  ``devices:`` list takes effect without a reconnect.

Every wait is for an observable state (a message, a log line, a row count), never a clock.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest
from support.blackhole import BlackHoleProxy
from support.collector import Collector
from support.command import EDGE_AGENT
from support.health import status, status_when_up
from support.station import AgentProcess, accepted_seqs, outbox_rows
from support.uplinks_station import DEVICES, uplink, write_uplinks_station
from support.waiting import wait_until

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.health.snapshot import take_snapshot
from edge_agent.tools.sim.broker import Mosquitto, free_port

pytestmark = pytest.mark.real_parts



@pytest.fixture
def brokers(tmp_path: Path):
    """Three Mosquittos, ``a``, ``b`` and ``c``, each keeping its subscribers' sessions."""
    started = {name: Mosquitto(tmp_path / f"broker-{name}", persistence=True).start()
               for name in "abc"}
    yield started
    for broker in started.values():
        broker.stop()


def rows_of(outbox: Path, device: str) -> int:
    """Sample rows of ``device`` still in the outbox."""
    conn = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM outbox WHERE kind = 'sample' AND "
                            "device_id = ?", [device]).fetchone()[0]
    finally:
        conn.close()


def unique_seqs(collector: Collector, device: str) -> set[int]:
    return {r.sample["seq"] for r in collector.first_deliveries(device)}


def assert_has_every_sample(collector: Collector, outbox: Path, devices: tuple[str, ...],
                            where: str) -> None:
    """``collector`` has seq 1..last of each of ``devices``, once each by sample id."""
    accepted = accepted_seqs(outbox)
    for device in devices:
        last = accepted[device]
        wait_until(lambda d=device, n=last: unique_seqs(collector, d) >= set(range(1, n + 1)),
                   60, f"{device} seqs 1..{last} at {where}")
        ids = [r.sample["id"] for r in collector.first_deliveries(device)]
        assert len(ids) == len(set(ids)) == last, f"{where}: {device} has a hole or extra"
    assert not collector.invalid, collector.invalid[:3]


def drain(path: Path) -> None:
    """An in-process agent on ``path`` that does not poll delivers what the outbox holds
    until it is empty (every uplink of the file must be reachable)."""
    config = load_config(path)
    agent = Agent(config)
    agent.start()
    agent.stop_polling()
    try:
        wait_until(lambda: outbox_rows(config.store.path) == 0, 90, "the outbox to empty")
    finally:
        agent.stop()


def test_station_without_mqtt_section_feeds_each_named_uplink_and_shows_each_in_status(
        tmp_path, two_devices, brokers):
    """``city`` carries every device, ``province`` only dev-1; there is no ``mqtt:``."""
    city, province = brokers["a"], brokers["b"]
    health_port = free_port()  # edge-agent status reads the port from the station file
    path = write_uplinks_station(
        tmp_path / "station.yaml", two_devices,
        {"city": uplink(city.port), "province": uplink(province.port, ["dev-1"])},
        health_port=health_port)
    outbox = load_config(path).store.path
    collectors = {"city": Collector(city.port, session_name="city").start(),
                  "province": Collector(province.port, session_name="province").start()}
    agent = AgentProcess(path, tmp_path / "agent.log").start().wait_running()
    try:
        for device in DEVICES:
            collectors["city"].wait_for(lambda c, d=device: len(c.seqs(d)) >= 5, 30,
                                        f"{device} at city")
        collectors["province"].wait_for(lambda c: len(c.seqs("dev-1")) >= 5, 30,
                                        "dev-1 at province")
        for name, collector in collectors.items():
            collector.wait_for(lambda c: any(s["state"] == "online" for s in c.status), 30,
                               f"the station's status topic at {name}")
        wait_until(lambda: {u["name"]: u["connected"] for u in
                            status_when_up(health_port).get("uplinks", [])}
                   == {"city": True, "province": True}, 30, "/status to show both uplinks")
        assert status(health_port)["broker"]["connected"]  # the first uplink: city
        printed = subprocess.run([*EDGE_AGENT, "status", str(path)], capture_output=True,
                                 text=True, timeout=60)
        assert printed.returncode == 0, printed.stderr
        rows = {line.split()[0]: line for line in printed.stdout.splitlines()
                if line.startswith(("city ", "province "))}
        assert f"127.0.0.1:{city.port}" in rows["city"] and "NOT" not in rows["city"]
        assert f"127.0.0.1:{province.port}" in rows["province"]

        province.stop()  # dev-1 now waits for province; dev-2 goes on leaving the outbox
        wait_until(lambda: not {u["name"]: u["connected"] for u in
                                status(health_port)["uplinks"]}["province"], 30,
                   "province to be seen down")
        waiting_from = accepted_seqs(outbox)["dev-2"]
        wait_until(lambda: rows_of(outbox, "dev-1") >= 10, 30, "dev-1 to wait for province")
        collectors["city"].wait_for(lambda c: max(c.seqs("dev-2")) >= waiting_from + 5, 30,
                                    "city to keep delivering dev-2")
        assert agent.terminate() == 0
    finally:
        if agent.alive():
            agent.kill()
    assert "dev-2" not in {r.device for r in collectors["province"].samples}
    assert rows_of(outbox, "dev-1") >= 10, "dev-1 waits for province, which is down"
    assert "uplink default removed" not in agent.log(), "a default uplink that never was"

    config = load_config(path)  # province still down: city alone delivers what it carries
    drainer = Agent(config)
    drainer.start()
    drainer.stop_polling()
    try:
        wait_until(lambda: rows_of(outbox, "dev-2") == 0, 60,
                   "dev-2's rows to leave once city, their only carrier, has them")
        assert rows_of(outbox, "dev-1") >= 10, "dev-1 left before province had it"
        province.start()
        wait_until(lambda: outbox_rows(outbox) == 0, 60, "dev-1 to leave once province has it")
    finally:
        drainer.stop()
    try:
        assert_has_every_sample(collectors["city"], outbox, DEVICES, "city")
        assert_has_every_sample(collectors["province"], outbox, ("dev-1",), "province")
        assert "dev-2" not in {r.device for r in collectors["province"].samples}
    finally:
        for collector in collectors.values():
            collector.stop()


def _logged_count(log: str, pattern: str) -> int:
    found = re.search(pattern, log)
    assert found, f"{pattern!r} not in the agent's log"
    return int(found.group(1))


def test_sighup_adds_removes_moves_and_reroutes_uplinks_each_on_its_own(
        tmp_path, two_devices, brokers):
    """Uplinks ``a`` (every device, through a relay that counts its connections) and
    ``b``; then, each by editing the file and SIGHUP: ``c`` (dev-1 only) added while
    ``b``'s broker is down, ``b`` removed, ``c`` moved to another relay, ``c`` switched
    to dev-2. ``a`` keeps its one session throughout and gets every sample."""
    relay_a = BlackHoleProxy(brokers["a"].port).start()
    relay_c1 = BlackHoleProxy(brokers["c"].port).start()
    relay_c2 = BlackHoleProxy(brokers["c"].port).start()
    collectors = {name: Collector(broker.port, session_name=name).start()
                  for name, broker in brokers.items()}
    station = tmp_path / "station.yaml"

    def write(**uplinks: dict) -> Path:
        return write_uplinks_station(station, two_devices, uplinks)

    path = write(a=uplink(relay_a.port), b=uplink(brokers["b"].port))
    outbox = load_config(path).store.path
    agent = AgentProcess(path, tmp_path / "agent.log").start().wait_running()
    try:
        for name in "ab":
            collectors[name].wait_for(lambda c: len(c.seqs("dev-1")) >= 5, 30,
                                      f"data at {name}")
        assert relay_a.connections == 1

        brokers["b"].stop()  # a backlog builds up for b
        backlog_from = accepted_seqs(outbox)["dev-1"]
        wait_until(lambda: accepted_seqs(outbox)["dev-1"] >= backlog_from + 10, 30,
                   "samples waiting for b")
        write(a=uplink(relay_a.port), b=uplink(brokers["b"].port),
              c=uplink(relay_c1.port, ["dev-1"]))
        agent.reload()
        wait_until(lambda: "uplink c: starting from " in agent.log(), 30, "c to be added")
        started = _logged_count(agent.log(), r"uplink c: starting from (\d+) samples")
        assert started >= 10, "c did not start from the samples waiting for b"
        collectors["c"].wait_for(lambda c: set(range(backlog_from + 1, backlog_from + 11))
                                 <= set(c.seqs("dev-1")), 60,
                                 "c to deliver the backlog accepted before it was added")

        write(a=uplink(relay_a.port), c=uplink(relay_c1.port, ["dev-1"]))
        agent.reload()
        wait_until(lambda: "uplinks removed (b): " in agent.log(), 30, "b to be removed")
        assert "uplink b removed: its " in agent.log()
        released = _logged_count(agent.log(), r"uplinks removed \(b\): (\d+) row\(s\)")
        assert released > 0, "b's backlog, which a and c already had, was not released"

        write(a=uplink(relay_a.port), c=uplink(relay_c2.port, ["dev-1"]))
        agent.reload()
        wait_until(lambda: relay_c2.connections == 1, 30, "c to connect through its new relay")
        assert "uplink c: reconnecting with the new settings" in agent.log()
        seen = max(collectors["c"].seqs("dev-1"))
        collectors["c"].wait_for(lambda c: max(c.seqs("dev-1")) >= seen + 5, 30,
                                 "c to deliver on its new session")

        write(a=uplink(relay_a.port), c=uplink(relay_c2.port, ["dev-2"]))
        agent.reload()
        wait_until(lambda: "uplinks carrying other devices: c" in agent.log(), 30,
                   "the reload's line to name c's new devices")
        switched_at = accepted_seqs(outbox)["dev-2"]
        collectors["c"].wait_for(lambda c: max(c.seqs("dev-2"), default=0) >= switched_at + 5,
                                 30, "dev-2 at c once c carries it")
        assert relay_c2.connections == 1, "a changed devices: list made c reconnect"
        assert relay_c1.connections == 1
        assert relay_a.connections == 1, "a reconnected although its settings never changed"
        assert "uplink a: reconnecting" not in agent.log(), "a reload touched a"
        assert agent.terminate() == 0
    finally:
        if agent.alive():
            agent.kill()
    drain(path)
    try:
        assert relay_a.connections == 2  # the drainer's own session, nothing more
        assert_has_every_sample(collectors["a"], outbox, DEVICES, "a")
        assert not {r.device for r in collectors["c"].samples} - set(DEVICES)
    finally:
        for relay in (relay_a, relay_c1, relay_c2):
            relay.stop()
        for collector in collectors.values():
            collector.stop()


def test_reload_that_drops_the_mqtt_section_leaves_the_named_uplink_serving_alone(
        tmp_path, two_devices, brokers, caplog):
    """A station moving from ``mqtt:`` plus ``city`` to ``city`` alone (no ``mqtt:``),
    while the default uplink's broker is black-holed with messages in flight: the default
    uplink stops, what only it held is released, and ``city`` (now the first uplink,
    whose broker ``/status`` shows) delivers everything without a new session, and the
    outbox empties (a row city acknowledged during the removal once stayed for good)."""
    caplog.set_level(logging.INFO)
    home, city = brokers["a"], brokers["b"]
    relay = BlackHoleProxy(city.port).start()  # counts city's sessions
    station = tmp_path / "station.yaml"
    home_relay = BlackHoleProxy(home.port).start()
    path = write_uplinks_station(station, two_devices, {"city": uplink(relay.port)},
                                 mqtt_port=home_relay.port)
    collector = Collector(city.port, session_name="city").start()
    agent = Agent(load_config(path))
    agent.start()
    try:
        collector.wait_for(lambda c: len(c.seqs("dev-1")) >= 5, 30, "data at city")
        home_relay.freeze()  # default's messages stay in flight, unacknowledged
        wait_until(lambda: agent.uplinks["default"].health().in_flight > 0, 30,
                   "default to have messages in flight")
        write_uplinks_station(station, two_devices, {"city": uplink(relay.port)})
        assert agent.reload()
        assert "uplinks stopped: default" in caplog.text
        assert list(agent.uplinks) == ["city"]
        assert agent.forwarder is agent.uplinks["city"]
        snapshot = take_snapshot(agent.health_view(), 0.0, 0)
        assert snapshot.broker.port == relay.port
        agent.stop_polling()
        wait_until(lambda: agent.outbox.stats().rows == 0, 60, "city alone to drain")
        assert relay.connections == 1, "city reconnected although only mqtt: went away"
    finally:
        agent.stop()
        relay.stop()
        home_relay.stop()
    try:
        assert_has_every_sample(collector, load_config(path).store.path, DEVICES, "city")
    finally:
        collector.stop()
