"""``edge-agent simulate`` as a demo or a CI run uses it: a real process serving a GC, a
Daniel/Enron GC and an FTIR over Modbus TCP and two gas detectors on a virtual RS-485
bus, polled by the real agent, published through a real Mosquitto: analyses once each on
their streams, measurements with background spectra, warm-up and a broken sensor."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from datetime import datetime, timedelta

import pytest
from support.station import write_station

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config

SIMULATION = """\
servers:
  lan: {listen: "127.0.0.1:0"}
  bus: {pty: true}
devices:
  - {id: gc-1, server: lan, unit_id: 1, profile: generic-gc, cycle_s: 1, streams: [1, 2],
     utc_offset: "+08:00", values: {benzene: {base: 1.0, ramp_per_h: 3600}}}
  - {id: ng, server: lan, unit_id: 2, profile: daniel-enron-gc, cycle_s: 1}
  - {id: ftir, server: lan, unit_id: 3, profile: generic-ftir, cycle_s: 1,
     background_every: 2}
  - {id: det-1, server: bus, unit_id: 1, profile: generic-gas-detector, warmup_s: 1,
     update_s: 0.2, faults: [{kind: broken, channel: h2s, from_s: 2, to_s: 3}]}
  - {id: det-2, server: bus, unit_id: 2, profile: generic-gas-detector}
"""
FAST = {"interval_s": 0.1}


def samples(collector, device: str) -> list[dict]:
    return [r.sample for r in collector.first_deliveries(device)]


def test_simulated_station_is_polled_and_published_as_its_instruments_behave(
        tmp_path, broker, collector):
    config = tmp_path / "sim.yaml"
    config.write_text(SIMULATION)
    process = subprocess.Popen([sys.executable, "-m", "edge_agent", "simulate", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines: list[str] = []
        while not lines or lines[-1].startswith(("lan:", "bus:")):
            line = process.stdout.readline()
            if not line.startswith("  unit "):  # the ranges each unit serves
                lines.append(line)
        assert lines[2].startswith("simulating 5 devices"), (lines, process.stderr.read())
        port = int(re.search(r"^lan: modbus-tcp on 127\.0\.0\.1:(\d+): gc-1 \(unit 1, "
                             r"generic-gc\)", lines[0]).group(1))
        bus = re.search(r"^bus: modbus-rtu on (\S+) \(9600 baud\)", lines[1]).group(1)
        station = write_station(
            tmp_path / "station.yaml", broker_port=broker.port,
            links={"lan": {"type": "tcp", "host": "127.0.0.1", "port": port},
                   "bus": {"type": "serial", "port": bus, "timeout_ms": 500}},
            devices=[
                {"id": "gc-1", "link": "lan", "unit_id": 1, "profile": "generic-gc",
                 "clock": {"format": "fields", "utc_offset": "+08:00", "channels": [
                     "year", "month", "day", "hour", "minute", "second"]}, **FAST},
                {"id": "ng", "link": "lan", "unit_id": 2, "profile": "daniel-enron-gc",
                 "trigger": {"kind": "flag", "channel": "new_data", "clear_flag": True},
                 **FAST},
                {"id": "ftir", "link": "lan", "unit_id": 3, "profile": "generic-ftir", **FAST},
                {"id": "det-1", "link": "bus", "unit_id": 1,
                 "profile": "generic-gas-detector", **FAST},
                {"id": "det-2", "link": "bus", "unit_id": 2,
                 "profile": "generic-gas-detector", **FAST}])
        agent = Agent(load_config(station))
        agent.start()
        try:
            collector.wait_for(lambda c: len(c.seqs("gc-1")) >= 4 and len(
                c.seqs("ng")) >= 3 and len(c.seqs("ftir")) >= 4 and any(
                s["values"]["h2s"]["reason"] == "sentinel" for s in samples(c, "det-1"))
                and samples(c, "det-1")[-1]["values"]["h2s"]["quality"] == "GOOD",
                60, "analyses, measurements and a broken sensor that recovered")
        finally:
            agent.stop()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
    gc = samples(collector, "gc-1")
    cycles = [s["values"]["cycle"]["value"] for s in gc]
    assert cycles == sorted(set(cycles))  # each analysis once, in order
    assert [s["stream"] for s in gc] == [2 - c % 2 for c in cycles]  # streams 1, 2 in turn
    assert [s["values"]["benzene"]["value"] for s in gc] == pytest.approx(
        [float(c) for c in cycles])  # 1 ppb + 1 ppb per (one-second) analysis
    times = [datetime.fromisoformat(s["instrument_time"]) for s in gc]
    assert [t - times[0] for t in times] == [timedelta(seconds=c - cycles[0]) for c in cycles]
    methane = [s["values"]["methane"]["value"] for s in samples(collector, "ng")]
    assert len(set(methane)) == len(methane)  # each flagged analysis published once
    ftir = samples(collector, "ftir")
    assert {(s["values"]["hcl"]["quality"], s["values"]["hcl"]["reason"]) for s in ftir} == {
        ("GOOD", None), ("SUSPECT", "background")}
    detector = samples(collector, "det-1")
    assert (detector[0]["values"]["o2"]["quality"], detector[0]["values"]["o2"]["reason"]) \
        == ("SUSPECT", "warmup")
    assert {s["values"]["o2"]["quality"] for s in samples(collector, "det-2")} == {"GOOD"}
