"""Heartbeats, the bounds they promise, and what the service supervisor tells systemd.

Worker threads here are real threads and the outbox a real one; only time is a clock the
test moves (``Clock``), so "late" never depends on the speed of the machine. The
datagrams go through a real AF_UNIX socket, as systemd receives them. The whole agent
under a NOTIFY_SOCKET, with a hung poller, is in test_service_watchdog.py.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from support.notify import NotifyListener
from support.station import write_station
from support.waiting import wait_until

from edge_agent.config.loader import load_config
from edge_agent.config.schema import Hj212Config, LinkProtocol, MqttConfig, Retention
from edge_agent.model import Quality, Reading, Sample
from edge_agent.sdnotify import Notifier, socket_address, watchdog_usec
from edge_agent.store.outbox import Outbox
from edge_agent.watchdog import (
    NAME_LOOKUP_S,
    SLACK_S,
    TEXT_WRITE_S,
    WRITER_BOUND_S,
    Heartbeat,
    ServiceSupervisor,
    poll_bound_s,
    stop_budget_s,
    waiting_for_watched_worker,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def in_thread(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


# -- heartbeats ---------------------------------------------------------------------------


def test_a_worker_is_stuck_only_once_past_the_progress_it_promised():
    clock = Clock()
    heartbeat = Heartbeat("poll-a", clock)
    promised = threading.Event()
    release = threading.Event()

    def worker() -> None:
        heartbeat.beat(5.0)
        promised.set()
        release.wait()  # alive, and doing nothing more: hung

    thread = in_thread(worker)
    promised.wait()
    clock.now += 5.0
    assert heartbeat.stuck(clock()) is None
    clock.now += 0.1
    stuck = heartbeat.stuck(clock())
    assert stuck is not None and not stuck.ended
    assert stuck.describe() == "poll-a stuck: no progress for 5.1 s (limit 5.0 s)"
    assert stuck.native_id == thread.native_id
    release.set()
    thread.join()


def test_an_idle_worker_waiting_for_work_is_never_stuck():
    clock = Clock()
    heartbeat = Heartbeat("outbox-writer", clock)
    idle = threading.Event()
    release = threading.Event()

    def writer() -> None:
        heartbeat.beat(1.0)
        heartbeat.idle()
        idle.set()
        release.wait()

    thread = in_thread(writer)
    idle.wait()
    clock.now += 10_000
    assert heartbeat.stuck(clock()) is None
    release.set()
    thread.join()


def test_a_worker_thread_that_ended_is_reported_as_ended():
    heartbeat = Heartbeat("forwarder", Clock())
    thread = in_thread(lambda: heartbeat.beat(60.0))
    thread.join()
    stuck = heartbeat.stuck(0.0)
    assert stuck is not None and stuck.ended
    assert stuck.describe() == "forwarder has ended"


def test_time_spent_waiting_for_the_writer_is_added_to_the_promise():
    clock = Clock()
    heartbeat = Heartbeat("poll-a", clock)
    waiting, release, done = threading.Event(), threading.Event(), threading.Event()
    end = threading.Event()

    def worker() -> None:
        heartbeat.beat(1.0)
        with waiting_for_watched_worker():
            waiting.set()
            release.wait()
        done.set()
        end.wait()

    thread = in_thread(worker)
    waiting.wait()
    clock.now += 500  # a very long commit: the writer's heartbeat answers for it
    assert heartbeat.stuck(clock()) is None
    release.set()
    done.wait()
    clock.now += 1.0
    assert heartbeat.stuck(clock()) is None  # the second of its own is still left
    clock.now += 0.1
    assert heartbeat.stuck(clock()) is not None
    end.set()
    thread.join()


def test_a_worker_blocked_on_a_busy_outbox_is_not_stuck_its_writer_is_busy(tmp_path):
    """A real outbox whose writer is busy in a long transaction (held here by a gate, as a
    slow disk would): the appending thread waits in the writer's queue, paused; the writer
    has a promise running. No lock timeout is involved, so a loaded machine cannot turn
    the wait into an error before the checks."""
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path, Retention())
    inside, gate = threading.Event(), threading.Event()

    def long_transaction(conn) -> None:
        inside.set()
        gate.wait(60)

    clock = Clock()
    heartbeat = Heartbeat("poll-a", clock)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    outcome: list[object] = []

    def worker() -> None:
        heartbeat.beat(0.5)
        outcome.append(outbox.append(
            Sample("a", at, (Reading("a", "gas", 1.0, "ppm", Quality.GOOD, at),))))

    busy = in_thread(lambda: outbox._submit(long_transaction))
    try:
        inside.wait(10)
        thread = in_thread(worker)
        wait_until(lambda: heartbeat.stuck(clock() + 3600) is None, 10,
                   "the worker to wait for the writer")
        # The writer, in its transaction, promised to finish it within its bound.
        assert outbox.heartbeat.stuck(time.monotonic() + WRITER_BOUND_S + 1) is not None
        assert not outcome and heartbeat.stuck(clock() + 3600) is None, \
            "the worker still waits, paused"
    finally:
        gate.set()
    busy.join()
    thread.join()
    assert outcome
    wait_until(lambda: outbox.heartbeat.stuck(time.monotonic() + 3600) is None, 10,
               "the writer to be idle again, unable to be late")
    outbox.close()


# -- bounds -------------------------------------------------------------------------------


def station(tmp_path, link: dict, channels: int = 1, **polling):
    device = {"id": "d", "link": "l", "unit_id": 1, "interval_s": 1,
              "channels": [{"name": f"c{i}", "address": i, "unit": "ppm"}
                           for i in range(channels)]}
    path = write_station(tmp_path / "station.yaml", links={"l": link}, devices=[device],
                         broker_port=1883, polling=polling)
    config = load_config(path)
    return config.devices[0], config.links["l"], config.polling


@pytest.mark.parametrize(("link", "channels", "retries", "bound_s"), [
    # attempts x (connect + requests x 4 x timeout) + retry waits + slack
    ({"type": "tcp", "host": "10.0.0.5", "timeout_ms": 1000}, 1, 0, 1 + 4 * 4 + SLACK_S),
    ({"type": "tcp", "host": "10.0.0.5", "timeout_ms": 1000}, 1, 1,
     2 * (1 + 4 * 4) + 0.2 + SLACK_S),
    ({"type": "tcp", "host": "10.0.0.5", "timeout_ms": 500}, 10, 0,
     0.5 + 22 * 4 * 0.5 + SLACK_S),
    ({"type": "tcp", "host": "gc.station.lan", "timeout_ms": 1000}, 1, 0,
     NAME_LOOKUP_S + 1 + 4 * 4 + SLACK_S),
])
def test_a_poll_may_take_every_request_at_its_worst(tmp_path, link, channels, retries,
                                                     bound_s):
    device, link_config, policy = station(tmp_path, link, channels, retries=retries,
                                          retry_wait_s=0.2)
    assert poll_bound_s(device, link_config, policy) == pytest.approx(bound_s)


def test_a_text_link_adds_its_write_timeout(tmp_path):
    link = {"type": "serial", "port": "/dev/ttyUSB0", "protocol": "text", "timeout_ms": 1000}
    device = {"id": "nox-1", "link": "l", "profile": "generic-text-analyzer", "unit_id": 1}
    path = write_station(tmp_path / "station.yaml", links={"l": link}, devices=[device],
                         broker_port=1883)
    config = load_config(path)
    text_link = config.links["l"]
    as_modbus = replace(text_link, protocol=LinkProtocol.MODBUS_RTU)
    text_bound = poll_bound_s(config.devices[0], text_link, config.polling)
    assert text_bound == pytest.approx(
        poll_bound_s(config.devices[0], as_modbus, config.polling) + TEXT_WRITE_S)


def test_a_clean_stop_may_take_the_grace_period_and_the_margin_the_unit_allows():
    assert stop_budget_s(MqttConfig(host="x")) == 30.0
    assert stop_budget_s(MqttConfig(host="x", shutdown_grace_s=60)) == 85.0
    # an HJ 212 platform: its answer timeout and its session's close
    assert stop_budget_s(Hj212Config("p", 9010, "MN1", "22", timeout_s=99)) == 134.0


def test_several_uplinks_stop_together_so_the_longest_grace_counts():
    assert stop_budget_s(MqttConfig(host="x", shutdown_grace_s=60),
                         MqttConfig(host="y", shutdown_grace_s=10)) == 85.0


# -- sd_notify ------------------------------------------------------------------------------


@dataclass
class AgentView:
    """Stands in for the Agent: what the supervisor reads."""

    heartbeats_: list[Heartbeat] = field(default_factory=list)
    pollers: list = field(default_factory=list)
    forwarder: SimpleNamespace = field(
        default_factory=lambda: SimpleNamespace(stats=SimpleNamespace(connected=True)))

    def heartbeats(self) -> list[Heartbeat]:
        return self.heartbeats_


@pytest.fixture
def listener(tmp_path):
    sock = NotifyListener(tmp_path / "notify.sock")
    yield sock
    sock.close()


def drain(listener: NotifyListener) -> list[dict[str, str]]:
    """Every datagram already queued (sent synchronously before this call)."""
    received = []
    listener.sock.setblocking(False)
    try:
        while True:
            data = listener.sock.recv(4096)
            received.append(dict(line.split("=", 1) for line in data.decode().split("\n")))
    except BlockingIOError:
        return received


def test_keepalives_go_at_half_the_watchdog_interval(listener):
    clock = Clock()
    supervisor = ServiceSupervisor(AgentView(), Notifier(listener.address), 30_000_000,
                                   clock)
    assert supervisor.keepalive_s == 15.0 and supervisor.tick_s == 1.0
    sent_at = []
    start = clock.now
    while clock.now < start + 120:
        supervisor.tick()
        sent_at += [clock.now for fields in drain(listener) if fields.get("WATCHDOG") == "1"]
        clock.now += supervisor.tick_s
    gaps = [b - a for a, b in zip(sent_at, sent_at[1:], strict=False)]
    assert gaps and all(14.0 <= gap <= 15.0 for gap in gaps), gaps


def test_a_stuck_worker_withholds_keepalives_until_it_goes_on(listener, caplog):
    clock = Clock()
    heartbeat = Heartbeat("poll-bus", clock)
    agent = AgentView([heartbeat])
    supervisor = ServiceSupervisor(agent, Notifier(listener.address), 2_000_000, clock)
    promised, release, again = threading.Event(), threading.Event(), threading.Event()
    end = threading.Event()

    def worker() -> None:
        heartbeat.beat(10.0)
        promised.set()
        release.wait()
        heartbeat.beat(10.0)
        again.set()
        end.wait()

    in_thread(worker)
    promised.wait()
    supervisor.ready()
    supervisor.tick()
    assert [f.get("READY") for f in drain(listener)] == ["1", None]
    clock.now += 11
    for _ in range(4):
        supervisor.tick()
        clock.now += supervisor.tick_s
    reports = drain(listener)
    assert len(reports) == 4
    assert all("WATCHDOG" not in r and "poll-bus stuck" in r["STATUS"] for r in reports)
    assert sum("worker poll-bus stuck" in m for m in caplog.messages) == 1, "logged once"
    release.set()
    again.wait()
    supervisor.tick()
    assert drain(listener)[-1]["WATCHDOG"] == "1"
    assert "worker poll-bus is making progress again" in caplog.messages
    end.set()


def test_no_watchdog_when_systemd_asked_another_process_for_it():
    assert watchdog_usec({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_usec({"WATCHDOG_USEC": "30000000"}) == 30_000_000
    assert watchdog_usec({"WATCHDOG_USEC": "30000000",
                          "WATCHDOG_PID": str(os.getpid())}) == 30_000_000
    assert watchdog_usec({}) is None


def test_the_abstract_socket_namespace_is_reached_with_an_at_sign():
    listener = NotifyListener()  # binds "\0name"; NOTIFY_SOCKET says "@name"
    try:
        assert socket_address(listener.address) == "\0" + listener.address[1:]
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": listener.address})
        assert notifier.send("READY=1", "STATUS=two\nlines")
        assert listener.next(5) == {"READY": "1", "STATUS": "two lines"}
    finally:
        listener.close()


def test_without_a_service_manager_nothing_is_sent_and_nothing_fails(tmp_path):
    assert not Notifier.from_environment({}).send("READY=1")
    gone = Notifier(str(tmp_path / "no-such.sock"))  # systemd went away
    assert not gone.send("WATCHDOG=1")


def test_stopping_asks_for_the_time_a_clean_stop_needs(listener):
    supervisor = ServiceSupervisor(AgentView(), Notifier(listener.address), None)
    supervisor.stopping(stop_budget_s(MqttConfig(host="x", shutdown_grace_s=60)))
    fields = listener.next(5)
    assert fields["STOPPING"] == "1" and fields["EXTEND_TIMEOUT_USEC"] == "85000000"
