"""End to end: simulated text instruments on pseudo-terminals and a serial-device server,
the real agent, a real Mosquitto. What the platform receives matches what the instruments
said; noise, bad checksums, partial lines and resets give BAD readings or counted events,
and never stop the poller."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest
from support.station import write_station
from support.textreplay import H2S_TEXT

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.tools.sim.ptypair import PtyPair
from edge_agent.tools.sim.textdevice import H2sStreamSim, NoxAnalyzerSim, TextDeviceSim

CST = timezone(timedelta(hours=8))


def start_agent(tmp_path, broker, links: dict, devices: list[dict]) -> Agent:
    path = write_station(tmp_path / "station.yaml", links=links, devices=devices,
                         broker_port=broker.port)
    agent = Agent(load_config(path))
    agent.start()
    return agent


def readings(collector, device: str) -> list[dict]:
    return [r.sample for r in collector.first_deliveries(device)]


def has(collector, device: str, channel: str, quality: str, reason=None) -> bool:
    return any(s["values"][channel]["quality"] == quality
               and s["values"][channel]["reason"] == reason for s in readings(collector, device))


def test_request_instrument_values_time_and_status_reach_the_platform(tmp_path, broker,
                                                                      collector):
    model = NoxAnalyzerSim(address=7, clock=lambda: datetime(2024, 5, 6, 14, 30, tzinfo=CST))
    with PtyPair() as pty:
        sim = TextDeviceSim(model, pty.device_path).start()
        agent = start_agent(tmp_path, broker, {
            "rs485-ana": {"type": "serial", "port": pty.agent_path, "protocol": "text",
                          "baudrate": 19200, "timeout_ms": 500}}, [
            {"id": "nox-7", "link": "rs485-ana", "profile": "generic-text-analyzer",
             "unit_id": 7, "interval_s": 0.1}])
        try:
            collector.wait_for(lambda c: len(c.seqs("nox-7")) >= 3, 30, "three samples")
            model.status, model.values["so2"] = "C", None
            collector.wait_for(lambda c: has(c, "nox-7", "no", "SUSPECT", "calibrating"), 30,
                               "a calibrating sample")
        finally:
            agent.stop()
            sim.stop()
    first = readings(collector, "nox-7")[0]
    assert first["instrument_time"] == "2024-05-06T06:30:00.000Z"
    assert {name: (v["value"], v["unit"], v["quality"]) for name, v in first["values"].items()} \
        == {"no": (12.3, "ppb", "GOOD"), "no2": (4.5, "ppb", "GOOD"),
            "nox": (16.8, "ppb", "GOOD"), "so2": (3.1, "ppb", "GOOD")}
    calibrating = next(s for s in readings(collector, "nox-7")
                       if s["values"]["no"]["quality"] == "SUSPECT")
    assert calibrating["values"]["so2"] == {"value": None, "unit": "ppb", "quality": "BAD",
                                            "reason": "not_a_number"}
    assert set(sim.requests) == {b"\x02DA07\x03"}


def test_bad_frames_and_resets_give_bad_readings_and_polling_goes_on(tmp_path, broker,
                                                                     collector, caplog):
    caplog.set_level(logging.INFO, logger="edge_agent")
    model = NoxAnalyzerSim(address=1)
    with PtyPair() as pty:
        sim = TextDeviceSim(model, pty.device_path).start()
        agent = start_agent(tmp_path, broker, {
            "rs232": {"type": "serial", "port": pty.agent_path, "protocol": "text",
                      "timeout_ms": 300}}, [
            {"id": "nox-1", "link": "rs232", "profile": "generic-text-analyzer",
             "unit_id": 1, "interval_s": 0.1}])
        try:
            collector.wait_for(lambda c: has(c, "nox-1", "no", "GOOD"), 30, "a good sample")
            sim.send_raw(b"\x02MD01,2024-05-06,14:3")  # a partial telegram between polls
            sim.queue("bad_checksum", "noise", "reset", "silent")
            sim.send_raw(b"\x00\xffline noise\r\n")
            collector.wait_for(lambda c: has(c, "nox-1", "no", "BAD", "bad_checksum")
                               and has(c, "nox-1", "no", "BAD", "timeout"), 60,
                               "bad_checksum and timeout readings")
            count = len(collector.seqs("nox-1"))
            collector.wait_for(lambda c: len(c.seqs("nox-1")) > count + 2
                               and readings(c, "nox-1")[-1]["values"]["no"]["quality"]
                               == "GOOD", 60, "good samples again")
            assert agent.dead_threads() == []
            errors = agent.pollers[0].devices[0].errors
        finally:
            agent.stop()
            sim.stop()
    assert errors["bad_checksum"] >= 1 and errors["timeout"] >= 1
    samples = sorted(readings(collector, "nox-1"), key=lambda sample: sample["seq"])
    assert [s["seq"] for s in samples] == list(range(1, len(samples) + 1)), "no hole"
    bad = [s["values"]["no"]["quality"] == "BAD" for s in samples]
    outages = sum(1 for i, is_bad in enumerate(bad) if is_bad and (i == 0 or not bad[i - 1]))
    down = [r for r in caplog.records if "not answering" in r.getMessage()]
    assert len(down) == outages, "each outage is logged once, not once per poll"


def test_streaming_instrument_latest_records_published_bad_lines_counted(tmp_path, broker,
                                                                         collector, caplog):
    caplog.set_level(logging.WARNING, logger="edge_agent_drivers")
    model = H2sStreamSim(value=0.012, period_s=0.02)
    with PtyPair() as pty:
        sim = TextDeviceSim(model, pty.device_path).start()
        agent = start_agent(tmp_path, broker, {
            "rs232": {"type": "serial", "port": pty.agent_path, "protocol": "text",
                      "timeout_ms": 1000}}, [
            {"id": "h2s-1", "link": "rs232", "driver": "serial-text", "interval_s": 0.2,
             "text": H2S_TEXT}])
        try:
            collector.wait_for(lambda c: has(c, "h2s-1", "h2s", "GOOD"), 30, "a good sample")
            sim.queue("bad_checksum", "reset", "noise", "bad_checksum", "bad_checksum")
            model.status = "CAL"
            collector.wait_for(lambda c: has(c, "h2s-1", "h2s", "SUSPECT", "calibrating"), 30,
                               "a calibrating sample")
            driver = agent.pollers[0].devices[0].driver
            assert agent.dead_threads() == []
        finally:
            agent.stop()
            sim.stop()
    values = [s["values"]["h2s"] for s in readings(collector, "h2s-1")]
    assert all(v["value"] == pytest.approx(0.012) for v in values if v["quality"] != "BAD")
    assert driver.events["bad_checksum"] >= 1 and driver.events["superseded"] >= 1
    warned = [r.getMessage() for r in caplog.records
              if r.name.startswith("edge_agent_drivers") and "bad_checksum" in r.getMessage()]
    assert len(warned) == 1, "a bad line is logged once, then counted"


def test_instrument_behind_a_serial_device_server_survives_a_dropped_connection(
        tmp_path, broker, collector):
    sim = TextDeviceSim(NoxAnalyzerSim(address=2)).start()
    agent = start_agent(tmp_path, broker, {
        "moxa": {"type": "tcp", "host": "127.0.0.1", "port": sim.tcp_port,
                 "protocol": "text", "timeout_ms": 500}}, [
        {"id": "nox-2", "link": "moxa", "profile": "generic-text-analyzer", "unit_id": 2,
         "interval_s": 0.1}])
    try:
        collector.wait_for(lambda c: has(c, "nox-2", "no", "GOOD"), 30, "a good sample")
        sim.drop_connection()
        collector.wait_for(lambda c: has(c, "nox-2", "no", "BAD", "no_connection"), 30,
                           "a no_connection sample")
        count = len(collector.seqs("nox-2"))
        collector.wait_for(lambda c: len(c.seqs("nox-2")) > count
                           and readings(c, "nox-2")[-1]["values"]["no"]["quality"] == "GOOD",
                           60, "good samples after reconnecting")
    finally:
        agent.stop()
        sim.stop()
