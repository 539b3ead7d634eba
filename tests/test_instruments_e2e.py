"""The shipped instrument profiles against real pymodbus servers and a real broker: a GC
that completes analyses on two streams (one sample per analysis, also across SIGKILL), an
FTIR with measurement times and status, gas detectors on one RS-485 bus with warm-up,
sensor faults and broken-loop sentinels, and an illegal address inside a merged read."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

import pytest
from edge_agent_drivers.modbus.settings import RegisterKind
from support.station import AgentProcess, write_station
from support.waiting import wait_until

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.tools.sim.images import (
    FTIR_COMPONENTS,
    GC_COMPONENTS,
    DetectorState,
    FtirMeasurement,
    GcAnalysis,
    detector_image,
    ftir_image,
    gc_image,
    local_time,
)
from edge_agent.tools.sim.ptypair import PtyPair
from edge_agent.tools.sim.simserver import SimServer, SimUnit

BEIJING_MIN = 480
CLOCK_BEIJING = {"format": "fields", "utc_offset": "+08:00",
                 "channels": ["year", "month", "day", "hour", "minute", "second"]}


def tcp_link(server: SimServer) -> dict:
    return {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port, "timeout_ms": 500}


def reads_served(server: SimServer, unit_id: int) -> int:
    return sum(1 for r in server.requests if r.unit_id == unit_id and r.function_code in (3, 4))


class GcStation:
    """A simulated generic-gc completing analyses, and what it completed."""

    def __init__(self) -> None:
        self.server = SimServer([SimUnit(1)]).start()
        self.analyses: dict[int, GcAnalysis] = {}
        self.started = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)

    def complete(self, cycle: int, stream: int) -> GcAnalysis:
        finished = self.started + timedelta(minutes=5 * cycle)
        analysis = GcAnalysis(cycle, stream, local_time(finished, BEIJING_MIN).replace(
            tzinfo=None), [round(0.25 * cycle + i, 2) for i in range(len(GC_COMPONENTS))])
        self.server.set_words(1, RegisterKind.HOLDING, 0, gc_image(analysis))
        self.analyses[cycle] = analysis
        return analysis

    def polled_again(self, times: int) -> None:
        """Wait until the agent has polled ``times`` more: repeated polls of one analysis."""
        start = reads_served(self.server, 1)
        wait_until(lambda: reads_served(self.server, 1) >= start + times, 30,
                   f"{times} more polls of the GC")


def by_cycle(collector) -> dict[int, set[str]]:
    ids: dict[int, set[str]] = {}
    for received in collector.samples:
        if received.device == "gc-1":
            cycle = received.sample["values"]["cycle"]["value"]
            ids.setdefault(cycle, set()).add(received.sample["id"])
    return ids


def test_gc_publishes_each_analysis_exactly_once_with_stream_and_time_across_sigkill(
        tmp_path, broker, collector):
    gc = GcStation()
    agents: list[AgentProcess] = []
    try:
        config = write_station(
            tmp_path / "station.yaml", links={"lan": tcp_link(gc.server)},
            broker_port=broker.port,
            devices=[{"id": "gc-1", "link": "lan", "unit_id": 1, "profile": "generic-gc",
                      "interval_s": 0.1, "clock": CLOCK_BEIJING}])
        gc.complete(1, stream=1)
        first = AgentProcess(config, tmp_path / "agent-1.log").start()
        agents.append(first)
        first.wait_running()
        for cycle, stream in ((2, 2), (3, 1)):
            collector.wait_for(lambda c, n=cycle - 1: n in by_cycle(c), 30, f"analysis {cycle - 1}")
            gc.polled_again(5)
            gc.complete(cycle, stream)
        collector.wait_for(lambda c: 3 in by_cycle(c), 30, "analysis 3")
        first.kill()
        gc.complete(4, stream=2)  # finished while the agent was down
        second = AgentProcess(config, tmp_path / "agent-2.log").start()
        agents.append(second)
        second.wait_running()
        collector.wait_for(lambda c: 4 in by_cycle(c), 30, "analysis 4, after the restart")
        gc.polled_again(5)
        gc.complete(5, stream=1)
        collector.wait_for(lambda c: 5 in by_cycle(c), 30, "analysis 5")
        gc.polled_again(5)
        assert second.terminate() == 0
    finally:
        for agent in agents:  # a failed assertion must not leave an agent running
            if agent.alive():
                agent.kill()
        gc.server.stop()
    ids = by_cycle(collector)
    assert sorted(ids) == [1, 2, 3, 4, 5]
    assert all(len(samples) == 1 for samples in ids.values()), ids
    for received in collector.samples:
        sample = received.sample
        analysis = gc.analyses[sample["values"]["cycle"]["value"]]
        assert sample["stream"] == analysis.stream
        finished_utc = analysis.finished_at.replace(
            tzinfo=local_time(gc.started, BEIJING_MIN).tzinfo).astimezone(UTC)
        assert datetime.fromisoformat(sample["instrument_time"]) == finished_utc
        published = [sample["values"][name]["value"] for name in GC_COMPONENTS]
        assert published == pytest.approx(list(analysis.values), rel=1e-6)
        assert {v["quality"] for v in sample["values"].values()} == {"GOOD"}


def test_ftir_publishes_each_measurement_once_and_flags_background_and_alarm(
        tmp_path, broker, collector):
    server = SimServer([SimUnit(3)]).start()
    measured = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)

    def measure(index: int, status: int) -> None:
        values = [round(index + 0.5 * n, 3) for n in range(len(FTIR_COMPONENTS))]
        image = ftir_image(FtirMeasurement(measured + timedelta(seconds=60 * index), values,
                                           status))
        server.set_words(3, RegisterKind.INPUT, 0, image)

    config = write_station(
        tmp_path / "station.yaml", links={"lan": tcp_link(server)}, broker_port=broker.port,
        devices=[{"id": "ftir-1", "link": "lan", "unit_id": 3, "profile": "generic-ftir",
                  "interval_s": 0.1}])
    agent = Agent(load_config(config))
    agent.start()
    try:
        for index, status in enumerate((0, 0b1, 0b100, 0x100)):
            measure(index, status)
            collector.wait_for(lambda c, n=index: len(c.seqs("ftir-1")) >= n + 1, 30,
                               f"measurement {index}")
            start = reads_served(server, 3)
            wait_until(lambda s=start: reads_served(server, 3) >= s + 10, 30, "more polls")
    finally:
        agent.stop()
        server.stop()
    samples = [r.sample for r in collector.samples if r.device == "ftir-1"]
    assert len(samples) == 4  # one per measurement, however many polls
    assert [s["instrument_time"] for s in samples] == [
        (measured + timedelta(seconds=60 * i)).isoformat().replace("+00:00", ".000Z")
        for i in range(4)]
    quality = [(s["values"]["hcl"]["quality"], s["values"]["hcl"]["reason"]) for s in samples]
    assert quality == [("GOOD", None), ("SUSPECT", "background"), ("BAD", "instrument_alarm"),
                       ("GOOD", None)]
    assert [s["values"]["concentration_alarm"]["value"] for s in samples] == [
        False, False, False, True]
    assert len(samples[0]["values"]) == len(FTIR_COMPONENTS) + 3


def test_detectors_on_one_bus_report_warmup_faults_and_sentinels_while_one_is_dead(
        tmp_path, broker, collector):
    pty = PtyPair()
    units = [SimUnit(1), SimUnit(2), SimUnit(3)]
    server = SimServer(units, serial_port=pty.device_path).start()
    server.set_words(1, RegisterKind.HOLDING, 0, detector_image(DetectorState(
        co_ppm=12, h2s_tenths=65535, sensor_faults=0b10)))  # CO sensor faulty, H2S broken
    server.set_words(2, RegisterKind.HOLDING, 0, detector_image(DetectorState(
        state=1, co_ppm=3, o2_tenths=208)))  # warming up
    server.mute(3)  # dead detector on the same bus
    config = write_station(
        tmp_path / "station.yaml", broker_port=broker.port,
        links={"bus": {"type": "serial", "port": pty.agent_path, "timeout_ms": 200}},
        devices=[{"id": f"det-{n}", "link": "bus", "unit_id": n,
                  "profile": "generic-gas-detector", "interval_s": 0.2} for n in (1, 2, 3)])
    agent = Agent(load_config(config))
    agent.start()
    try:
        collector.wait_for(lambda c: all(len(c.seqs(f"det-{n}")) >= 3 for n in (1, 2, 3)),
                           60, "three samples from each detector")
    finally:
        agent.stop()
        server.stop()
        pty.close()
    last = {n: [r.sample for r in collector.samples if r.device == f"det-{n}"][-1]["values"]
            for n in (1, 2, 3)}
    outcome = {n: {gas: (v["value"], v["quality"], v["reason"]) for gas, v in values.items()
                   if gas in ("o2", "co", "h2s", "lel", "model")} for n, values in last.items()}
    assert outcome[1] == {"o2": (20.9, "GOOD", None), "co": (12, "BAD", "fault"),
                          "h2s": (None, "BAD", "sentinel"), "lel": (0, "GOOD", None),
                          "model": ("MGD4", "GOOD", None)}
    assert outcome[2]["o2"] == (20.8, "SUSPECT", "warmup")
    assert outcome[2]["model"] == ("MGD4", "SUSPECT", "warmup")
    assert {v[1:] for v in outcome[3].values()} == {("BAD", "timeout")}


def test_illegal_address_inside_a_merged_read_blanks_only_that_channel(
        tmp_path, broker, collector, caplog):
    unit = SimUnit(1, holes={RegisterKind.HOLDING: [5]})
    server = SimServer([unit]).start()
    server.set_words(1, RegisterKind.HOLDING, 0, list(range(100, 110)))
    channels = [{"name": f"r{a}", "address": a} for a in (0, 1, 2, 5, 7, 8)]
    config = write_station(
        tmp_path / "station.yaml", links={"lan": tcp_link(server)}, broker_port=broker.port,
        devices=[{"id": "dev", "link": "lan", "unit_id": 1, "interval_s": 0.1,
                  "read": {"max_gap": 3}, "channels": channels}])
    agent = Agent(load_config(config))
    agent.start()
    try:
        collector.wait_for(lambda c: len(c.seqs("dev")) >= 5, 30, "five samples")
    finally:
        agent.stop()
        server.stop()
    for received in collector.samples:
        values = received.sample["values"]
        assert values["r5"] == {"value": None, "unit": "", "quality": "BAD",
                                "reason": "exception_02"}
        assert {name: v["value"] for name, v in values.items() if name != "r5"} == {
            "r0": 100, "r1": 101, "r2": 102, "r7": 107, "r8": 108}
    merged = [r for r in server.requests if r.function_code == 3 and r.count == 9]
    assert len(merged) == 1, "the merged read is tried once, then the split is remembered"
    warnings = [m for m in caplog.messages if "exception 02" in m]
    assert len(warnings) == 1 and "r5" in warnings[0]


def test_daniel_enron_gc_reads_32_bit_ranges_and_clears_its_flag_once_per_analysis(
        tmp_path, broker, collector):
    """Only master of the GC: new_data is cleared after each stored analysis, exactly once,
    and every float comes from one 32-bit Enron address."""
    unit = SimUnit(2, size=5000, enron=(range(5001, 6000), range(7001, 8000)))
    server = SimServer([unit]).start()
    components = ["methane", "ethane", "propane", "nitrogen", "co2"]

    def finish(index: int) -> list[float]:
        values = [round(90.0 - index, 2), 5.5, 1.25, 2.0 + index, 0.75]
        bits = [struct.unpack(">I", struct.pack(">f", v))[0] for v in values]
        server.set_values32(2, RegisterKind.HOLDING, 7001, bits)
        server.set_values32(2, RegisterKind.HOLDING, 7020, [struct.unpack(
            ">I", struct.pack(">f", 38.5 + index))[0]])
        server.set_values32(2, RegisterKind.HOLDING, 5001, [240 + index])
        server.set_words(2, RegisterKind.HOLDING, 3002, [0, 1 + index % 2])
        server.set_words(2, RegisterKind.HOLDING, 3001, [1])  # new_data, set last
        return values

    config = write_station(
        tmp_path / "station.yaml", links={"lan": tcp_link(server)}, broker_port=broker.port,
        devices=[{"id": "ng-gc", "link": "lan", "unit_id": 2, "profile": "daniel-enron-gc",
                  "interval_s": 0.1,
                  "trigger": {"kind": "flag", "channel": "new_data", "clear_flag": True}}])
    agent = Agent(load_config(config))
    agent.start()
    expected = []
    try:
        for index in range(3):
            expected.append(finish(index))
            collector.wait_for(lambda c, n=index: len(c.seqs("ng-gc")) >= n + 1, 30,
                               f"analysis {index}")
            wait_until(lambda: server.get_words(2, RegisterKind.HOLDING, 3001) == [0], 30,
                       "the agent to clear new_data")
            start = reads_served(server, 2)
            wait_until(lambda s=start: reads_served(server, 2) >= s + 10, 30, "more polls")
    finally:
        agent.stop()
        server.stop()
    samples = [r.sample for r in collector.samples if r.device == "ng-gc"]
    assert len(samples) == 3
    for index, sample in enumerate(samples):
        published = [sample["values"][name]["value"] for name in components]
        assert published == pytest.approx(expected[index], rel=1e-6)
        assert sample["values"]["cycle_time_s"]["value"] == 240 + index
        assert sample["values"]["heating_value"]["value"] == pytest.approx(38.5 + index)
        assert sample["stream"] == 1 + index % 2
    clears = [w for w in server.writes(2) if w.address == 3001]
    assert [(w.function_code, w.values) for w in clears] == [(6, (0,))] * 3
    enron_reads = [r for r in server.requests if r.function_code == 3 and r.address >= 5001]
    assert {(r.address, r.count) for r in enron_reads} == {(5001, 1), (7001, 5), (7020, 1)}
