"""Two uplinks on two real Mosquittos, fed by a real pymodbus-backed simulator (issue 12).

The contract holds per uplink: each subscriber gets every accepted sample (de-duplicated
by id, ``seq`` without a hole per device), one uplink down or black-holed does not stop
the other, and the outbox empties once both have everything. Every wait is for an
observable state, never a clock.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from support.blackhole import BlackHoleProxy
from support.collector import Collector
from support.station import AgentProcess, accepted_seqs, outbox_rows
from support.uplinks_station import DEVICES, uplink, write_uplinks_station
from support.waiting import wait_until

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.config.schema import StationConfig
from edge_agent.tools.sim.simserver import SimServer

pytestmark = pytest.mark.real_parts




def station_file(tmp_path: Path, server: SimServer, default_port: int,
                 uplinks: dict[str, int] | None = None) -> Path:
    """The station file: ``mqtt:`` (the uplink named ``default``) to ``default_port`` and
    an ``uplinks:`` entry per name, to its port, each carrying every device."""
    return write_uplinks_station(tmp_path / "station.yaml", server,
                                 {name: uplink(port) for name, port in (uplinks or {}).items()},
                                 mqtt_port=default_port)


def two_uplinks(tmp_path: Path, server: SimServer, default_port: int,
                city_port: int) -> StationConfig:
    """The ``mqtt:`` section's uplink (``default``) and ``city``, both carrying all."""
    return load_config(station_file(tmp_path, server, default_port, {"city": city_port}))


def unique_seqs(collector: Collector, device: str) -> set[int]:
    return {r.sample["seq"] for r in collector.first_deliveries(device)}


def assert_everything_arrived(collectors: dict[str, Collector], outbox: Path) -> None:
    """Each uplink's subscriber has every accepted sample of every device, exactly once
    after de-duplication by sample id."""
    accepted = accepted_seqs(outbox)
    assert set(accepted) == set(DEVICES)
    for name, collector in collectors.items():
        for device, last in accepted.items():
            wait_until(lambda c=collector, d=device, n=last: unique_seqs(c, d)
                       >= set(range(1, n + 1)), 60, f"{device} seqs 1..{last} at {name}")
            ids = [r.sample["id"] for r in collector.first_deliveries(device)]
            assert len(ids) == len(set(ids)) == last, f"{name}: {device} has a hole or extra"


def test_one_uplink_down_and_one_black_holed_each_still_gets_every_sample(
        tmp_path, two_devices, two_brokers):
    home, city_broker = two_brokers
    proxy = BlackHoleProxy(city_broker.port).start()  # the city uplink's radio link
    collectors = {"default": Collector(home.port, session_name="home").start(),
                  "city": Collector(city_broker.port, session_name="city").start()}
    config = two_uplinks(tmp_path, two_devices, home.port, proxy.port)
    agent = Agent(config)
    agent.start()
    default, city = agent.uplinks["default"].health(), agent.uplinks["city"].health()
    try:
        for collector in collectors.values():
            collector.wait_for(lambda c: len(c.seqs("dev-1")) >= 5, 30, "data on both")

        home.stop()  # the default uplink's broker is gone for a while
        wait_until(lambda: not default.connected, 30, "the default uplink to notice")
        seen = len(unique_seqs(collectors["city"], "dev-1"))
        collectors["city"].wait_for(lambda c: len(unique_seqs(c, "dev-1")) >= seen + 20, 60,
                                    "city to keep delivering while default is down")
        assert not default.connected, "the default broker came back by itself"
        home.start()

        wait_until(lambda: default.connected, 60, "the default uplink to reconnect")
        proxy.freeze()  # city is black-holed: nothing passes, no FIN, no RST
        relayed_at_freeze = proxy.relayed_bytes
        seen = len(unique_seqs(collectors["default"], "dev-1"))
        collectors["default"].wait_for(
            lambda c: len(unique_seqs(c, "dev-1")) >= seen + 20, 60,
            "default to keep delivering (its backlog and new samples) while city is silent")
        assert proxy.relayed_bytes == relayed_at_freeze, "the black hole let data through"
        wait_until(lambda: not city.connected, 60, "keepalive to notice the black hole")
        proxy.thaw()

        wait_until(lambda: city.connected, 60, "the city uplink to reconnect")
        agent.stop_polling()
        wait_until(lambda: agent.outbox.stats().rows == 0, 90, "the outbox to empty")
        assert city.acknowledged > 0 and default.acknowledged > 0
    finally:
        agent.stop()
        proxy.stop()
    try:
        assert_everything_arrived(collectors, config.store.path)
    finally:
        for collector in collectors.values():
            collector.stop()


def test_an_uplink_added_by_reload_starts_from_the_samples_still_waiting(
        tmp_path, two_devices, two_brokers, caplog):
    """Adding ``city`` to the station file while ``default`` is down: it starts from the
    backlog, and when removed again it releases what only it held, without touching
    ``default``."""
    caplog.set_level(logging.INFO)
    home, city_broker = two_brokers
    home.stop()
    path = station_file(tmp_path, two_devices, home.port)
    config = load_config(path)
    agent = Agent(config)
    agent.start()
    collector = Collector(city_broker.port, session_name="city").start()
    try:
        wait_until(lambda: accepted_seqs(config.store.path).get("dev-1", 0) >= 5, 30,
                   "samples waiting for the stopped broker")
        station_file(tmp_path, two_devices, home.port, {"city": city_broker.port})
        assert agent.reload()
        assert "uplink city: starting from " in caplog.text
        assert list(agent.uplinks) == ["default", "city"]
        collector.wait_for(lambda c: c.has_seqs("dev-1", 5), 60, "the backlog at city")
        default_uplink = agent.uplinks["default"]
        station_file(tmp_path, two_devices, home.port)
        assert agent.reload()  # city removed again
        assert list(agent.uplinks) == ["default"] and agent.forwarder is default_uplink
        assert "uplink city removed" in caplog.text
        home.start()
        agent.stop_polling()
        wait_until(lambda: agent.outbox.stats().rows == 0, 60, "default to drain alone")
    finally:
        agent.stop()
        collector.stop()


def test_unacknowledged_rows_of_both_uplinks_resent_after_sigkill(tmp_path, two_devices,
                                                                   two_brokers):
    """``edge-agent run`` on a station file with ``mqtt:`` and ``uplinks: city`` is
    SIGKILLed while city is black-holed and restarted: each subscriber still gets every
    sample. An in-process agent that does not poll then drains what was left, and the
    outbox empties."""
    home, city_broker = two_brokers
    proxy = BlackHoleProxy(city_broker.port).start()
    collectors = {"default": Collector(home.port, session_name="home").start(),
                  "city": Collector(city_broker.port, session_name="city").start()}
    path = station_file(tmp_path, two_devices, home.port, {"city": proxy.port})
    outbox = load_config(path).store.path

    def spawn(log_name: str) -> AgentProcess:
        return AgentProcess(path, tmp_path / log_name).start().wait_running()

    agent = spawn("agent-1.log")
    try:
        for collector in collectors.values():
            collector.wait_for(lambda c: len(c.seqs("dev-1")) >= 5, 30, "data on both")
        proxy.freeze()
        seen = len(unique_seqs(collectors["default"], "dev-1"))
        collectors["default"].wait_for(lambda c: len(unique_seqs(c, "dev-1")) >= seen + 10,
                                       30, "more data at default while city is silent")
        agent.kill()
        proxy.thaw()
        agent = spawn("agent-2.log")
        wait_until(lambda: all(unique_seqs(c, "dev-1") >= set(range(1, seen + 11))
                               for c in collectors.values()), 90,
                   "both subscribers to have what was accepted before the kill")
        assert agent.terminate() == 0
    finally:
        if agent.alive():
            agent.kill()
        proxy.stop()
    drain = Agent(load_config(station_file(tmp_path, two_devices, home.port,
                                           {"city": city_broker.port})))
    drain.start()
    drain.stop_polling()  # the samples in the outbox, and no new ones
    try:
        wait_until(lambda: outbox_rows(outbox) == 0, 90, "the outbox to empty")
    finally:
        drain.stop()
    try:
        assert_everything_arrived(collectors, outbox)
    finally:
        for collector in collectors.values():
            collector.stop()


def test_metrics_and_status_show_each_uplink_on_its_own(tmp_path, two_devices, two_brokers):
    """``city`` down, ``default`` up: the per-uplink series and the status table say
    which one waits, and how much; the unlabelled series stay the first uplink's."""
    from prometheus_client.parser import text_string_to_metric_families

    from edge_agent.health import metrics
    from edge_agent.health.snapshot import take_snapshot
    from edge_agent.tools.ops.status import live_lines

    home, city_broker = two_brokers
    city_broker.stop()
    config = two_uplinks(tmp_path, two_devices, home.port, city_broker.port)
    agent = Agent(config)
    agent.start()
    collector = Collector(home.port, session_name="home").start()
    try:
        collector.wait_for(lambda c: len(c.seqs("dev-1")) >= 5, 30, "data at default")
        agent.stop_polling()
        default = agent.uplinks["default"].health()
        wait_until(lambda: agent.uplinks["default"].depth().backlog == 0 and
                   default.in_flight == 0, 30, "default to deliver everything")
        snapshot = take_snapshot(agent.health_view(), 0.0, 0)
    finally:
        agent.stop()
        collector.stop()
    values = {(s.name, s.labels.get("uplink")): s.value
              for family in text_string_to_metric_families(metrics.render(snapshot))
              for s in family.samples}
    assert values[("edge_agent_uplink_connected", "default")] == 1
    assert values[("edge_agent_uplink_connected", "city")] == 0
    assert values[("edge_agent_uplink_backlog_samples", "default")] == 0
    assert values[("edge_agent_uplink_backlog_samples", "city")] == snapshot.outbox.depth.samples
    assert values[("edge_agent_uplink_backlog_samples", "city")] >= 10
    assert values[("edge_agent_uplink_oldest_waiting_age_seconds", "city")] > 0
    assert values[("edge_agent_mqtt_connected", None)] == 1  # the first uplink, as before
    text = "\n".join(live_lines(snapshot.to_json(), "http://x", snapshot.taken_at))
    city_row = next(line for line in text.splitlines() if line.startswith("city "))
    assert "NOT connected" in city_row and f"127.0.0.1:{city_broker.port}" in city_row
    assert str(int(values[("edge_agent_uplink_backlog_samples", "city")])) in city_row.split()


def test_the_watchdog_watches_every_uplinks_thread(tmp_path, two_devices):
    """Each uplink's thread has a heartbeat the service watchdog checks, and one that
    ended is named among the dead threads (the agent then stops to be restarted)."""
    config = two_uplinks(tmp_path, two_devices, 1, 2)  # never started: no broker needed
    agent = Agent(config)
    try:
        names = [beat.name for beat in agent.heartbeats()]
        assert {"forwarder", "forwarder-city"} <= set(names)
        city = agent.uplinks["city"]
        city.thread.run = lambda: None  # a thread that ends at once, as a bug would end it
        city.thread.start()
        city.thread.join()
        assert agent.dead_threads() == ["forwarder-city"]
    finally:
        agent.outbox.close()
