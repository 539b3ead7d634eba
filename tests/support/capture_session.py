"""A recorded polling session for the capture and replay tests: a GC-like simulated
device, a recording proxy in front of it, and the fixed sequence of requests a master
makes, with what each one got (values, or the error's reason)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from edge_agent_drivers.modbus.protocol.transport import ModbusLinkClient
from edge_agent_drivers.modbus.settings import RegisterKind

from edge_agent.config.schema import SerialLink, TcpLink
from edge_agent.link import LinkError
from edge_agent.tools.capture.files import CaptureWriter
from edge_agent.tools.capture.format import Header, LinkInfo
from edge_agent.tools.capture.loopthread import InBackground, LoopThread
from edge_agent.tools.capture.proxy import RecordingProxy
from edge_agent.tools.replay.serve import Responder
from edge_agent.tools.replay.tcp_server import TcpReplayServer
from edge_agent.tools.sim.simserver import SimServer, SimUnit
from support.waiting import wait_until

TESTS = Path(__file__).resolve().parent.parent
FIXTURE = TESTS / "fixtures" / "captures" / "gc-sim.capture.jsonl"
# What poll() gets from gc_unit(), directly, through the proxy, and from a strict replay.
EXPECTED = [[11, 12, 13], [77], [True, False, True], [False, True] + [False] * 8,
            [0x1234, 0x5678], "exception_02", None, [999]]
# The team's shared folder sits beside the repository (/work/shared next to /work/main);
# a clone elsewhere on the same machine still finds it at its usual place.
_PLACES = [TESTS.parent.parent / "shared" / "captures", Path("/work/shared/captures")]
SHARED = Path(os.environ.get("EDGE_AGENT_SHARED_CAPTURES")
              or next((place for place in _PLACES if place.is_dir()), _PLACES[0]))
PUBLIC = ["iti_gateway_modbus_test.pcap", "iti_digitalbond_modbus_test_data_part1.pcap"]
HOLDING, INPUT = RegisterKind.HOLDING, RegisterKind.INPUT
COIL, DISCRETE = RegisterKind.COIL, RegisterKind.DISCRETE
UNIT = 5


def gc_unit() -> SimUnit:
    """16-bit registers, bits, a hole at holding 10, a Daniel/Enron range at 5001."""
    return SimUnit(UNIT, holding={0: 11, 1: 12, 2: 13, 5001: 0x12345678}, input={3: 77},
                   coils={0: True, 2: True}, discrete={1: True}, holes={HOLDING: [10]},
                   enron=(range(5001, 6000),))


def poll(client: ModbusLinkClient) -> list[object]:
    """The session: every table, a 32-bit read, an exception, a write and a read-back."""
    steps = [
        lambda: client.read_registers(UNIT, HOLDING, 0, 3),
        lambda: client.read_registers(UNIT, INPUT, 3, 1),
        lambda: client.read_bits(UNIT, COIL, 0, 3),
        lambda: client.read_bits(UNIT, DISCRETE, 0, 10),
        lambda: client.read_registers(UNIT, HOLDING, 5001, 1, enron_32bit=True),
        lambda: client.read_registers(UNIT, HOLDING, 9, 2),
        lambda: client.write_register(UNIT, 7, 999),
        lambda: client.read_registers(UNIT, HOLDING, 7, 1),
    ]
    return [_outcome(step) for step in steps]


def _outcome(step) -> object:  # noqa: ANN001 - a zero-argument lambda
    try:
        return step()
    except LinkError as err:
        return err.reason


@contextmanager
def tcp_client(port: int, timeout_ms: int = 1000) -> Iterator[ModbusLinkClient]:
    """The agent's own Modbus TCP client on 127.0.0.1:``port``, closed after the block."""
    with closing(ModbusLinkClient(TcpLink("lan", "127.0.0.1", port,
                                          timeout_ms=timeout_ms))) as client:
        yield client


@contextmanager
def rtu_client(path: str, timeout_ms: int = 1000) -> Iterator[ModbusLinkClient]:
    """The agent's own Modbus RTU client on the serial port or pty ``path``, closed after
    the block."""
    with closing(ModbusLinkClient(SerialLink("bus", path, timeout_ms=timeout_ms))) as client:
        yield client


@contextmanager
def replayed_over_tcp(replay: Responder, timeout_ms: int = 1000) -> Iterator[ModbusLinkClient]:
    """``replay`` served as a Modbus TCP device in the background, and a client of the
    agent's own kind connected to it; both closed after the block."""
    with InBackground(TcpReplayServer(replay), "replay") as running, \
            tcp_client(running.server.port, timeout_ms) as client:
        yield client


@contextmanager
def recording_proxy(target_port: int, path: Path,
                    unit_ids: tuple[int, ...] = (UNIT,)) -> Iterator[int]:
    """A recording proxy in front of ``127.0.0.1:target_port`` writing ``path``; yields
    its port. On leaving, waits until every master connection's close is recorded."""
    header = Header(datetime.now(UTC), "proxy", (LinkInfo(
        "gc", "modbus-tcp", f"127.0.0.1:{target_port}"),), unit_ids=unit_ids)
    writer = CaptureWriter.create(path, header)
    thread = LoopThread("proxy")
    proxy = RecordingProxy(("127.0.0.1", target_port), writer, "gc")
    try:
        yield thread.run(proxy.start("127.0.0.1", 0))
        wait_until(lambda: _all_closed(path), 10, "the proxy to record the disconnects")
    finally:
        thread.run(proxy.close())
        thread.stop()
        writer.close()


def _all_closed(path: Path) -> bool:
    text = path.read_text()
    return text.count('"event": "open"') == text.count('"event": "close"')


def record_session(path: Path, unit: SimUnit | None = None) -> list[object]:
    """Poll a simulated GC through a recording proxy; returns what the master got."""
    with (SimServer([unit or gc_unit()], tcp_port=0) as server,
          recording_proxy(server.tcp_port, path) as port,
          tcp_client(port) as client):
        return poll(client)


def public_capture(name: str) -> Path:
    """A public pcap from shared/captures/ (see its SOURCES.md), or a failed test that
    says where it was looked for."""
    path = SHARED / name
    if not path.is_file():
        pytest.fail(f"public capture {path} is missing: these tests read the captures listed "
                    f"in shared/captures/SOURCES.md from {SHARED} (a 'shared' folder beside "
                    "the repository; set EDGE_AGENT_SHARED_CAPTURES to use another folder)")
    return path


def assert_replayed_to_the_end(process, requests: int) -> None:  # noqa: ANN001 - a Popen
    """A strict ``edge-agent replay`` served all ``requests`` recorded requests in order.

    An agent polls on after the recording's end; the replay exits 0 when it saw the last
    recorded request first, or 8 naming the request after the end when that one came
    before the replay looked: both mean every recorded request came, in order.
    """
    status = process.wait(timeout=60)
    said, complained = process.stdout.read(), process.stderr.read()
    if status == 0:
        assert f"all {requests} recorded requests came in order" in said, said
    else:
        assert status == 8, complained
        assert f"strict replay failed: request {requests + 1}: the recording has no more " \
               f"requests (it held {requests})" in complained, complained
