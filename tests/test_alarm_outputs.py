"""The local alarm action against a real pymodbus server whose coils and registers the
test reads: on at the first matching alarm, off at the last clear, retried when the
output module does not answer, the result logged; and written by the link's poller
between polls when detectors share the output module's link."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from edge_agent_drivers.modbus.settings import RegisterKind
from support.waiting import wait_until

from edge_agent.alarms.action import LinkOutputs, OutputThread
from edge_agent.alarms.engine import AlarmEngine
from edge_agent.alarms.events import AlarmEvent, EventKind
from edge_agent.alarms.rules import ChannelAlarms, LimitRule, RuleKind
from edge_agent.config.alarm_settings import AlarmAction
from edge_agent.config.schema import PollingPolicy, TcpLink
from edge_agent.link_clients import open_link_client
from edge_agent.model import Quality, Reading, Sample
from edge_agent.poller import LinkPoller
from edge_agent.tools.sim.simserver import SimServer, SimUnit

COIL, HOLDING = RegisterKind.COIL, RegisterKind.HOLDING
AT = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
IO_UNIT = 9


@pytest.fixture
def io_module() -> Iterator[SimServer]:
    server = SimServer([SimUnit(IO_UNIT, holding={0: 0, 1: 0, 2: 0}, coils={0: False,
                                                                        1: False})],
                       tcp_port=0).start()
    yield server
    server.stop()


def link_to(server: SimServer, name: str = "io") -> TcpLink:
    return TcpLink(name, "127.0.0.1", server.tcp_port, timeout_ms=300)


def event(kind: EventKind, level: int = 1, confirmed: bool = True,
          device: str = "h2s-1") -> AlarmEvent:
    return AlarmEvent(kind, device, "gas", "high", "high", 0 if kind is EventKind.CLEARED
                      else level, 12.0, "ppm", 10.0, AT, confirmed,
                      None if confirmed else "calibrating")


@pytest.fixture
def running(io_module: SimServer) -> Iterator[tuple[LinkOutputs, OutputThread]]:
    actions = [AlarmAction("beacon", "io", IO_UNIT, coil=0, retries=5),
               AlarmAction("siren", "io", IO_UNIT, coil=1, min_level=2, unconfirmed=False),
               AlarmAction("panel", "io", IO_UNIT, register=2, on_value=3, off_value=1)]
    outputs = LinkOutputs(link_to(io_module), actions)
    thread = OutputThread(outputs, open_link_client)
    thread.start()
    yield outputs, thread
    assert thread.stop()


def coils(server: SimServer) -> list[bool]:
    return server.get_bits(IO_UNIT, COIL, 0, 2)


def test_beacon_coil_goes_on_at_the_first_alarm_and_off_at_the_last_clear(
        io_module: SimServer, running: tuple[LinkOutputs, OutputThread],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge_agent")
    outputs, _ = running
    outputs.alarm_events([event(EventKind.RAISED)])
    wait_until(lambda: coils(io_module) == [True, False], 10, "the beacon coil ON")
    wait_until(lambda: io_module.get_words(IO_UNIT, HOLDING, 2) == [3], 10, "panel = 3")
    outputs.alarm_events([event(EventKind.RAISED, device="cl2-1")])
    outputs.alarm_events([event(EventKind.CLEARED)])  # cl2-1 still holds it on
    outputs.alarm_events([event(EventKind.CLEARED, device="cl2-1")])
    wait_until(lambda: io_module.get_words(IO_UNIT, HOLDING, 2) == [1], 10, "panel = 1")
    wait_until(lambda: coils(io_module) == [False, False], 10, "the beacon coil OFF")
    beacon = [(r.function_code, r.address) for r in io_module.writes(IO_UNIT)
              if r.address == 0]
    assert beacon == [(5, 0), (5, 0)]  # one ON, one OFF: the second alarm wrote nothing
    assert "alarm output beacon set ON (1 to coil 0 of unit 9 on link io) after 1 " \
           "attempt(s)" in caplog.text
    assert "alarm output beacon set OFF" in caplog.text


def test_siren_needs_a_confirmed_level_two_alarm(
        io_module: SimServer, running: tuple[LinkOutputs, OutputThread]) -> None:
    outputs, _ = running
    outputs.alarm_events([event(EventKind.RAISED, level=2, confirmed=False)])
    wait_until(lambda: coils(io_module)[0], 10, "the beacon coil ON")
    assert not coils(io_module)[1]
    outputs.alarm_events([event(EventKind.CONFIRMED, level=2)])
    wait_until(lambda: coils(io_module)[1], 10, "the siren coil ON once confirmed")
    outputs.alarm_events([event(EventKind.LOWERED, level=1)])
    wait_until(lambda: not coils(io_module)[1], 10, "the siren coil OFF at level 1")
    assert coils(io_module)[0]


def test_an_output_module_that_does_not_answer_is_retried_until_it_does(
        io_module: SimServer, running: tuple[LinkOutputs, OutputThread],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge_agent")
    outputs, _ = running
    io_module.mute(IO_UNIT)
    outputs.alarm_events([event(EventKind.RAISED)])
    wait_until(lambda: "alarm output beacon: writing ON failed" in caplog.text, 10,
               "a failed attempt")
    io_module.mute(IO_UNIT, False)
    wait_until(lambda: coils(io_module)[0], 20, "the beacon coil ON after retries")
    wait_until(lambda: "alarm output beacon set ON" in caplog.text, 10, "the result logged")
    assert "after 1 attempt(s)" not in next(line for line in caplog.text.splitlines()
                                            if "alarm output beacon set ON" in line)


def test_an_output_that_never_answers_is_given_up_and_logged(
        io_module: SimServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge_agent")
    outputs = LinkOutputs(link_to(io_module), [AlarmAction("horn", "io", IO_UNIT, coil=0,
                                                           retries=1)])
    thread = OutputThread(outputs, open_link_client)
    io_module.mute(IO_UNIT)
    thread.start()
    try:
        outputs.alarm_events([event(EventKind.RAISED)])
        wait_until(lambda: "alarm output horn could NOT be set ON" in caplog.text, 20,
                   "the output given up")
        assert outputs.writes_failed == 1 and not outputs.pending()
    finally:
        assert thread.stop()


def test_a_poller_writes_the_outputs_of_its_own_link_between_polls(
        io_module: SimServer, tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    """Detector and output module on one link: the poller owns the wire and writes."""
    from support.station import write_station

    from edge_agent.config.loader import load_config
    from edge_agent.driver import load_driver
    from edge_agent.store.outbox import Outbox

    caplog.set_level(logging.INFO, logger="edge_agent")
    io_module.units[1] = SimUnit(1, holding={0: 0, 1: 50, 2: 0})  # a detector, 5.0 ppm
    path = write_station(
        tmp_path / "station.yaml", broker_port=1883,
        links={"lan": {"type": "tcp", "host": "127.0.0.1", "port": io_module.tcp_port}},
        devices=[{"id": "h2s-1", "link": "lan", "unit_id": 1, "interval_s": 0.1,
                  "profile": "toxic-gas-detector",
                  "alarms": {"gas": {"high": {"limit": 10, "deadband": 1}}}}])
    config = load_config(path)
    action = AlarmAction("beacon", "lan", IO_UNIT, coil=0)
    outputs = LinkOutputs(config.links["lan"], [action])

    class Sink:
        def emit(self, events: list[AlarmEvent]) -> None:
            outputs.alarm_events(events)

    engine = AlarmEngine({"h2s-1": config.devices[0].alarms}, Sink())
    outbox = Outbox(tmp_path / "outbox.sqlite3", config.store.retention)
    poller = LinkPoller(config.links["lan"], [load_driver(config.devices[0])], outbox,
                        PollingPolicy(retries=0), threading.Event(), alarms=engine,
                        outputs=outputs)
    poller.start()
    try:
        io_module.set_words(1, HOLDING, 1, [150])  # 15.0 ppm
        wait_until(lambda: coils(io_module)[0], 10, "the beacon ON")
        io_module.set_words(1, HOLDING, 1, [20])
        wait_until(lambda: not coils(io_module)[0], 10, "the beacon OFF")
    finally:
        assert poller.stop()
        outbox.close()
    assert engine.active() == []
    threads = {t.name for t in threading.enumerate()}
    assert not any(name.startswith("alarm-out-") for name in threads)


def test_a_value_judged_in_the_engine_reaches_the_sink_with_its_quality() -> None:
    """The sink interface the outbox will implement gets every event once, in order."""
    got: list[AlarmEvent] = []

    class Sink:
        def emit(self, events: list[AlarmEvent]) -> None:
            got.extend(events)

    engine = AlarmEngine({"h2s-1": [ChannelAlarms("gas", (LimitRule(RuleKind.HIGH, 10),))]},
                         Sink())
    reading = Reading("h2s-1", "gas", 12.0, "ppm", Quality.SUSPECT, AT, "calibrating")
    engine.polled("h2s-1", Sample("h2s-1", AT, (reading,)), True, False)
    assert [(e.kind, e.confirmed, e.reason) for e in got] == [
        (EventKind.RAISED, False, "calibrating")]


def test_after_a_restart_restored_alarms_switch_the_beacon_on_again(
        io_module: SimServer, tmp_path) -> None:
    """What the outbox wiring will do at start: restore, then let the outputs follow."""
    from support.station import write_station

    from edge_agent.alarms.runtime import AlarmRuntime
    from edge_agent.config.loader import load_config

    path = write_station(
        tmp_path / "station.yaml", broker_port=1883,
        links={"bus": {"type": "tcp", "host": "127.0.0.1", "port": 1502},
               "io": {"type": "tcp", "host": "127.0.0.1", "port": io_module.tcp_port}},
        devices=[{"id": "h2s-1", "link": "bus", "unit_id": 1, "interval_s": 1,
                  "profile": "toxic-gas-detector", "alarms": {"gas": {"high": 10}}}])
    text = path.read_text()[:-2] + ',\n  "alarms": {"actions": [{"name": "beacon", ' \
        f'"link": "io", "unit_id": {IO_UNIT}, "coil": 0}}]}}\n}}\n'
    path.write_text(text)
    runtime = AlarmRuntime(load_config(path), ["bus"], open_link_client)
    assert runtime.outputs_for("bus") is None and runtime.outputs_for("io") is None
    assert runtime.engine.restore([event(EventKind.RAISED)]) == 1
    runtime.start()
    try:
        runtime.outputs_follow(runtime.engine.active())
        wait_until(lambda: coils(io_module)[0], 10, "the beacon ON again")
    finally:
        runtime.stop()


def test_a_failing_alarm_engine_never_stops_polling(io_module: SimServer, tmp_path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A bug in judging alarms is logged once and counted; samples keep being stored."""
    from support.station import write_station

    from edge_agent.config.loader import load_config
    from edge_agent.driver import load_driver
    from edge_agent.store.outbox import Outbox

    io_module.units[1] = SimUnit(1, holding={0: 0, 1: 50, 2: 0})
    path = write_station(
        tmp_path / "station.yaml", broker_port=1883,
        links={"lan": {"type": "tcp", "host": "127.0.0.1", "port": io_module.tcp_port}},
        devices=[{"id": "h2s-1", "link": "lan", "unit_id": 1, "interval_s": 0.05,
                  "profile": "toxic-gas-detector"}])
    config = load_config(path)

    class Broken:
        def polled(self, *args: object) -> None:
            raise RuntimeError("engine bug")

    outbox = Outbox(tmp_path / "outbox.sqlite3", config.store.retention)
    poller = LinkPoller(config.links["lan"], [load_driver(config.devices[0])], outbox,
                        PollingPolicy(retries=0), threading.Event(), alarms=Broken())
    poller.start()
    try:
        wait_until(lambda: poller.devices[0].samples_stored >= 3, 10, "three samples")
    finally:
        assert poller.stop()
        outbox.close()
    assert poller.alarm_errors >= 3
    assert caplog.text.count("unexpected error judging the alarms of h2s-1") == 1
