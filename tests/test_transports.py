"""Every transport a link can name, against real pymodbus servers: Modbus TCP, RTU over
TCP (a serial-to-Ethernet gateway), ASCII over TCP, and RTU and ASCII on a pty pair.
Reads of all four tables, writes, Daniel/Enron 32-bit registers, holes, dead and slow
units, per-device timeouts, and the pacing rules."""

from __future__ import annotations

import ast
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from edge_agent_drivers.modbus.protocol import pymodbus_client
from edge_agent_drivers.modbus.protocol.transport import (
    BadResponse,
    DeviceTimeout,
    ModbusExceptionReply,
    ModbusLinkClient,
    request_gap_s,
    rtu_frame_gap_s,
)
from edge_agent_drivers.modbus.settings import RegisterKind
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)
from support import sources
from support.drainclock import InstantDrain, LateAnswerInTheDrain, once

from edge_agent.config.loader import load_config
from edge_agent.config.schema import LinkProtocol, SerialLink, TcpLink
from edge_agent.link import LinkError
from edge_agent.tools.sim.ptypair import PtyPair
from edge_agent.tools.sim.simserver import SimServer, SimUnit

HOLDING, INPUT = RegisterKind.HOLDING, RegisterKind.INPUT
COIL, DISCRETE = RegisterKind.COIL, RegisterKind.DISCRETE
TRANSPORTS = [
    ("tcp", LinkProtocol.MODBUS_TCP),
    ("tcp", LinkProtocol.MODBUS_RTU),
    ("tcp", LinkProtocol.MODBUS_ASCII),
    ("serial", LinkProtocol.MODBUS_RTU),
    ("serial", LinkProtocol.MODBUS_ASCII),
]
TRANSPORT_IDS = [f"{protocol.value}-on-{wire}" for wire, protocol in TRANSPORTS]


def gc_unit(unit_id: int = 5) -> SimUnit:
    """A GC-like device: 16-bit registers, status bits, and a Daniel map at 5001/7001."""
    return SimUnit(unit_id, holding={0: 11, 1: 12, 2: 13, 5001: 0x12345678, 7001: 0x42F6E979},
                   input={3: 77}, coils={0: True, 2: True}, discrete={1: True},
                   holes={HOLDING: [10]}, enron=(range(5001, 6000), range(7001, 8000)))


@contextmanager
def served(wire: str, protocol: LinkProtocol, units: list[SimUnit],
           timeout_ms: int = 500) -> Iterator[tuple[SimServer, ModbusLinkClient]]:
    """A SimServer playing ``units`` and a client on a link of that wire and protocol."""
    if wire == "tcp":
        server = SimServer(units, tcp_port=0, protocol=protocol).start()
        link = TcpLink("lan", "127.0.0.1", server.tcp_port, protocol=protocol,
                       timeout_ms=timeout_ms)
        client = ModbusLinkClient(link)
        try:
            yield server, client
        finally:
            client.close()
            server.stop()
        return
    with PtyPair() as pty:
        server = SimServer(units, serial_port=pty.device_path, protocol=protocol).start()
        client = ModbusLinkClient(SerialLink("bus", pty.agent_path, protocol=protocol,
                                             timeout_ms=timeout_ms))
        try:
            yield server, client
        finally:
            client.close()
            server.stop()


@pytest.mark.parametrize(("wire", "protocol"), TRANSPORTS, ids=TRANSPORT_IDS)
def test_all_tables_read_and_writes_land_over_every_transport(wire, protocol):
    with served(wire, protocol, [gc_unit()]) as (server, client):
        assert client.read_registers(5, HOLDING, 0, 3) == [11, 12, 13]
        assert client.read_registers(5, INPUT, 3, 1) == [77]
        assert client.read_bits(5, COIL, 0, 3) == [True, False, True]
        assert client.read_bits(5, DISCRETE, 0, 10) == [False, True] + [False] * 8
        client.write_register(5, 7, 999)
        client.write_coil(5, 9, True)
        assert server.get_words(5, HOLDING, 7) == [999]
        assert server.get_bits(5, COIL, 9) == [True]
        assert [(w.function_code, w.address, w.values) for w in server.writes(5)] == [
            (6, 7, (999,)), (5, 9, (1,))]


@pytest.mark.parametrize(("wire", "protocol"), TRANSPORTS, ids=TRANSPORT_IDS)
def test_enron_32bit_read_returns_two_words_per_address(wire, protocol):
    with served(wire, protocol, [gc_unit()]) as (server, client):
        server.set_values32(5, HOLDING, 5002, [0xDEADBEEF])
        words = client.read_registers(5, HOLDING, 5001, 2, enron_32bit=True)
        assert words == [0x1234, 0x5678, 0xDEAD, 0xBEEF]
        assert client.read_registers(5, HOLDING, 7001, 1, enron_32bit=True) == [0x42F6, 0xE979]


def test_16bit_read_answered_with_32bit_registers_is_refused_not_decoded():
    """pymodbus 3.16 decodes a 4-bytes-per-address answer as 2*count words without
    comparing with the request; the client must notice, not hand half of it on."""
    with served("tcp", LinkProtocol.MODBUS_TCP, [gc_unit()]) as (_, client):
        with pytest.raises(BadResponse, match="4 registers; asked 2"):
            client.read_registers(5, HOLDING, 5001, 2)
        assert client.read_registers(5, HOLDING, 0, 1) == [11]  # reconnects and goes on


def test_32bit_read_of_a_16bit_map_is_refused_not_decoded():
    with served("tcp", LinkProtocol.MODBUS_RTU, [gc_unit()]) as (_, client):
        with pytest.raises(BadResponse, match="2 registers; asked 4"):
            client.read_registers(5, HOLDING, 0, 2, enron_32bit=True)
        assert client.read_registers(5, HOLDING, 1, 2) == [12, 13]


def test_read_spanning_a_hole_fails_while_reads_around_it_succeed():
    with served("serial", LinkProtocol.MODBUS_RTU, [gc_unit()]) as (server, client):
        server.add_hole(5, INPUT, 20, 2)
        with pytest.raises(ModbusExceptionReply) as caught:
            client.read_registers(5, HOLDING, 8, 4)
        assert (caught.value.code, caught.value.reason, caught.value.transient) == (
            2, "exception_02", False)
        assert client.read_registers(5, HOLDING, 8, 2) == [0, 0]
        assert client.read_registers(5, HOLDING, 11, 1) == [0]
        with pytest.raises(ModbusExceptionReply, match="exception 02"):
            client.read_registers(5, INPUT, 19, 3)
        assert client.read_registers(5, INPUT, 22, 1) == [0]


def test_reads_beyond_the_map_and_into_a_32bit_range_answer_exception_02():
    with served("tcp", LinkProtocol.MODBUS_TCP, [gc_unit()]) as (_, client):
        for kind, address, count in ((HOLDING, 1020, 10), (COIL, 1020, 10),
                                     (HOLDING, 4999, 4)):
            with pytest.raises(ModbusExceptionReply, match="exception 02"):
                if kind.is_bit:
                    client.read_bits(5, kind, address, count)
                else:
                    client.read_registers(5, kind, address, count)


@pytest.mark.parametrize(("wire", "protocol"), TRANSPORTS, ids=TRANSPORT_IDS)
def test_dead_unit_times_out_and_its_neighbour_answers_right_after(wire, protocol,
                                                                  monkeypatch):
    """Five silent polls in a row, too: pymodbus drops a TCP connection on its own after
    retries+3 of them, which must not leave the link unusable. (The muted unit sends
    nothing late, so a serial drain's 100 ms wait for quiet passes at once. The answering
    units get 5 s, as a device's own timeout_ms: their answer must not race 100 ms on a
    loaded machine.)"""
    monkeypatch.setattr(pymodbus_client, "drain_clock", InstantDrain())
    with served(wire, protocol, [gc_unit(1), gc_unit(2)], timeout_ms=100) as (server, client):
        server.mute(2)
        for _ in range(5):
            with pytest.raises(DeviceTimeout, match="no answer within 100 ms"):
                client.read_registers(2, HOLDING, 0, 1)
        client.set_timeout_ms(5000)
        assert client.read_registers(1, HOLDING, 0, 3) == [11, 12, 13]
        server.mute(2, False)
        assert client.read_registers(2, HOLDING, 1, 1) == [12]


@pytest.mark.parametrize(("wire", "protocol"), [TRANSPORTS[1], TRANSPORTS[3]],
                         ids=[TRANSPORT_IDS[1], TRANSPORT_IDS[3]])
def test_late_answer_of_a_slow_unit_is_not_taken_for_the_next_request(wire, protocol):
    """A slow neighbour's late answer (unit 2, same function and count) must not poison
    unit 1's reads. Depending on when it lands, the drain after the timeout discards it,
    or it is read in place of unit 1's answer and refused by the unit check: the next
    read is answered correctly or fails as a transient error, never with unit 2's value.
    (The unit check alone catches this one; a late answer from the same unit, which only
    the drain catches, is in test_bad_frames.py.)"""
    units = [gc_unit(1), gc_unit(2)]
    units[1].holding[0] = 2222
    with served(wire, protocol, units, timeout_ms=150) as (server, client):
        server.set_delay(2, 0.4)
        with pytest.raises(DeviceTimeout):
            client.read_registers(2, HOLDING, 0, 1)
        server.set_delay(2, 0)
        outcomes = []
        while len(outcomes) < 10 and [11] not in outcomes:
            try:
                outcomes.append(client.read_registers(1, HOLDING, 0, 1))
            except LinkError as err:
                assert err.transient
                outcomes.append(err.reason)
        assert outcomes[-1] == [11] and [2222] not in outcomes
        assert client.read_registers(2, HOLDING, 0, 1) == [2222]


def test_device_timeout_overrides_the_link_timeout_for_a_slow_device(monkeypatch):
    """The first answer, 300 ms late, lands while the drain after the 100 ms timeout waits
    for a quiet line (its clock waits for those 7 bytes, tests/support/drainclock.py), so
    the second read gets its own answer, not the first one. (A drain that ended first, as
    the real 100 ms one could under load, let the first answer be read as the second's,
    and the second's, when the delay was reset before it, land in the third read.)"""
    with served("serial", LinkProtocol.MODBUS_RTU, [gc_unit(1), gc_unit(2)],
                timeout_ms=100) as (server, client), \
            LateAnswerInTheDrain(once(7), client.link.port) as clock:
        monkeypatch.setattr(pymodbus_client, "drain_clock", clock)
        server.set_delay(2, 0.3)
        with pytest.raises(DeviceTimeout, match="within 100 ms"):
            client.read_registers(2, HOLDING, 0, 1)
        assert clock.released == 1
        client.set_timeout_ms(5000)  # what the poller does for a device with timeout_ms
        assert client.read_registers(2, HOLDING, 0, 1) == [11]
        server.set_delay(2, 0)
        client.set_timeout_ms(None)  # back to the link's
        server.mute(1)
        with pytest.raises(DeviceTimeout, match="within 100 ms"):
            client.read_registers(1, HOLDING, 0, 1)


def test_argument_errors_are_programming_errors_not_link_errors():
    client = ModbusLinkClient(TcpLink("lan", "127.0.0.1", 9))
    for call in (lambda: client.read_registers(1, COIL, 0, 1),
                 lambda: client.read_bits(1, HOLDING, 0, 1),
                 lambda: client.read_registers(1, HOLDING, 0, 126),
                 lambda: client.read_registers(1, HOLDING, 5001, 64, enron_32bit=True),
                 lambda: client.read_bits(1, COIL, 0, 2001),
                 lambda: client.write_register(1, 0, 65536)):
        with pytest.raises(ValueError):
            call()


@pytest.mark.parametrize(("baudrate", "gap_ms"), [
    (1200, 32.08), (9600, 4.01), (19200, 2.005), (38400, 1.75), (115200, 1.75)])
def test_rtu_frame_gap_is_three_and_a_half_characters(baudrate, gap_ms):
    assert rtu_frame_gap_s(baudrate) * 1000 == pytest.approx(gap_ms, abs=0.01)


def test_request_gap_never_goes_below_the_rtu_silence_on_a_serial_line():
    slow_rtu = SerialLink("bus", "/dev/ttyUSB0", baudrate=1200, request_gap_ms=0)
    assert request_gap_s(slow_rtu) == pytest.approx(0.03208, abs=1e-4)
    assert request_gap_s(SerialLink("bus", "/dev/ttyUSB0", request_gap_ms=50)) == 0.05
    ascii_line = SerialLink("bus", "/dev/ttyUSB0", protocol=LinkProtocol.MODBUS_ASCII,
                            baudrate=1200, request_gap_ms=0)
    assert request_gap_s(ascii_line) == 0.0  # ASCII frames are delimited, not timed
    gateway = TcpLink("gw", "10.0.0.5", protocol=LinkProtocol.MODBUS_RTU, request_gap_ms=20)
    assert request_gap_s(gateway) == 0.02  # the gateway times its own serial side


PYMODBUS_CLIENT = "drivers/modbus/protocol/pymodbus_client.py"
PYMODBUS_SERVER = "drivers/modbus/protocol/pymodbus_server.py"


def _importers(prefix: str) -> set[str]:
    """Our modules importing ``prefix`` (a package, or a module and what is below it)."""
    importers = set()
    for path in sources.our_modules():
        for node in sources.nodes(path, *sources.IMPORTS):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(name == prefix or name.startswith(prefix + ".") for name in names):
                importers.add(path.relative_to(sources.ROOT).as_posix())
    return importers


def test_only_the_two_pymodbus_modules_import_pymodbus():
    """pymodbus changes its API between minor releases: on an upgrade, one module to fix
    per side (the client the pollers use, the server the simulator uses)."""
    assert _importers("pymodbus") == {PYMODBUS_CLIENT, PYMODBUS_SERVER}


def test_pymodbus_client_and_server_sides_share_no_module():
    """The runtime's client never loads the simulator's server adapter, and back."""
    assert PYMODBUS_SERVER not in _importers("edge_agent_drivers.modbus.protocol.pymodbus_client")
    assert PYMODBUS_CLIENT not in _importers("edge_agent_drivers.modbus.protocol.pymodbus_server")
    assert "drivers/modbus/protocol/transport.py" not in _importers(
        "edge_agent_drivers.modbus.protocol.pymodbus_server")


def test_station_file_names_every_transport_and_device_polling():
    """The valid config case folder, read into the typed links and devices used above."""
    case = Path(__file__).parent / "config_cases" / "every_transport_and_pacing_valid"
    config = load_config(case / "station.yaml", env={})
    links = config.links
    assert [links[name].protocol for name in ("ftir-pc", "gateway", "old-gc-net", "rs485-1",
                                                "rs232-gc")] == [
        LinkProtocol.MODBUS_TCP, LinkProtocol.MODBUS_RTU, LinkProtocol.MODBUS_ASCII,
        LinkProtocol.MODBUS_RTU, LinkProtocol.MODBUS_ASCII]
    assert (links["ftir-pc"].connect_pause_ms, links["rs485-1"].connect_pause_ms) == (500, 2000)
    assert request_gap_s(links["rs485-1"]) == pytest.approx(rtu_frame_gap_s(1200))
    polling = {device.id: device.polling for device in config.devices}
    assert (polling["gc-1"].timeout_ms, polling["gc-1"].retries) == (3000, 2)
    assert (polling["h2s-1"].timeout_ms, polling["h2s-1"].retries) == (None, None)


def decoded(pdu_class: type, data: bytes) -> tuple:
    """What decoding ``data`` gives: the words, or the error's type and text."""
    pdu = pdu_class()
    try:
        pdu.decode(data)
    except Exception as err:  # noqa: BLE001 - the error itself is compared
        return type(err), str(err)
    return "words", list(pdu.registers), type(pdu.registers)


@pytest.mark.parametrize(("ours", "theirs"), [
    (pymodbus_client._HoldingWords, ReadHoldingRegistersResponse),
    (pymodbus_client._InputWords, ReadInputRegistersResponse)])
def test_register_answers_decode_as_pymodbus_decodes_them_for_every_byte_count(ours, theirs):
    """The one-unpack decode gives pymodbus's words and errors for every byte count, with
    the data shorter, as long as, and longer than it says (a truncated or odd answer)."""
    assert (ours.function_code, ours.rtu_byte_count_pos) == (theirs.function_code,
                                                              theirs.rtu_byte_count_pos)
    rand = random.Random(16)
    assert decoded(ours, b"") == decoded(theirs, b"")
    for byte_count in range(256):
        for extra in {0, 1, byte_count - 1, byte_count, byte_count + 1, byte_count + 3}:
            if extra >= 0:
                data = bytes([byte_count]) + rand.randbytes(extra)
                assert decoded(ours, data) == decoded(theirs, data), (byte_count, extra)


def test_each_client_decodes_register_answers_in_one_unpack_without_changing_pymodbus():
    """Registered in the client's own decoder: the shared table (servers, other clients)
    keeps pymodbus's classes."""
    from pymodbus.pdu.decoders import DecodePDU

    client = pymodbus_client.WireClient(LinkProtocol.MODBUS_TCP, timeout_s=1, name="t",
                                        host="127.0.0.1")
    table = client._client.framer.decoder.pdu_table
    assert (table[3][1], table[4][1]) == (pymodbus_client._HoldingWords,
                                          pymodbus_client._InputWords)
    assert (DecodePDU.pdu_table[3][1], DecodePDU.pdu_table[4][1]) == (
        ReadHoldingRegistersResponse, ReadInputRegistersResponse)
