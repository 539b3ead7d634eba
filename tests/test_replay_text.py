"""Replay as a serial text-protocol device (``edge-agent replay text``): a text instrument
recorded on the agent's own link plays back strictly, to a second agent that publishes
what the first one published; requests are compared byte by byte as they arrive; answers
keep their delays and silences; streamed records go out on their recorded schedule."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from support.capture_session import assert_replayed_to_the_end
from support.command import running, served_at
from support.station import write_station
from support.textreplay import H2S_TEXT
from support.waiting import wait_until

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.tools.capture.files import Capture, read_capture
from edge_agent.tools.capture.format import Frame, Header, LinkInfo
from edge_agent.tools.capture.loopthread import InBackground
from edge_agent.tools.capture.recorder import flush_recordings
from edge_agent.tools.replay.script import ScriptError, load_script
from edge_agent.tools.replay.text import StrictTextReplay, load_text_script
from edge_agent.tools.replay.text_server import TextReplayServer
from edge_agent.tools.sim.ptypair import PtyPair
from edge_agent.tools.sim.textdevice import H2sStreamSim, NoxAnalyzerSim, TextDeviceSim

CST = timezone(timedelta(hours=8))
NOX = {"profile": "generic-text-analyzer", "unit_id": 7, "interval_s": 0.05}


def _text_capture(*frames: tuple[float, str, int | None, bytes]) -> Capture:
    header = Header(datetime(2026, 3, 1, tzinfo=UTC), "agent",
                    (LinkInfo("line", "text", "/dev/ttyUSB1"),))
    return Capture(header, tuple(Frame(t, d, "line", data, xid=xid)
                                 for t, d, xid, data in frames))


SCRIPTED = _text_capture(
    (1.0, "tx", 1, b"\x02DA07\x03"), (1.02, "rx", 1, b"\x02MD07,+12.3\x03\r\n"),
    (2.0, "tx", 2, b"\x02DA07\x03"),  # unanswered
    (3.0, "tx", 3, b"\x02DA07\x03"), (3.5, "rx", 3, b"first line\r\n"),
    (3.6, "rx", 3, b"second line\r\n"),
    (4.0, "rx", None, b"$H2S,1*00\r\n"), (4.25, "rx", None, b"$H2S,2*00\r\n"))


def test_requests_are_compared_as_their_bytes_arrive_and_answered_with_recorded_delays():
    replay = StrictTextReplay(load_text_script(SCRIPTED))
    assert replay.feed(b"\x02DA").answers == ()  # the rest of the request is on its way
    assert replay.feed(b"07\x03").answers == ((pytest.approx(0.02), b"\x02MD07,+12.3\x03\r\n"),)
    assert replay.feed(b"\x02DA07\x03").answers == ()  # the recording had silence
    assert replay.feed(b"\x02DA07\x03").answers == ((0.5, b"first line\r\n"),
                                                    (pytest.approx(0.6), b"second line\r\n"))
    assert replay.script.streamed == ((0.0, b"$H2S,1*00\r\n"), (0.25, b"$H2S,2*00\r\n"))
    assert replay.served == 3 and not replay.done  # the streamed records are not sent yet
    replay.streamed_sent = 2
    assert replay.done


def test_a_differing_byte_or_a_request_after_the_end_mutes_the_replay():
    replay = StrictTextReplay(load_text_script(SCRIPTED))
    sends = replay.feed(b"\x02DA08")
    assert sends.mute and sends.answers == ()
    assert str(replay.mismatches[0]) == ("request 1: request differs from the recording: "
                                         "received <STX>DA08, recording has <STX>DA07<ETX>")
    assert replay.feed(b"\x02DA07\x03").mute
    late = StrictTextReplay(load_text_script(_text_capture((1.0, "tx", 1, b"R\r"))))
    assert late.feed(b"R\r").answers == ()
    assert late.feed(b"R").mute
    assert str(late.mismatches[0]) == ("request 2: the recording has no more requests (it "
                                       "held 1): received R, recording has nothing")


def test_text_and_modbus_replays_refuse_each_other_s_links():
    with pytest.raises(ScriptError, match="is a text link: replay it with 'replay text'"):
        load_script(SCRIPTED)
    modbus = Capture(Header(datetime(2026, 3, 1, tzinfo=UTC), "proxy",
                            (LinkInfo("gc", "modbus-tcp", "x:502"),)), ())
    with pytest.raises(ScriptError, match="no text link: replay a Modbus capture"):
        load_text_script(modbus)


def _record(tmp_path: Path, broker_port: int, sim: TextDeviceSim, agent_path: str,
            device: dict, enough) -> Path:  # noqa: ANN001 - a predicate
    """Poll ``sim`` with an agent recording its link; returns the capture."""
    folder = tmp_path / "recording"
    folder.mkdir()
    config = write_station(folder / "station.yaml", broker_port=broker_port, links={
        "line": {"type": "serial", "port": agent_path, "protocol": "text",
                 "baudrate": 19200, "timeout_ms": 300, "record": "line.capture.jsonl"}},
        devices=[device])
    agent = Agent(load_config(config))
    agent.start()
    try:
        wait_until(enough, 60, "the recording agent's samples")
    finally:
        agent.stop()
        sim.stop()
    assert flush_recordings()
    return folder / "line.capture.jsonl"


@contextmanager
def replaying(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``edge-agent replay text ... --pty``, and the path the agent opens."""
    with running("replay", "text", *args, "--pty") as (process, first):
        yield process, served_at(first, r"as a text instrument on (\S+);")


def _replayed_agent(tmp_path: Path, broker_port: int, path: str, device: dict) -> Agent:
    folder = tmp_path / "replayed"
    folder.mkdir()
    config = write_station(folder / "station.yaml", broker_port=broker_port, links={
        "line": {"type": "serial", "port": path, "protocol": "text", "baudrate": 19200,
                 "timeout_ms": 300}}, devices=[device])
    agent = Agent(load_config(config))
    agent.start()
    return agent


def _published(collector, device: str) -> list[tuple]:
    return [(r.sample.get("instrument_time"),
             {name: (v["value"], v["quality"], v["reason"])
              for name, v in r.sample["values"].items()})
            for r in collector.first_deliveries(device)]


def test_agent_against_a_replayed_text_analyser_publishes_what_the_instrument_said(
        tmp_path, broker, collector):
    model = NoxAnalyzerSim(address=7, clock=lambda: datetime(2024, 5, 6, 14, 30, tzinfo=CST))
    with PtyPair() as pty:
        sim = TextDeviceSim(model, pty.device_path).start()
        sim.queue("silent", "noise", "bad_checksum")

        changed_at: list[int] = []

        def change_midway() -> bool:
            """After four samples the analyser calibrates, without SO2; four more."""
            polled = len(collector.seqs("recorded"))
            if polled >= 4 and not changed_at:
                model.status, model.values["so2"] = "C", None
                changed_at.append(polled)
            return bool(changed_at) and polled >= changed_at[0] + 4

        path = _record(tmp_path, broker.port, sim, pty.agent_path,
                       {**NOX, "id": "recorded", "link": "line"}, change_midway)
    recorded = _published(collector, "recorded")
    requests = len([f for f in read_capture(path).frames() if f.dir == "tx"])
    with replaying(str(path)) as (replay, agent_path):
        agent = _replayed_agent(tmp_path, broker.port, agent_path,
                                {**NOX, "id": "replayed", "link": "line"})
        try:
            collector.wait_for(lambda c: len(c.seqs("replayed")) >= len(recorded), 60,
                               "as many samples as the recording run published")
            assert_replayed_to_the_end(replay, requests)
        finally:
            agent.stop()
    assert _published(collector, "replayed")[:len(recorded)] == recorded
    reasons = {v[2] for _time, values in recorded for v in values.values()}
    assert {"timeout", "bad_checksum", "calibrating"} <= reasons  # the faults were replayed


def test_agent_against_a_replayed_streaming_analyser_publishes_its_records_in_order(
        tmp_path, broker, collector):
    model = H2sStreamSim(period_s=0.05)
    with PtyPair() as pty:
        sim = TextDeviceSim(model, pty.device_path).start()

        def vary() -> bool:
            model.value = round(0.001 * (model.sent + 1), 3)  # the records' values vary
            return len(collector.seqs("recorded")) >= 10

        path = _record(tmp_path, broker.port, sim, pty.agent_path,
                       {"id": "recorded", "link": "line", "driver": "serial-text",
                        "interval_s": 0.1, "text": H2S_TEXT}, vary)
    script = load_text_script(read_capture(path))
    assert script.exchanges == () and len(script.streamed) >= 10
    values = [float(data.split(b",")[1]) for _t, data in script.streamed]
    pty = PtyPair()
    server = TextReplayServer(StrictTextReplay(script), pty.device_path, baudrate=19200)
    try:
        agent = _replayed_agent(tmp_path, broker.port, pty.agent_path,
                                {"id": "replayed", "link": "line", "driver": "serial-text",
                                 "interval_s": 0.1, "text": H2S_TEXT})
        try:
            collector.wait_for(lambda c: len(c.seqs("replayed")) >= 1, 30, "a sample")
            with InBackground(server, "replay"):
                wait_until(lambda: server.finished, 60, "every record streamed")
                last = values[-1]
                collector.wait_for(lambda c: any(
                    r.sample["values"]["h2s"]["value"] == last
                    for r in c.first_deliveries("replayed")), 30, "the last record")
        finally:
            agent.stop()
    finally:
        pty.close()
    published = [r.sample["values"]["h2s"]["value"] for r in collector.first_deliveries(
        "replayed") if r.sample["values"]["h2s"]["quality"] == "GOOD"]
    assert published and set(published) <= set(values)
    assert [values.index(v) for v in published] == sorted(values.index(v) for v in published)
