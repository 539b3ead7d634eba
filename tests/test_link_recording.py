"""Recording on the agent's own links (``record:``, ``edge-agent run --record``): every frame
the agent sends and receives on a serial RTU bus or a text-protocol link lands in the
capture, as the device saw it, and replays to the same readings; a capture file that
cannot be written (a full disk, a stuck one) never holds up or breaks polling, and says
so once. Real ptys, real pymodbus and text devices, a real Mosquitto."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from edge_agent_drivers.modbus.settings import RegisterKind
from support.station import AgentProcess, write_station
from support.waiting import wait_until

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.tools.capture import recorder
from edge_agent.tools.capture.files import CaptureWriter, read_capture
from edge_agent.tools.capture.format import LinkInfo
from edge_agent.tools.capture.loopthread import InBackground
from edge_agent.tools.capture.recorder import flush_recordings
from edge_agent.tools.replay.rtu_server import RtuReplayServer
from edge_agent.tools.replay.script import load_script
from edge_agent.tools.replay.strict import StrictReplay
from edge_agent.tools.sim.images import DetectorState, detector_image
from edge_agent.tools.sim.ptypair import PtyPair
from edge_agent.tools.sim.simserver import SimServer, SimUnit
from edge_agent.tools.sim.textdevice import NoxAnalyzerSim, TextDeviceSim

HOLDING = RegisterKind.HOLDING
CST = timezone(timedelta(hours=8))
DETECTOR = {"unit_id": 7, "profile": "generic-gas-detector", "interval_s": 0.05}
RECORDER_LOG = "edge_agent.tools.capture.recorder"


def run_agent(config: Path, until, what: str) -> None:  # noqa: ANN001 - a predicate
    """Run an agent in this process until ``until()`` holds, then stop it and wait until
    its recordings are written."""
    agent = Agent(load_config(config))
    agent.start()
    try:
        wait_until(until, 60, what)
    finally:
        agent.stop()
    assert flush_recordings()


def station(folder: Path, broker_port: int, links: dict, devices: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_station(folder / "station.yaml", links=links, devices=devices,
                         broker_port=broker_port)


def values(sample: dict) -> dict:
    return {name: (v["value"], v["quality"], v["reason"]) for name, v in sample["values"].items()}


def recorder_logs(caplog, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == RECORDER_LOG
            and r.levelno == level]


def test_rtu_bus_recorded_by_the_agent_holds_every_frame_and_replays_to_the_same_values(
        tmp_path, broker, collector):
    path = tmp_path / "recording" / "bus.capture.jsonl"
    with PtyPair() as pty:
        server = SimServer([SimUnit(7)], serial_port=pty.device_path).start()
        server.set_words(7, HOLDING, 0, detector_image(DetectorState(co_ppm=12, lel=3)))
        config = station(tmp_path / "recording", broker.port, devices=[
            {**DETECTOR, "id": "recorded", "link": "bus"}], links={"bus": {
                "type": "serial", "port": pty.agent_path, "timeout_ms": 500,
                "record": "bus.capture.jsonl"}})  # relative: next to the outbox
        try:
            changed_at: list[int] = []

            def change_once_polled() -> bool:
                """After four samples the CO sensor breaks; four more are recorded."""
                polled = len(collector.seqs("recorded"))
                if polled >= 4 and not changed_at:
                    server.set_words(7, HOLDING, 0, detector_image(DetectorState(
                        state=2, co_ppm=65535, h2s_tenths=15)))
                    changed_at.append(polled)
                return bool(changed_at) and polled >= changed_at[0] + 4

            run_agent(config, change_once_polled, "eight samples, a fault among them")
            served = server.requests
        finally:
            server.stop()
    capture = read_capture(path)  # every line checked against its own bytes
    link = capture.header.links[0]
    assert (link.protocol, link.endpoint, link.baudrate, link.parity) == (
        "modbus-rtu", pty.agent_path, 9600, "N")
    frames = capture.frames()
    requests = [f for f in frames if f.dir == "tx"]
    assert [(f.info.unit_id, f.info.function_code, f.info.address, f.info.count)
            for f in requests] == [(r.unit_id, r.function_code, r.address, r.count)
                                   for r in served]
    answers = {f.xid: f for f in frames if f.dir == "rx"}
    assert sorted(answers) == [f.xid for f in requests]  # each answered, paired to it
    assert not [f for f in frames if f.info.malformed]
    recorded = [values(r.sample) for r in collector.first_deliveries("recorded")]

    replay = StrictReplay(load_script(capture))
    with PtyPair() as pty, InBackground(RtuReplayServer(replay, pty.device_path), "replay"):
        config = station(tmp_path / "replayed", broker.port, devices=[
            {**DETECTOR, "id": "replayed", "link": "bus"}], links={"bus": {
                "type": "serial", "port": pty.agent_path, "timeout_ms": 500}})
        run_agent(config, lambda: replay.served == len(requests) and len(
            collector.seqs("replayed")) >= len(recorded), "the whole recording replayed")
    replayed = [values(r.sample) for r in collector.first_deliveries("replayed")]
    assert replayed[:len(recorded)] == recorded
    assert recorded[-1]["co"] == (None, "BAD", "sentinel")  # the new state was recorded
    assert not [m for m in replay.mismatches if m.expected is not None]


def test_text_link_recorded_by_the_agent_holds_requests_and_answers_as_sent(
        tmp_path, broker, collector):
    model = NoxAnalyzerSim(address=7, clock=lambda: datetime(2024, 5, 6, 14, 30, tzinfo=CST))
    path = tmp_path / "nox.capture.jsonl"
    with PtyPair() as pty:
        sim = TextDeviceSim(model, pty.device_path).start()
        sim.queue("silent", "noise")  # one request unanswered, one answer after noise
        config = station(tmp_path / "recording", broker.port, devices=[
            {"id": "nox-7", "link": "line", "profile": "generic-text-analyzer",
             "unit_id": 7, "interval_s": 0.05}], links={"line": {
                "type": "serial", "port": pty.agent_path, "protocol": "text",
                "baudrate": 19200, "timeout_ms": 300, "record": str(path)}})
        try:
            run_agent(config, lambda: len(collector.seqs("nox-7")) >= 5, "five samples")
        finally:
            sim.stop()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["version"] == 2 and lines[0]["links"]["line"]["protocol"] == "text"
    capture = read_capture(path)
    requests = [f for f in capture.frames() if f.dir == "tx"]
    answers = [f for f in capture.frames() if f.dir == "rx"]
    assert [f.data for f in requests] == sim.requests  # every request, as the device got it
    answer = model.record(False)
    assert [f.data for f in answers] == [b"\x00\xff#~garbage~\x7f" + answer] + [answer] * (
        len(answers) - 1)
    answered = [f.xid for f in answers]
    assert answered == [f.xid for f in requests[1:len(answers) + 1]]  # the first: silence
    shown = [line["text"] for line in lines if line.get("dir") == "tx"]
    assert set(shown) == {"<STX>DA07<ETX>"}


@pytest.mark.parametrize("record, error", [
    # /dev/full fails every write with ENOSPC, as a full disk does, root or not
    ("/dev/full", "cannot record into /dev/full: No space left on device; polling goes on"),
    # a folder that cannot exist: the capture file cannot even be opened
    ("/dev/null/x.capture.jsonl",
     "cannot record into /dev/null/x.capture.jsonl: Not a directory"),
], ids=["full-disk", "cannot-open"])
def test_a_recording_that_fails_is_logged_once_and_polling_goes_on(
        tmp_path, broker, collector, caplog, record, error):
    caplog.set_level(logging.INFO, logger="edge_agent")
    server = SimServer([SimUnit(1, holding={0: 42})], tcp_port=0).start()
    config = station(tmp_path, broker.port, devices=[
        {"id": "dev", "link": "lan", "unit_id": 1, "interval_s": 0.02,
         "channels": [{"name": "r0", "address": 0}]}], links={"lan": {
            "type": "tcp", "host": "127.0.0.1", "port": server.tcp_port, "record": record}})
    try:
        run_agent(config, lambda: len(collector.seqs("dev")) >= 20, "twenty samples")
    finally:
        server.stop()
    errors = recorder_logs(caplog, logging.ERROR)
    assert len(errors) == 1, errors
    assert error in errors[0]
    assert {values(r.sample)["r0"] for r in collector.first_deliveries("dev")} == {
        (42, "GOOD", None)}


def test_a_capture_file_that_stops_taking_writes_never_holds_up_polling(
        tmp_path, broker, collector, caplog, monkeypatch):
    """A named pipe nobody reads is a disk that hangs: the recorder's writes block. Polling
    goes on, the traffic that does not fit the queue is dropped (said once); when the
    pipe breaks, the write error is said once too."""
    caplog.set_level(logging.INFO, logger="edge_agent")
    monkeypatch.setattr(recorder, "QUEUE_LIMIT", 20)
    fifo = tmp_path / "stuck.capture.jsonl"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    fcntl.fcntl(reader, fcntl.F_SETPIPE_SZ, 4096)  # the smallest pipe: full in ~20 lines
    server = SimServer([SimUnit(1, holding={0: 42})], tcp_port=0).start()
    config = station(tmp_path, broker.port, devices=[
        {"id": "dev", "link": "lan", "unit_id": 1, "interval_s": 0.01,
         "channels": [{"name": "r0", "address": 0}]}], links={"lan": {
            "type": "tcp", "host": "127.0.0.1", "port": server.tcp_port,
            "record": str(fifo)}})
    agent = Agent(load_config(config))
    agent.start()
    try:
        wait_until(lambda: recorder_logs(caplog, logging.WARNING), 60,
                   "the recorder to fall behind")
        stuck_at = len(collector.seqs("dev"))
        collector.wait_for(lambda c: len(c.seqs("dev")) >= stuck_at + 30, 60,
                           "thirty more samples while the capture file is stuck")
        os.close(reader)  # the pipe breaks: the blocked write fails
        wait_until(lambda: recorder_logs(caplog, logging.ERROR), 30, "the write error")
        more = len(collector.seqs("dev"))
        collector.wait_for(lambda c: len(c.seqs("dev")) >= more + 10, 60,
                           "ten more samples after the write error")
    finally:
        agent.stop()
        server.stop()
    assert flush_recordings()
    warnings, errors = recorder_logs(caplog, logging.WARNING), recorder_logs(caplog,
                                                                             logging.ERROR)
    assert len(warnings) == 1 and "traffic is dropped from the recording" in warnings[0]
    assert len(errors) == 1 and "cannot write" in errors[0] and "Broken pipe" in errors[0]


def test_a_restarted_agent_continues_its_recording_and_answers_still_pair(
        tmp_path, broker, collector, caplog):
    caplog.set_level(logging.INFO, logger="edge_agent")
    server = SimServer([SimUnit(1, holding={0: 7, 1: 8})], tcp_port=0).start()
    path = tmp_path / "lan.capture.jsonl"
    config = station(tmp_path, broker.port, devices=[
        {"id": "dev", "link": "lan", "unit_id": 1, "interval_s": 0.02,
         "channels": [{"name": "a", "address": 0}, {"name": "b", "address": 1}]}],
        links={"lan": {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port,
                       "record": str(path)}})
    try:
        run_agent(config, lambda: len(server.requests) >= 3, "three polls")
        with path.open("a") as file:
            file.write('{"t": 9.5, "dir": "tx", "li')  # a power cut in the middle of a line
        polled = len(server.requests)  # the first agent has stopped: all of them are its
        run_agent(config, lambda: len(server.requests) >= polled + 3, "three more polls")
    finally:
        server.stop()
    capture = read_capture(path)  # one header, every line whole
    frames = capture.frames()
    assert sorted({f.conn for f in frames}) == [1, 2]
    requests = [f.xid for f in frames if f.dir == "tx"]
    assert requests == sorted(set(requests))  # numbering went on, never reused
    pairs = {(f.xid, f.conn) for f in frames if f.dir == "rx"}
    assert pairs == {(f.xid, f.conn) for f in frames if f.dir == "tx"}
    assert [r.event for r in capture.records if not hasattr(r, "dir")] == [
        "open", "close", "open", "close"]
    assert any("last record was cut short" in m for m in caplog.messages)
    assert len(load_script(capture).exchanges) == len(requests)


def test_edge_agent_run_record_records_every_link_into_a_folder(tmp_path, broker, collector):
    server = SimServer([SimUnit(1, holding={0: 5})], tcp_port=0).start()
    config = station(tmp_path, broker.port, devices=[
        {"id": "dev", "link": "lan", "unit_id": 1, "interval_s": 0.05,
         "channels": [{"name": "a", "address": 0}]}],
        links={"lan": {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port}})
    folder = tmp_path / "captures"
    process = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", str(config),
                                "--record", str(folder)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        collector.wait_for(lambda c: len(c.seqs("dev")) >= 3, 60, "three samples")
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        server.stop()
    assert process.returncode == 0, err
    assert f"recording link lan into {folder / 'lan.capture.jsonl'}" in err
    capture = read_capture(folder / "lan.capture.jsonl")
    assert len([f for f in capture.frames() if f.dir == "tx"]) >= 3
    assert capture.records[-1].event == "close"  # written to the end before the exit


def test_reloading_a_recording_link_keeps_every_frame_of_every_run_in_order(
        tmp_path, broker):
    """Each reload restarts the link's poller: the old run's recorder must have written
    its last records and closed the file before the new run continues it, so no run's
    lines overwrite another's. A real agent process, SIGHUP as ``systemctl reload``."""
    server = SimServer([SimUnit(1, holding={n: n for n in range(40)})], tcp_port=0).start()
    path = tmp_path / "lan.capture.jsonl"
    channels = [{"name": f"r{n}", "address": 2 * n} for n in range(20)]  # 20 requests/poll

    def write(interval_s: float) -> Path:
        return station(tmp_path, broker.port, devices=[
            {"id": "dev", "link": "lan", "unit_id": 1, "interval_s": interval_s,
             "channels": channels}], links={"lan": {
                "type": "tcp", "host": "127.0.0.1", "port": server.tcp_port,
                "record": str(path)}})

    def polls(what: str) -> None:
        target = len(server.requests) + 200
        wait_until(lambda: len(server.requests) >= target or not agent.alive(), 60, what)

    agent = AgentProcess(write(0.001), tmp_path / "agent.log").start().wait_running()
    reloads = 4
    try:
        for run in range(1, reloads + 1):
            polls(f"run {run} to poll")
            write(0.001 * (run + 1))  # the device changed: its poller restarts
            agent.reload()
            wait_until(lambda: agent.log().count("reload of") >= run  # noqa: B023
                       or not agent.alive(), 60, f"reload {run}")
        polls("the last run to poll")
        assert agent.terminate() == 0, agent.log()[-3000:]
    finally:
        if agent.alive():
            agent.kill()
        served = server.requests
        server.stop()
    capture = read_capture(path)  # one header, every line whole
    assert capture.header.links[0].endpoint == f"127.0.0.1:{server.tcp_port}"
    assert [r.event for r in capture.records if not hasattr(r, "dir")] == [
        "open", "close"] * (reloads + 1)  # each run's connection, whole and in turn
    frames = capture.frames()
    requests = [f for f in frames if f.dir == "tx"]
    assert [(f.info.address, f.info.count) for f in requests] == [
        (r.address, r.count) for r in served]  # every request of every run, in order
    assert [f.xid for f in requests] == list(range(1, len(requests) + 1))
    assert sorted(f.xid for f in frames if f.dir == "rx") == [f.xid for f in requests]
    assert [f.t for f in frames] == sorted(f.t for f in frames)
    assert "recorded with other settings" not in agent.log()


def test_a_link_recorder_that_follows_a_finishing_one_never_writes_over_its_last_records(
        tmp_path, monkeypatch, caplog):
    """The old run's writer is held before it writes its last records (a slow disk); the
    next run's recorder of the same file must wait for it, so both runs' records end up
    whole and in order. Without that, the new run appends first and the old writer then
    writes over those lines. Real recorder threads and a real file."""
    caplog.set_level(logging.DEBUG, logger=RECORDER_LOG)
    path = tmp_path / "line.capture.jsonl"
    info = LinkInfo("line", "text", "/dev/ttyS9", baudrate=9600, bytesize=8, parity="N",
                    stopbits=1)
    held, release = [], threading.Event()
    write = CaptureWriter.write

    def write_when_released(self, records):  # noqa: ANN001, ANN202
        if self in held:
            release.wait()
        return write(self, records)

    opened = recorder.open_capture

    def open_holding_the_first(path, header):  # noqa: ANN001, ANN202
        result = opened(path, header)
        if not held:
            held.append(result.writer)
        return result

    monkeypatch.setattr(CaptureWriter, "write", write_when_released)
    monkeypatch.setattr(recorder, "open_capture", open_holding_the_first)

    def run(requests: list[bytes]) -> threading.Thread:
        """One run of the link: traffic, then the client closes (on its own thread)."""
        closing = threading.Thread(target=traffic(path, info, requests).finish)
        closing.start()
        return closing

    first = run([b"A1\r\n", b"A2\r\n"])
    wait_until(lambda: held, 30, "the first run to open its file")
    second = run([b"B1\r\n", b"B2\r\n"])
    wait_until(lambda: len(path.read_bytes().splitlines()) > 1 or any(
        "waiting for the previous recording" in m for m in caplog.messages), 30,
        "the second run to write, or to wait for the first")
    release.set()
    for closing in (first, second):
        closing.join(30)
        assert not closing.is_alive()
    capture = read_capture(path)
    assert [f.data for f in capture.frames()] == [
        b"A1\r\n", b"OK A1\r\n", b"A2\r\n", b"OK A2\r\n",
        b"B1\r\n", b"OK B1\r\n", b"B2\r\n", b"OK B2\r\n"]
    assert [r.event for r in capture.records if not hasattr(r, "dir")] == [
        "open", "close", "open", "close"]


def serial_line(baudrate: int) -> LinkInfo:
    return LinkInfo("line", "text", "/dev/ttyS9", baudrate=baudrate, bytesize=8,
                    parity="N", stopbits=1)


def traffic(path: Path, info: LinkInfo, requests: list[bytes]) -> recorder.LinkRecorder:
    """One run of a link recorded into ``path``: opened, each request answered
    ``OK <request>``, closed; not yet finished (its file not yet written to the end)."""
    link = recorder.LinkRecorder(path, info, tcp=False)
    link.opened()
    for request in requests:
        link.sent(request)
        link.received(b"OK " + request)
    link.closed()
    return link


def record_run(path: Path, info: LinkInfo, requests: list[bytes]) -> recorder.LinkRecorder:
    link = traffic(path, info, requests)
    assert link.finish()
    return link


def test_a_recording_continues_only_under_a_header_that_still_describes_the_link(
        tmp_path, caplog):
    """A reload changed the baudrate: the earlier recording is kept aside under its own
    header, and the new run starts a file whose header says the new settings."""
    caplog.set_level(logging.INFO, logger=RECORDER_LOG)
    path = tmp_path / "line.capture.jsonl"
    record_run(path, serial_line(9600), [b"A1\r\n"])
    record_run(path, serial_line(9600), [b"A2\r\n"])  # same settings: continued
    record_run(path, serial_line(19200), [b"B1\r\n"])
    current = read_capture(path)
    assert current.header.links[0].baudrate == 19200
    assert [f.data for f in current.frames()] == [b"B1\r\n", b"OK B1\r\n"]
    [aside] = [p for p in tmp_path.iterdir() if p != path]
    assert aside.name.startswith("line.") and aside.name.endswith(".capture.jsonl")
    earlier = read_capture(aside)
    assert earlier.header.links[0].baudrate == 9600
    assert [f.data for f in earlier.frames() if f.dir == "tx"] == [b"A1\r\n", b"A2\r\n"]
    assert any("baudrate 9600 -> 19200" in m for m in caplog.messages)


def test_an_unexpected_error_in_the_recorder_is_logged_once_and_recording_stops(
        tmp_path, caplog, monkeypatch):
    """Not an OSError (a bug): the writer thread must not die with its queue filling up
    behind it; it says so once, like a failed disk, and keeps taking the traffic."""
    caplog.set_level(logging.INFO, logger=RECORDER_LOG)

    def broken(self, records):  # noqa: ANN001, ANN202
        raise ValueError("a bug in the writer")

    monkeypatch.setattr(CaptureWriter, "write", broken)
    link = record_run(tmp_path / "line.capture.jsonl", serial_line(9600),
                      [b"%d\r\n" % n for n in range(50)])
    errors = recorder_logs(caplog, logging.ERROR)
    assert len(errors) == 1, errors
    assert "a bug in the writer" in errors[0] and "polling goes on" in errors[0]
    assert link.failure is not None
