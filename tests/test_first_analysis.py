"""An instrument that has made no analysis since it powered up holds 0 in its time
registers. With a ``timestamp`` trigger that is no analysis: nothing is published until a
real time appears (it once went out as a GOOD FTIR measurement of 1970 with every value 0,
and CI caught it when the agent's first poll beat the simulator's first measurement)."""

from __future__ import annotations

from datetime import UTC, datetime

from edge_agent_drivers.modbus.settings import InstrumentClock, RegisterKind, TimeFormat
from edge_agent_drivers.modbus.trigger import no_analysis_yet
from support.station import write_station

from edge_agent.config.loader import load_config
from edge_agent.driver import load_driver
from edge_agent.link_clients import open_link_client
from edge_agent.tools.sim.images import FTIR_COMPONENTS, FtirMeasurement, ftir_image
from edge_agent.tools.sim.simserver import SimServer, SimUnit

MEASURED = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


def test_time_registers_all_zero_mean_no_analysis_yet() -> None:
    unix = InstrumentClock(TimeFormat.UNIX, ("t",))
    fields = InstrumentClock(TimeFormat.FIELDS, ("y", "mo", "d", "h", "mi", "s"))
    assert no_analysis_yet(unix, {"t": 0})
    assert not no_analysis_yet(unix, {"t": 1795003200})
    assert not no_analysis_yet(unix, {"t": None})  # unreadable is not "none yet"
    assert no_analysis_yet(fields, dict.fromkeys(("y", "mo", "d", "h", "mi", "s"), 0))
    assert not no_analysis_yet(fields, {"y": 26, "mo": 0, "d": 0, "h": 0, "mi": 0, "s": 0})


def test_ftir_before_its_first_measurement_publishes_nothing_then_each_one_once(tmp_path):
    with SimServer([SimUnit(3)]) as server:
        config = load_config(write_station(
            tmp_path / "station.yaml", broker_port=1883,
            links={"lan": {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port,
                           "timeout_ms": 500}},
            devices=[{"id": "ftir-1", "link": "lan", "unit_id": 3,
                      "profile": "generic-ftir"}]))
        driver = load_driver(config.devices[0])
        client = open_link_client(config.links["lan"])
        try:
            before = [driver.poll(client, datetime.now(UTC)) for _ in range(3)]
            values = [1.0 + n for n in range(len(FTIR_COMPONENTS))]
            server.set_words(3, RegisterKind.INPUT, 0,
                             ftir_image(FtirMeasurement(MEASURED, values, 0)))
            first = driver.poll(client, datetime.now(UTC))
            assert first is not None
            driver.after_commit(client, first)
            again = driver.poll(client, datetime.now(UTC))
        finally:
            client.close()
    assert before == [None, None, None]
    assert first.instrument_time == MEASURED
    assert again is None


def test_gc_before_its_first_cycle_publishes_nothing(tmp_path):
    """generic-gc (a ``counter`` trigger with a clock): counter and time registers at 0
    are no analysis either."""
    with SimServer([SimUnit(1)]) as server:
        config = load_config(write_station(
            tmp_path / "station.yaml", broker_port=1883,
            links={"lan": {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port,
                           "timeout_ms": 500}},
            devices=[{"id": "gc-1", "link": "lan", "unit_id": 1, "profile": "generic-gc"}]))
        driver = load_driver(config.devices[0])
        client = open_link_client(config.links["lan"])
        try:
            polls = [driver.poll(client, datetime.now(UTC)) for _ in range(2)]
        finally:
            client.close()
        assert server.requests  # it was read, and found nothing to publish
    assert polls == [None, None]
