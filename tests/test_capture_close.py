"""Closing the recording proxy or the TCP replay server while a master is still connected:
the connection is ended, not left hanging, and the proxy records its close. Real sockets,
a real pymodbus device behind the proxy."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

from support.capture_session import FIXTURE, UNIT, gc_unit
from support.waiting import wait_until

from edge_agent.tools.capture.files import CaptureWriter, read_capture
from edge_agent.tools.capture.format import Header, LinkInfo
from edge_agent.tools.capture.loopthread import InBackground, LoopThread
from edge_agent.tools.capture.proxy import RecordingProxy
from edge_agent.tools.replay.script import load_script
from edge_agent.tools.replay.strict import StrictReplay
from edge_agent.tools.replay.tcp_server import TcpReplayServer
from edge_agent.tools.sim.simserver import SimServer

READ_REQUEST = bytes.fromhex("000100000006050300000003")  # unit 5, holding 0+3
READ_ANSWER = bytes.fromhex("000100000009050306000b000c000d")  # 11, 12, 13


def ended_by_the_server(master: socket.socket) -> bool:
    """The server closed the connection: the master reads end of file (or a reset)."""
    master.settimeout(10)
    try:
        return master.recv(1) == b""
    except ConnectionResetError:
        return True


def test_closing_the_proxy_ends_an_open_session_and_records_its_close(tmp_path):
    """The session is open, forwarding, when the proxy closes: one exchange goes through
    it first. (Waiting only for its "open" event raced the proxy's connection to the
    device: under a loaded -n 2 run the close came while that connection was still being
    made, and no close event was written.)"""
    path = tmp_path / "open.capture.jsonl"
    with SimServer([gc_unit()], tcp_port=0) as device:
        header = Header(datetime.now(UTC), "proxy", (LinkInfo(
            "gc", "modbus-tcp", f"127.0.0.1:{device.tcp_port}"),), unit_ids=(UNIT,))
        writer = CaptureWriter.create(path, header)
        thread = LoopThread("proxy")
        proxy = RecordingProxy(("127.0.0.1", device.tcp_port), writer, "gc")
        try:
            port = thread.run(proxy.start("127.0.0.1", 0))
            with socket.create_connection(("127.0.0.1", port), timeout=10) as master:
                wait_until(lambda: '"event": "open"' in path.read_text(), 10,
                           "the proxy to record the session's start")
                master.sendall(READ_REQUEST)
                answer = b""
                while len(answer) < len(READ_ANSWER) and (chunk := master.recv(64)):
                    answer += chunk
                assert answer == READ_ANSWER  # forwarded both ways
                thread.run(proxy.close())
                assert ended_by_the_server(master)
        finally:
            thread.stop()
            writer.close()
    events = [(r.event, r.note) for r in read_capture(path).records if hasattr(r, "event")]
    assert events == [("open", None), ("close", "closed by the proxy")]


def test_closing_the_tcp_replay_server_ends_an_open_connection():
    replay = StrictReplay(load_script(read_capture(FIXTURE)))
    running = InBackground(TcpReplayServer(replay), "replay")
    try:
        master = socket.create_connection(("127.0.0.1", running.server.port), timeout=10)
        master.sendall(READ_REQUEST)  # the recording's first request: holding 0+3
        assert master.recv(64) == READ_ANSWER  # the connection is being served
    finally:
        running.stop()  # returns only once the connection's task has ended
    with master:
        assert ended_by_the_server(master)


def test_closing_the_proxy_while_it_connects_to_the_device_records_the_close(tmp_path):
    """A device that does not accept the connection yet (its accept queue is full, so the
    kernel holds the proxy's SYN): closing the proxy then cancels the connect, and the
    capture still gets the session's close after its open."""
    path = tmp_path / "connecting.capture.jsonl"
    with socket.socket() as device:
        device.bind(("127.0.0.1", 0))
        device.listen(0)
        target = device.getsockname()
        fillers = []
        for _ in range(3):  # Linux queues backlog + 1; the rest hang in SYN retries
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(target)
            fillers.append(filler)
        header = Header(datetime.now(UTC), "proxy", (LinkInfo(
            "gc", "modbus-tcp", f"127.0.0.1:{target[1]}"),), unit_ids=(UNIT,))
        writer = CaptureWriter.create(path, header)
        thread = LoopThread("proxy")
        proxy = RecordingProxy(target, writer, "gc")
        try:
            port = thread.run(proxy.start("127.0.0.1", 0))
            with socket.create_connection(("127.0.0.1", port), timeout=10):
                wait_until(lambda: '"event": "open"' in path.read_text(), 10,
                           "the proxy to record the session's start")
                thread.run(proxy.close())
        finally:
            thread.stop()
            for filler in fillers:
                filler.close()
        events = [r.event for r in read_capture(path).records if hasattr(r, "event")]
        assert events == ["open", "close"]
