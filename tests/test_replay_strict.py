"""Round trip and strict replay, with real sockets and ptys: a session recorded through the
proxy between the agent's Modbus client and a pymodbus device replays to identical
answers, over TCP and on an RTU pty; a request that differs from the recording, or comes
after its end, is reported and the replay hangs up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.capture_session import (
    EXPECTED,
    FIXTURE,
    HOLDING,
    UNIT,
    gc_unit,
    poll,
    record_session,
    recording_proxy,
    replayed_over_tcp,
    rtu_client,
    tcp_client,
)

from edge_agent.link import LinkError
from edge_agent.tools.capture.files import read_capture
from edge_agent.tools.capture.loopthread import InBackground
from edge_agent.tools.capture.modbus_frames import encode_tcp
from edge_agent.tools.replay.rtu_server import RtuReplayServer
from edge_agent.tools.replay.script import load_script
from edge_agent.tools.replay.strict import Mismatch, StrictReplay
from edge_agent.tools.sim.ptypair import PtyPair
from edge_agent.tools.sim.simserver import SimServer


def _strict(path: Path) -> StrictReplay:
    return StrictReplay(load_script(read_capture(path)))


def test_proxy_is_transparent_and_strict_replay_gives_identical_answers(tmp_path):
    path = tmp_path / "gc.capture.jsonl"
    recorded = record_session(path)
    assert recorded == EXPECTED  # through the proxy, the device answered as itself
    replay = _strict(path)
    with replayed_over_tcp(replay) as client:
        assert poll(client) == recorded
    assert replay.done and replay.mismatches == []


def test_the_proxy_records_both_directions_with_answers_paired_to_requests(tmp_path):
    path = tmp_path / "gc.capture.jsonl"
    record_session(path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["format"] == "edge-agent-capture" and lines[0]["unit_ids"] == [UNIT]
    frames = [line for line in lines[1:] if "dir" in line]
    assert [f["dir"] for f in frames] == ["tx", "rx"] * len(EXPECTED)
    assert all(tx["xid"] == rx["xid"] and tx["tid"] == rx["tid"]
               for tx, rx in zip(frames[::2], frames[1::2], strict=True))
    exception = frames[11]
    assert (exception["fc"], exception["exc"], exception["addr"], exception["count"]) == \
        (0x83, 2, 9, 2)
    assert [line["event"] for line in lines[1:] if "event" in line] == ["open", "close"]


def test_a_recorded_fixture_still_replays_strictly():
    """A capture recorded by an earlier build: format version 1 must stay readable."""
    replay = _strict(FIXTURE)
    with replayed_over_tcp(replay) as client:
        assert poll(client) == EXPECTED
    assert replay.done


def test_a_tcp_recording_replays_as_an_rtu_device_on_a_pty():
    replay = _strict(FIXTURE)
    with (
        PtyPair() as pty,
        InBackground(RtuReplayServer(replay, pty.device_path), "replay"),
        rtu_client(pty.agent_path) as client,
    ):
        assert poll(client) == EXPECTED
    assert replay.done


def test_strict_replay_reports_a_request_that_differs_from_the_recording():
    replay = _strict(FIXTURE)
    with replayed_over_tcp(replay) as client:
        assert client.read_registers(UNIT, HOLDING, 0, 3) == [11, 12, 13]
        with pytest.raises(LinkError):
            client.read_registers(UNIT, HOLDING, 0, 4)  # the recording read input 3+1
    assert replay.mismatches == [Mismatch(
        2, encode_tcp(2, UNIT, bytes.fromhex("0300000004")),
        encode_tcp(2, UNIT, bytes.fromhex("0400030001")), "request differs from the recording")]
    assert not replay.done


def test_strict_replay_reports_a_request_after_the_end_of_the_recording():
    replay = _strict(FIXTURE)
    with replayed_over_tcp(replay) as client:
        poll(client)
        with pytest.raises(LinkError):
            client.read_registers(UNIT, HOLDING, 0, 3)
    [mismatch] = replay.mismatches
    assert (mismatch.number, mismatch.expected) == (len(EXPECTED) + 1, None)
    assert "the recording has no more requests (it held 8)" in str(mismatch)


def test_a_request_the_device_never_answered_stays_unanswered_in_replay(tmp_path):
    path = tmp_path / "muted.capture.jsonl"
    unit = gc_unit()
    with SimServer([unit], tcp_port=0) as server, \
            recording_proxy(server.tcp_port, path) as port:
        server.mute(UNIT)
        # one request: a whole poll() is 8 timeouts (2.4 s) and proves no more
        with tcp_client(port, timeout_ms=300) as client:
            assert client_outcome(client) == "timeout"
    replay = _strict(path)
    with replayed_over_tcp(replay, timeout_ms=300) as client:
        assert client_outcome(client) == "timeout"
    assert replay.mismatches == [] and replay.served == 1 and replay.done


def client_outcome(client) -> object:  # noqa: ANN001
    try:
        return client.read_registers(UNIT, HOLDING, 0, 3)
    except LinkError as err:
        return err.reason
