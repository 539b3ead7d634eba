"""Devices that flood (send without end, at full speed) cost the agent one bounded read
per poll: their readings are BAD ``flood``, their link is closed and reopened with
backoff, memory stays bounded and the other links keep polling. Real sockets, a real
pseudo-terminal, the real agent process and broker (issue 9, items 1 and 11)."""

from __future__ import annotations

import socket
import threading
import tracemalloc

import pytest
from edge_agent_drivers.modbus.protocol.pymodbus_client import READ_LIMIT_BYTES
from edge_agent_drivers.modbus.protocol.transport import ModbusLinkClient
from edge_agent_drivers.modbus.settings import RegisterKind
from edge_agent_drivers.serialtext.protocol.client import TextLinkClient, read_budget
from edge_agent_drivers.serialtext.protocol.framing import Deframer, Frame
from edge_agent_drivers.serialtext.protocol.settings import Framing
from support.floods import FloodingPty, FloodingTcpDevice
from support.health import logged_port, status
from support.rawmodbus import RawModbusDevice
from support.station import AgentProcess, write_station
from support.waiting import wait_until

from edge_agent.config.schema import LinkProtocol, SerialLink, TcpLink
from edge_agent.link import LinkFlooded
from edge_agent.tools.sim.ptypair import PtyPair
from edge_agent.tools.sim.textdevice import NoxAnalyzerSim, TextDeviceSim

STREAM = {"mode": "stream", "framing": {"type": "line", "max_bytes": 256}, "delimiter": ",",
          "channels": [{"name": "v", "field": 1}]}
PEAK_RSS_KIB = 150 * 1024  # the agent's peak resident memory (VmHWM) under three floods


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set size (VmHWM), in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status_file:
        for line in status_file:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def flood_samples(collector, device: str) -> int:
    return sum(1 for r in collector.first_deliveries(device)
               if r.sample["values"]["v"] == {"value": None, "unit": "", "quality": "BAD",
                                              "reason": "flood"})


def test_flooding_devices_are_bad_flood_bounded_and_do_not_slow_another_link(
        tmp_path, broker, collector):
    """A text device on TCP and one on a serial port streaming garbage at full speed, and
    a Modbus TCP device flooding after each request: each gets BAD 'flood' readings and
    its link reopened again and again, the agent's peak memory stays bounded, and a good
    analyzer on its own link is polled on and answers GOOD throughout."""
    model = NoxAnalyzerSim(address=1)
    with PtyPair() as pty, FloodingTcpDevice() as tcp_flood, FloodingPty() as pty_flood, \
            RawModbusDevice(False, flood=b"\x00\x01\x00\x00\xff\xff" * 10000) as mb_flood:
        sim = TextDeviceSim(model, pty.device_path).start()
        path = write_station(tmp_path / "station.yaml", links={
            "rs232": {"type": "serial", "port": pty.agent_path, "protocol": "text",
                      "timeout_ms": 500},
            "moxa": {"type": "tcp", "host": "127.0.0.1", "port": tcp_flood.port,
                     "protocol": "text", "timeout_ms": 500},
            "usb": {"type": "serial", "port": pty_flood.agent_path, "protocol": "text",
                    "timeout_ms": 500},
            "plc": {"type": "tcp", "host": "127.0.0.1", "port": mb_flood.port,
                    "timeout_ms": 500}},
            devices=[
                {"id": "nox-1", "link": "rs232", "profile": "generic-text-analyzer",
                 "unit_id": 1, "interval_s": 0.1},
                {"id": "babbler-tcp", "link": "moxa", "driver": "serial-text",
                 "interval_s": 0.2, "text": STREAM},
                {"id": "babbler-pty", "link": "usb", "driver": "serial-text",
                 "interval_s": 0.2, "text": STREAM},
                {"id": "mb-flood", "link": "plc", "unit_id": 1, "interval_s": 0.2,
                 "channels": [{"name": "v", "address": 0}]}],
            broker_port=broker.port)
        agent = AgentProcess(path, tmp_path / "agent.log").start().wait_running()
        try:
            flooding = ("babbler-tcp", "babbler-pty", "mb-flood")
            collector.wait_for(lambda c: all(flood_samples(c, d) >= 3 for d in flooding)
                               and len(c.seqs("nox-1")) >= 20, 90,
                               "three BAD flood samples from each flooding device, and 20 "
                               "samples from the good one")
            port = logged_port(agent.log())
            assert port is not None
            devices = {d["id"]: d for d in status(port)["devices"]}
            peak_kib = peak_rss_kib(agent.process.pid)
        finally:
            agent.terminate()
            sim.stop()
        assert tcp_flood.connections >= 3 and mb_flood.connections >= 3, \
            "each flood closed the link; the next poll reopened it"
    assert peak_kib < PEAK_RSS_KIB, f"peak RSS {peak_kib} KiB"
    for device in flooding:
        assert devices[device]["errors"].get("flood", 0) >= 3, devices[device]
    good = devices["nox-1"]
    assert good["errors"] == {} and good["polls"] >= 20, good
    print(f"peak RSS {peak_kib} KiB; good device: {good['polls']} polls; floods: "
          f"{[devices[d]['errors'] for d in flooding]}; tcp flood sent "
          f"{tcp_flood.sent_bytes} bytes in {tcp_flood.connections} connections")
    nox = [r.sample["values"]["no"]["quality"] for r in collector.first_deliveries("nox-1")]
    assert nox and set(nox) == {"GOOD"}
    log = agent.log()
    assert log.count("WARNING edge_agent_drivers.serialtext.protocol.client") == 2, \
        "each text link logs its flood once, then counts"
    assert log.count("WARNING edge_agent_drivers.modbus.protocol.transport: plc: flood") == 1, \
        "the Modbus link logs its flood once"


@pytest.mark.parametrize("on", ["tcp", "pty"])
def test_a_flooding_text_device_costs_one_read_budget_then_the_link_is_closed(on):
    """The text client alone: one poll of a flooding device raises LinkFlooded after at
    most its read budget; Python allocates about that much, not what the device sent."""
    framing = Framing(max_bytes=1024)
    with (FloodingTcpDevice() if on == "tcp" else FloodingPty()) as device:
        link = TcpLink("moxa", "127.0.0.1", device.port, LinkProtocol.TEXT, timeout_ms=2000) \
            if on == "tcp" else SerialLink("usb", device.agent_path, LinkProtocol.TEXT,
                                           timeout_ms=2000)
        client = TextLinkClient(link)
        try:
            tracemalloc.start()
            for _ in range(3):
                with pytest.raises(LinkFlooded) as caught:
                    client.listen(Deframer(framing), lambda event: isinstance(event, Frame))
                assert caught.value.reason == "flood" and not caught.value.transient
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            client.close()
        if on == "tcp":
            assert device.connections == 3, "closed after each flood, reopened by the next"
    assert client.floods == 3
    assert peak < 4 * read_budget(framing), f"peak {peak} bytes"


def test_a_burst_within_the_read_budget_is_read_not_taken_for_a_flood():
    """The budget is no false alarm: a stream instrument's backlog of 60 records of
    max_bytes (just under 64) arriving at once gives its records, not a flood."""
    framing = Framing(max_bytes=64)
    record = b"%063d\n"
    burst = b"".join(record % n for n in range(60))
    assert len(burst) < read_budget(framing)
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def send_burst() -> None:
        conn = server.accept()[0]
        accepted.append(conn)  # stays open: a closed connection would be no_connection
        conn.sendall(burst)

    sender = threading.Thread(target=send_burst, daemon=True)
    sender.start()
    client = TextLinkClient(TcpLink("moxa", "127.0.0.1", server.getsockname()[1],
                                    LinkProtocol.TEXT, timeout_ms=5000))
    deframer = Deframer(framing)
    try:
        events: list = []
        while len(events) < 60:
            events += client.listen(deframer, lambda e: isinstance(e, Frame))
    finally:
        client.close()
        sender.join(timeout=10)
        for conn in accepted:
            conn.close()
        server.close()
    assert [int(event.body) for event in events] == list(range(60))
    assert client.floods == 0


def flooded_twice(client: ModbusLinkClient) -> int:
    """Read twice from a flooding device, each read cut off as 'flood'; closes the client
    and returns the peak of memory Python allocated meanwhile, in bytes."""
    try:
        tracemalloc.start()
        for _ in range(2):
            with pytest.raises(LinkFlooded) as caught:
                client.read_registers(1, RegisterKind.HOLDING, 0, 10)
            assert caught.value.reason == "flood"
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        client.close()


def test_a_modbus_tcp_device_flooding_after_the_request_is_cut_off_and_reconnected():
    """pymodbus alone reads until its timeout and grows its buffer past its own limit;
    the client stops after READ_LIMIT_BYTES, says 'flood', and reconnects."""
    with RawModbusDevice(False, flood=b"\x00\x07\x00\x00\x00\x05\x01\x03\x02" * 8000) \
            as device:
        client = ModbusLinkClient(TcpLink("plc", "127.0.0.1", device.port, timeout_ms=5000))
        peak = flooded_twice(client)
        wait_until(lambda: device.connections == 2, 10, "the second connection")
    assert device.requests == 2
    assert client.floods == 2
    assert peak < 64 * READ_LIMIT_BYTES, f"peak {peak} bytes"


def test_a_modbus_rtu_device_flooding_a_serial_port_is_cut_off():
    """The same cap on a serial port (pymodbus's serial client, a real pty)."""
    with FloodingPty(b"\x01\x03\xff" * 20000) as device:
        client = ModbusLinkClient(SerialLink("rs485", device.agent_path, timeout_ms=5000))
        peak = flooded_twice(client)
    assert client.floods == 2
    assert peak < 64 * READ_LIMIT_BYTES, f"peak {peak} bytes"
