"""The whole agent against replayed captures: configured against ``edge-agent replay``,
it publishes exactly the values the capture's answers hold.

Each capture is recorded in the test: the real agent polls a simulated instrument
(``edge_agent.tools.sim.images``) through the recording proxy while the instrument changes
state. The capture is then replayed (strictly by the ``edge-agent replay`` command, or
from its register image with a clock the test moves) to a second agent with its own
outbox, and what that agent publishes over a real Mosquitto is compared with what the
capture's answer frames hold, decoded here with ``struct`` from the raw bytes, without
the agent's decoder or the capture package's parser.

A strict replay ends when the recording does; a poll after that end fails (the replay
hangs up), so the agent publishes BAD samples after the expected ones. The tests check
the published samples up to the recording's end exactly, and that anything after it is
such a failure sample, never a value.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from edge_agent_drivers.modbus.settings import RegisterKind
from support.capture_session import assert_replayed_to_the_end, recording_proxy
from support.command import running
from support.station import write_station
from support.waiting import wait_until

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.tools.capture.files import read_capture
from edge_agent.tools.capture.loopthread import InBackground
from edge_agent.tools.replay.image import RegisterImage
from edge_agent.tools.replay.rtu_server import RtuReplayServer
from edge_agent.tools.replay.script import load_script
from edge_agent.tools.replay.serve import ImageReplay
from edge_agent.tools.replay.tcp_server import TcpReplayServer
from edge_agent.tools.sim.images import (
    GC_COMPONENTS,
    DetectorState,
    GcAnalysis,
    detector_image,
    gc_image,
)
from edge_agent.tools.sim.ptypair import PtyPair
from edge_agent.tools.sim.simserver import SimServer, SimUnit

HOLDING = RegisterKind.HOLDING
BEIJING = timezone(timedelta(hours=8))
GC_DEVICE = {"link": "lan", "unit_id": 1, "profile": "generic-gc", "interval_s": 0.05,
             "clock": {"format": "fields", "utc_offset": "+08:00",
                       "channels": ["year", "month", "day", "hour", "minute", "second"]}}
DETECTOR_DEVICE = {"link": "lan", "unit_id": 7, "profile": "generic-gas-detector",
                   "interval_s": 0.05}
FAILURE_REASONS = {"timeout", "no_connection", "bad_response"}
Words = dict[int, int]  # address -> register word, as one answer showed them


# -- recording: the agent polls a simulated instrument through the proxy ----------------


def record_agent(tmp_path: Path, broker_port: int, unit_id: int, device: dict,
                 states_of: Callable[[SimServer], list[Callable[[], None]]]) -> Path:
    """Run an agent (device ``recorder``, its own outbox) through a recording proxy
    against a simulated unit ``unit_id``; ``states_of(server)`` are set one by one, each
    polled at least three times. The first state is set before the agent starts, so
    every recorded answer holds a state. Returns the capture."""
    with SimServer([SimUnit(unit_id)], tcp_port=0) as server:
        return _record(tmp_path, broker_port, server, unit_id, device, states_of(server))


def _record(tmp_path: Path, broker_port: int, server: SimServer, unit_id: int,
            device: dict, states: list[Callable[[], None]]) -> Path:
    path = tmp_path / "recorded.capture.jsonl"
    states[0]()
    with recording_proxy(server.tcp_port, path, unit_ids=(unit_id,)) as port:
        config = write_station(
            _folder(tmp_path / "recording") / "station.yaml", broker_port=broker_port,
            links={"lan": {"type": "tcp", "host": "127.0.0.1", "port": port,
                           "timeout_ms": 1000}},
            devices=[{**device, "id": "recorder"}], station_id="recording")
        agent = Agent(load_config(config))
        agent.start()
        try:
            for number, apply in enumerate(states):
                if number:
                    apply()
                served = _reads(server, unit_id)
                wait_until(lambda s=served: _reads(server, unit_id) >= s + 6, 30,
                           "the recording agent to poll the new state")
        finally:
            agent.stop()
    return path


def _reads(server: SimServer, unit_id: int) -> int:
    return sum(1 for r in server.requests if r.unit_id == unit_id and r.function_code == 3)


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- decoding the capture's answers with struct, independently of the agent -------------


def recorded_answers(path: Path) -> list[tuple[float, Words]]:
    """(time, registers) of every good register-read answer, in the capture's order.
    Frames are Modbus TCP: the request gives the start address, its answer the words."""
    lines = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    requests = {line["xid"]: bytes.fromhex(line["hex"]) for line in lines
                if line.get("dir") == "tx" and "xid" in line}
    answers = []
    for line in lines:
        if line.get("dir") != "rx" or "xid" not in line:
            continue
        frame = bytes.fromhex(line["hex"])
        if frame[7] != 3:
            continue  # an exception (0x83) or another function: no register values
        _tid, _proto, _len, _unit, _fc, start, count = struct.unpack(
            ">HHHBBHH", requests[line["xid"]])
        words = struct.unpack(f">{frame[8] // 2}H", frame[9:9 + frame[8]])
        assert len(words) == count, line
        answers.append((line["t"], {start + i: word for i, word in enumerate(words)}))
    return answers


def _float_cdab(words: Words, address: int) -> float:
    return struct.unpack(">f", struct.pack(">HH", words[address + 1], words[address]))[0]


def gc_result(words: Words) -> dict:
    """What one generic-gc answer (holding 0..19, drivers/gc/README.md) holds."""
    y, mo, d, h, mi, s = (words[a] for a in range(3, 9))
    return {"cycle": words[1], "stream": words[2],
            "time": datetime(y, mo, d, h, mi, s, tzinfo=BEIJING).astimezone(UTC),
            "values": [_float_cdab(words, 12 + 2 * i) for i in range(len(GC_COMPONENTS))]}


def gc_expected(path: Path) -> list[tuple[float, dict]]:
    """The analyses a counter-triggered GC publishes from these answers: the first one,
    then each answer whose cycle differs from the last published, with its time."""
    published: list[tuple[float, dict]] = []
    for t, words in recorded_answers(path):
        result = gc_result(words)
        if not published or result["cycle"] != published[-1][1]["cycle"]:
            published.append((t, result))
    return published


def gc_published(sample: dict) -> dict:
    values = sample["values"]
    return {"cycle": values["cycle"]["value"], "stream": sample["stream"],
            "time": datetime.fromisoformat(sample["instrument_time"]),
            "values": [values[name]["value"] for name in GC_COMPONENTS]}


def detector_expected(path: Path) -> list[dict]:
    """One sample per poll of a generic-gas-detector: holding 0..5 and 16..19 are read by
    two requests, so consecutive answers pair up. 65535 is the broken-sensor sentinel."""
    answers = [words for _t, words in recorded_answers(path)]
    samples = []
    for block, model in zip(answers[::2], answers[1::2], strict=True):
        assert min(block) == 0 and min(model) == 16, "the recorded polls' order"
        text = b"".join(struct.pack(">H", model[16 + i]) for i in range(4))

        def scaled(word: int, scale: float) -> float | None:
            return None if word == 65535 else round(word * scale, 6)

        samples.append({"state": block[0], "sensor_faults": block[1],
                        "o2": scaled(block[2], 0.1), "co": scaled(block[3], 1),
                        "h2s": scaled(block[4], 0.1), "lel": scaled(block[5], 1),
                        "model": text.rstrip(b"\0").decode("ascii")})
    return samples


def detector_published(sample: dict) -> dict:
    return {name: reading["value"] for name, reading in sample["values"].items()}


def split_at_end(collector, device: str, expected: int) -> tuple[list[dict], list[dict]]:
    """The first ``expected`` published samples of ``device``, and those after them."""
    samples = [r.sample for r in collector.first_deliveries(device)]
    return samples[:expected], samples[expected:]


def is_failure(sample: dict) -> bool:
    return all(v["value"] is None and v["quality"] == "BAD" and v["reason"] in FAILURE_REASONS
               for v in sample["values"].values())


# -- the replay command ------------------------------------------------------------------


@contextmanager
def replay_command(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``edge-agent replay ...`` in the background, and where it serves (its first line)."""
    with running("replay", *args) as (process, first):
        match = re.search(r" as Modbus (?:TCP on \S+:(\d+)|RTU on (\S+));", first)
        assert match, first
        yield process, match.group(1) or match.group(2)


# -- the proofs --------------------------------------------------------------------------


def _gc_states(server: SimServer) -> list[Callable[[], None]]:
    start = datetime(2026, 11, 29, 10, 0)

    def analysis(cycle: int, stream: int) -> Callable[[], None]:
        values = [round(0.37 * cycle + 1.5 * i, 3) for i in range(len(GC_COMPONENTS))]
        finished = start + timedelta(minutes=7 * cycle)
        return lambda: server.set_words(1, HOLDING, 0, gc_image(
            GcAnalysis(cycle, stream, finished, values)))

    return [analysis(41, 1), analysis(42, 2), analysis(43, 1), analysis(44, 2)]


def test_agent_against_a_strict_replay_publishes_each_recorded_gc_analysis_once_as_recorded(
        tmp_path, broker, collector):
    path = record_agent(tmp_path, broker.port, 1, GC_DEVICE, _gc_states)
    expected = [result for _t, result in gc_expected(path)]
    assert [r["cycle"] for r in expected] == [41, 42, 43, 44]  # the capture holds them all
    requests = sum(1 for line in path.read_text().splitlines() if '"dir": "tx"' in line)
    with replay_command("tcp", str(path), "--listen", "127.0.0.1:0") as (replay, port):
        config = write_station(
            _folder(tmp_path / "replayed") / "station.yaml", broker_port=broker.port,
            links={"lan": {"type": "tcp", "host": "127.0.0.1", "port": int(port),
                           "timeout_ms": 1000}},
            devices=[{**GC_DEVICE, "id": "gc-1"}])
        agent = Agent(load_config(config))
        agent.start()
        try:
            collector.wait_for(lambda c: len(c.seqs("gc-1")) >= len(expected), 60,
                               "every recorded analysis from the replay")
            assert_replayed_to_the_end(replay, requests)
        finally:
            agent.stop()
    good, after = split_at_end(collector, "gc-1", len(expected))
    for sample, result in zip(good, expected, strict=True):
        published = gc_published(sample)
        assert published["values"] == pytest.approx(result["values"], rel=1e-6)
        assert {k: v for k, v in published.items() if k != "values"} == {
            k: v for k, v in result.items() if k != "values"}
        assert {v["quality"] for v in sample["values"].values()} == {"GOOD"}
    assert all(is_failure(sample) for sample in after), after


def test_agent_against_an_image_replay_publishes_the_analysis_held_at_each_recorded_moment(
        tmp_path, broker, collector):
    path = record_agent(tmp_path, broker.port, 1, GC_DEVICE, _gc_states)
    expected = gc_expected(path)
    moment = [0.0]
    replay = ImageReplay(RegisterImage(load_script(read_capture(path))), lambda: moment[0])
    with InBackground(TcpReplayServer(replay), "replay") as running:
        config = write_station(
            _folder(tmp_path / "replayed") / "station.yaml", broker_port=broker.port,
            links={"lan": {"type": "tcp", "host": "127.0.0.1",
                           "port": running.server.port, "timeout_ms": 1000}},
            devices=[{**GC_DEVICE, "id": "gc-1"}])
        agent = Agent(load_config(config))
        agent.start()
        try:
            # Recording time moves only when the test moves it: to each analysis's first
            # answer, and on once the agent has published it.
            for count, (t, _result) in enumerate(expected, start=1):
                moment[0] = t
                collector.wait_for(lambda c, n=count: len(c.seqs("gc-1")) >= n, 30,
                                   f"analysis {count} from the image replay")
            polled = replay.requests
            wait_until(lambda: replay.requests >= polled + 5, 30, "more polls of the image")
        finally:
            agent.stop()
    published = [gc_published(r.sample) for r in collector.first_deliveries("gc-1")]
    assert [p["cycle"] for p in published] == [r["cycle"] for _t, r in expected]
    for got, (_t, result) in zip(published, expected, strict=True):
        assert got["values"] == pytest.approx(result["values"], rel=1e-6)
        assert (got["stream"], got["time"]) == (result["stream"], result["time"])


def _detector_states(server: SimServer) -> list[Callable[[], None]]:
    states = [DetectorState(state=1, o2_tenths=150, co_ppm=0),  # warming up
              DetectorState(o2_tenths=209, co_ppm=12, h2s_tenths=35, lel=4),
              DetectorState(o2_tenths=208, co_ppm=65535, h2s_tenths=41, lel=5,
                            sensor_faults=0b10),  # CO sensor broken
              DetectorState(o2_tenths=207, co_ppm=17, h2s_tenths=0, lel=0, model="GD-7")]
    return [lambda s=s: server.set_words(7, HOLDING, 0, detector_image(s)) for s in states]


def test_agent_on_an_rtu_bus_against_a_strict_replay_publishes_every_recorded_poll(
        tmp_path, broker, collector):
    """Recorded over Modbus TCP, replayed as an RTU device on a pty: the answers are
    reframed, the agent's serial link polls it, every poll's values come back."""
    path = record_agent(tmp_path, broker.port, 7, DETECTOR_DEVICE, _detector_states)
    expected = detector_expected(path)
    assert {e["model"] for e in expected} == {"MGD4", "GD-7"}
    with replay_command("rtu", str(path), "--pty") as (replay, pty_path):
        config = write_station(
            _folder(tmp_path / "replayed") / "station.yaml", broker_port=broker.port,
            links={"bus": {"type": "serial", "port": pty_path, "timeout_ms": 500}},
            devices=[{**DETECTOR_DEVICE, "id": "det-7", "link": "bus"}])
        agent = Agent(load_config(config))
        agent.start()
        try:
            collector.wait_for(lambda c: len(c.seqs("det-7")) >= len(expected), 60,
                               "every recorded poll from the replay")
            assert_replayed_to_the_end(replay, sum(
                1 for line in path.read_text().splitlines() if '"dir": "tx"' in line))
        finally:
            agent.stop()
    good, after = split_at_end(collector, "det-7", len(expected))
    assert [detector_published(sample) for sample in good] == expected
    o2 = {(s["values"]["o2"]["quality"], s["values"]["o2"]["reason"]) for s in good}
    co = {(s["values"]["co"]["value"], s["values"]["co"]["quality"]) for s in good}
    assert ("SUSPECT", "warmup") in o2 and (None, "BAD") in co  # status words judged too
    assert all(is_failure(sample) for sample in after), after


def test_agent_on_an_rtu_pty_against_an_image_replay_reads_the_recorded_registers(
        tmp_path, broker, collector):
    """The image replay on RTU: the agent's reads are answered from the image, not from
    a script, so a configuration that reads differently (here: only the gases, in one
    request of its own) still gets the recorded values."""
    path = record_agent(tmp_path, broker.port, 7, DETECTOR_DEVICE,
                        lambda server: _detector_states(server)[1:2])
    last = detector_expected(path)[-1]
    replay = ImageReplay(RegisterImage(load_script(read_capture(path))), lambda: 1e9)
    pty = PtyPair()
    try:
        with InBackground(RtuReplayServer(replay, pty.device_path), "replay"):
            channels = [{"name": "co", "address": 3, "type": "uint16", "unit": "ppm"},
                        {"name": "h2s", "address": 4, "type": "uint16", "scale": 0.1,
                         "unit": "ppm"}]
            config = write_station(
                _folder(tmp_path / "replayed") / "station.yaml", broker_port=broker.port,
                links={"bus": {"type": "serial", "port": pty.agent_path, "timeout_ms": 500}},
                devices=[{"id": "gases", "link": "bus", "unit_id": 7, "interval_s": 0.05,
                          "channels": channels}])
            agent = Agent(load_config(config))
            agent.start()
            try:
                collector.wait_for(lambda c: len(c.seqs("gases")) >= 3, 30, "three samples")
            finally:
                agent.stop()
    finally:
        pty.close()
    for received in collector.first_deliveries("gases"):
        assert detector_published(received.sample) == {"co": last["co"], "h2s": last["h2s"]}
