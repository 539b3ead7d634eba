"""A dead detector on a shared RS-485 bus is degraded, then marked down, and polled less
often, so the live devices on the same bus keep being polled between its attempts."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from itertools import pairwise

import pytest
from edge_agent_drivers.modbus.protocol import pymodbus_client
from support.drainclock import InstantDrain
from support.station import write_station
from support.waiting import wait_until

from edge_agent.config.loader import load_config
from edge_agent.config.schema import Retention
from edge_agent.driver import load_driver
from edge_agent.poller import DOWN_AFTER_FAILED_POLLS, DeviceHealth, LinkPoller, health_after
from edge_agent.store.outbox import Outbox
from edge_agent.tools.sim.ptypair import PtyPair
from edge_agent.tools.sim.simserver import SimServer, SimUnit

INTERVAL_S = 0.05
LIVE, DEAD = (1, 2), 3  # unit ids
POLLS_WHILE_DOWN = 3  # backoff periods of the dead unit observed after it is marked down
# Requests each live unit receives between two requests to the dead unit once it is down:
# its backoff (0.4-0.5 s) over the live interval (0.05 s), measured 8-10. With no backoff
# for a failing device it is 1. A live poll would have to take about 65 ms (a pty
# exchange takes a few) for this to fall short, so the count does not depend on the speed
# of the machine. (The periods are a fifth of a station's, so the test waits ~3 s, not 8.)
MIN_LIVE_REQUESTS_PER_BACKOFF = 3


def polls_of(units: list[int], unit: int) -> list[tuple[int, int]]:
    """(position, number of requests in a row) of each poll of ``unit`` in a bus's request
    log, given as the unit id of each request: the attempts of one poll follow each other,
    as one poller thread owns the bus. (Two polls with no other request between them
    count as one poll of two attempts.)"""
    polls: list[tuple[int, int]] = []
    for position, asked in enumerate(units):
        if asked != unit:
            continue
        if polls and sum(polls[-1]) == position:
            polls[-1] = (polls[-1][0], polls[-1][1] + 1)
        else:
            polls.append((position, 1))
    return polls


def fewest_live_requests_between(units: list[int], polls: list[tuple[int, int]]) -> list[int]:
    """For each pair of consecutive ``polls`` (of the dead unit), the requests the
    least-asked live unit received between them."""
    between = [Counter(units[start + count:next_start])
               for (start, count), (next_start, _) in pairwise(polls)]
    return [min(asked[unit] for unit in LIVE) for asked in between]


@pytest.mark.parametrize(("failures", "health"), [
    (0, DeviceHealth.OK), (1, DeviceHealth.DEGRADED), (2, DeviceHealth.DEGRADED),
    (3, DeviceHealth.DOWN), (50, DeviceHealth.DOWN)])
def test_health_follows_consecutive_failed_polls(failures, health):
    assert health_after(failures) is health


def test_dead_device_on_shared_bus_is_tried_once_per_backoff_while_the_others_keep_going(
        tmp_path, caplog, monkeypatch):
    """Counted in the requests the bus carried, not in seconds: once the dead unit stops
    answering, each of its polls is one request (not its 5 attempts), and between two of
    them each live unit is asked several times (its backoff, not its interval). The dead
    unit is muted, so nothing can arrive late: the drain after each of its timeouts does
    not wait its real 100 ms (InstantDrain)."""
    caplog.set_level(logging.INFO, logger="edge_agent")
    monkeypatch.setattr(pymodbus_client, "drain_clock", InstantDrain())
    detector = {"interval_s": INTERVAL_S, "link": "bus",
                "channels": [{"name": "gas", "address": 0, "unit": "ppm"}]}
    with PtyPair() as pty:
        path = write_station(
            tmp_path / "station.yaml", broker_port=1883,
            # the live units' timeout is long (a loaded machine must not fail them); the
            # dead one's own is shorter, so only its own can explain its 150 ms
            links={"bus": {"type": "serial", "port": pty.agent_path, "timeout_ms": 500}},
            devices=[{**detector, "id": "det-1", "unit_id": 1},
                     {**detector, "id": "det-2", "unit_id": 2},
                     # the dead one has its own timeout and more retries
                     {**detector, "id": "det-3", "unit_id": DEAD, "timeout_ms": 150,
                      "retries": 2}],
            polling={"retries": 1, "retry_wait_s": 0.05, "backoff_initial_s": 0.1,
                     "backoff_max_s": 0.5})
        config = load_config(path)
        server = SimServer([SimUnit(unit, holding={0: 10 * unit}) for unit in (1, 2, 3)],
                           serial_port=pty.device_path).start()
        server.mute(DEAD)
        outbox = Outbox(tmp_path / "o.sqlite3", Retention(None, None, None))
        stop = threading.Event()
        poller = LinkPoller(config.links["bus"], [load_driver(d) for d in config.devices],
                            outbox, config.polling, stop)
        live, dead = poller.devices[:2], poller.devices[2]
        wanted_polls = DOWN_AFTER_FAILED_POLLS + POLLS_WHILE_DOWN
        poller.start()
        try:
            wait_until(lambda: len(polls_of([r.unit_id for r in server.requests], DEAD))
                       >= wanted_polls, 60, f"{wanted_polls} polls of the dead unit")
        finally:
            stop.set()
            poller.thread.join(timeout=10)
            server.stop()
            outbox.close()
    units = [request.unit_id for request in server.requests]
    polls = polls_of(units, DEAD)
    assert polls[0][1] == 3, "while it counted as answering, it got its own 2 retries"
    assert [count for _, count in polls[1:]] == [1] * (len(polls) - 1), (
        f"requests per poll of the dead unit, after its first: {polls[1:]}")
    # from the poll that marked it down: one request to it per backoff period
    live_per_dead = fewest_live_requests_between(units, polls[DOWN_AFTER_FAILED_POLLS - 1:])
    assert min(live_per_dead) >= MIN_LIVE_REQUESTS_PER_BACKOFF, (
        f"requests to the least-asked live unit per request to the dead one: {live_per_dead}")
    assert all(s.health is DeviceHealth.OK and not s.errors for s in live)
    assert dead.health is DeviceHealth.DOWN
    assert dead.entered == {"degraded": 1, "down": 1}
    assert "no answer within 150 ms" in (dead.last_error or "")  # its own timeout
    messages = [r.getMessage() for r in caplog.records if "det-3" in r.getMessage()]
    assert len([m for m in messages if "not answering after 3 attempt(s)" in m]) == 1
    assert len([m for m in messages if "marked down" in m]) == 1
    assert not any("det-1" in r.getMessage() or "det-2" in r.getMessage()
                   for r in caplog.records if r.levelno >= logging.WARNING)


def test_device_answering_again_is_ok_and_logged_once(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edge_agent")
    with PtyPair() as pty:
        path = write_station(
            # 300 ms: an answer after the unmute, delayed by a loaded machine (seen at
            # 100 ms with 4 test processes on 2 cores), must not count as a new failure
            tmp_path / "station.yaml", broker_port=1883,
            links={"bus": {"type": "serial", "port": pty.agent_path, "timeout_ms": 300}},
            devices=[{"id": "det-1", "link": "bus", "unit_id": 1, "interval_s": 0.05,
                      "channels": [{"name": "gas", "address": 0}]}],
            polling={"retries": 0, "backoff_initial_s": 0.05, "backoff_max_s": 0.1})
        config = load_config(path)
        server = SimServer([SimUnit(1, holding={0: 5})], serial_port=pty.device_path).start()
        server.mute(1)
        outbox = Outbox(tmp_path / "o.sqlite3", Retention(None, None, None))
        stop = threading.Event()
        poller = LinkPoller(config.links["bus"], [load_driver(config.devices[0])], outbox,
                            config.polling, stop)
        state = poller.devices[0]
        poller.start()
        try:
            wait_until(lambda: state.health is DeviceHealth.DOWN, 30, "det-1 marked down")
            server.mute(1, False)
            wait_until(lambda: state.health is DeviceHealth.OK, 30, "det-1 answering again")
        finally:
            stop.set()
            poller.thread.join(timeout=10)
            server.stop()
            outbox.close()
    assert state.entered == {"degraded": 1, "down": 1}
    assert state.consecutive_failures == 0
    again = [r for r in caplog.records if "answering again" in r.getMessage()]
    assert len(again) == 1 and again[0].levelno == logging.INFO
