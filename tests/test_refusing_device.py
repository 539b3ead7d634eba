"""A device that answers Modbus exception 04 (device failure) to every read is failing,
not healthy: a real pymodbus server answering the exception, the real agent, its
/status and /metrics, and the BAD samples it publishes to a real Mosquitto."""

from __future__ import annotations

import logging
import threading
import time

from edge_agent_drivers.modbus.protocol.pymodbus_server import Reply, ServedRequest
from edge_agent_drivers.modbus.settings import RegisterKind
from support.health import scrape, status
from support.station import write_station
from support.waiting import wait_until

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.poller import DOWN_AFTER_FAILED_POLLS
from edge_agent.tools.ops.status import live_lines
from edge_agent.tools.sim.simserver import SimServer, SimUnit

DEVICE_FAILURE = 0x04


class FailingUnitServer(SimServer):
    """A pymodbus server whose unit 2, while ``failing`` is set, answers every request
    with exception 04, as an analyzer with a failed sensor board does."""

    def __init__(self, units: list[SimUnit]) -> None:
        super().__init__(units)
        self.failing = threading.Event()

    def _handle_request(self, request: ServedRequest) -> Reply:
        if request.unit_id == 2 and self.failing.is_set():
            return Reply(exception=DEVICE_FAILURE)
        return super()._handle_request(request)


def device_doc(port: int, device_id: str) -> dict:
    devices = {d["id"]: d for d in status(port)["devices"]}
    return devices[device_id]


def test_a_device_answering_exception_04_to_every_read_is_failing_not_healthy(
        tmp_path, broker, collector, caplog):
    caplog.set_level(logging.INFO, logger="edge_agent")
    server = FailingUnitServer([
        SimUnit(1, holding={0: 5, 2: 7}, holes={RegisterKind.HOLDING: [1]}),
        SimUnit(2, holding={0: 9, 1: 10})]).start()
    server.failing.set()
    channels = [{"name": "a", "address": 0, "unit": "ppm"},
                {"name": "b", "address": 1, "unit": "ppm"}]
    path = write_station(
        tmp_path / "station.yaml", broker_port=broker.port,
        links={"gw": {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port,
                      "timeout_ms": 300}},
        devices=[{"id": "det-hole", "link": "gw", "unit_id": 1, "interval_s": 0.1,
                  "channels": channels},
                 {"id": "det-04", "link": "gw", "unit_id": 2, "interval_s": 0.1,
                  "channels": channels}],
        polling={"backoff_initial_s": 0.1, "backoff_max_s": 0.2})
    agent = Agent(load_config(path))
    agent.start()
    try:
        wait_until(lambda: agent.health.port is not None, 30, "the endpoint to listen")
        port = agent.health.port
        wait_until(lambda: device_doc(port, "det-04")["state"] == "down", 30,
                   "det-04 marked down")
        failing = device_doc(port, "det-04")
        hole = device_doc(port, "det-hole")
        metrics = scrape(port)
        lines = live_lines(status(port), "http://test", time.time())
        collector.wait_for(lambda c: len(c.seqs("det-04")) >= DOWN_AFTER_FAILED_POLLS, 30,
                           "det-04's BAD samples")

        server.failing.clear()
        wait_until(lambda: device_doc(port, "det-04")["state"] == "ok", 30,
                   "det-04 reading again")
        recovered = device_doc(port, "det-04")
    finally:
        agent.stop()
        server.stop()

    assert failing["last_good_at"] is None
    assert failing["last_error"] == "exception_04: all 2 readings answered with Modbus " \
        "exception 04"
    assert failing["errors"] == {"exception_04": failing["errors"]["exception_04"]}
    assert failing["errors"]["exception_04"] >= DOWN_AFTER_FAILED_POLLS
    assert failing["entered"] == {"degraded": 1, "down": 1}
    assert metrics.value("edge_agent_device_errors_total", device="det-04", link="gw",
                         reason="exception_04") >= DOWN_AFTER_FAILED_POLLS
    assert metrics.value("edge_agent_device_state", device="det-04", link="gw",
                         state="down") == 1
    assert any("det-04" in line and "DOWN" in line and "exception_04" in line
               for line in lines), lines
    # A device refusing one channel (exception 02 on its own) still reads the others.
    assert hole["state"] == "ok" and hole["errors"] == {}
    sample = next(r.sample for r in collector.samples if r.device == "det-04")
    assert {v["quality"] for v in sample["values"].values()} == {"BAD"}
    assert {v["reason"] for v in sample["values"].values()} == {"exception_04"}
    assert recovered["last_good_at"] is not None
    refusals = [r for r in caplog.records if "refuses every read" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.ERROR
    assert "exception 04" in refusals[0].getMessage()
    assert sum("det-04 marked down" in m for m in caplog.messages) == 1
    assert sum("det-04 answering again" in m for m in caplog.messages) == 1


def test_every_read_refused_only_when_all_readings_are_bad_with_an_exception():
    """The check after every answered poll looks no further than the first reading when
    that one is not BAD, and otherwise at every reading."""
    from datetime import UTC, datetime

    from edge_agent.model import Quality, Reading, Sample
    from edge_agent.poller import every_read_refused

    now = datetime(2026, 12, 4, tzinfo=UTC)

    def sample(*pairs: tuple[Quality, str | None]) -> Sample:
        return Sample("d", now, tuple(Reading("d", f"c{i}", None, "", q, now, r)
                                      for i, (q, r) in enumerate(pairs)))

    bad = Quality.BAD
    assert every_read_refused(sample()) is None
    assert every_read_refused(sample((Quality.GOOD, None), (bad, "exception_04"))) is None
    assert every_read_refused(sample((bad, "exception_04"), (Quality.GOOD, None))) is None
    assert every_read_refused(sample((bad, "exception_04"), (bad, "timeout"))) is None
    refused = every_read_refused(sample((bad, "exception_04"), (bad, "exception_02"),
                                        (bad, "exception_04")))
    assert refused is not None and refused.reason == "exception_04"
