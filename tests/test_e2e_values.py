"""Published values equal what the simulated devices hold, for every type and word order,
over Modbus TCP and over Modbus RTU on a pseudo-terminal pair."""

from __future__ import annotations

import struct
from itertools import product

import pytest
from edge_agent_drivers.modbus.settings import RegisterKind
from support.station import write_station

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.tools.sim.ptypair import PtyPair
from edge_agent.tools.sim.simserver import SimServer, SimUnit

# (type, order, value as the instrument means it, struct code)
TYPED_VALUES = {
    "int16": (-1234, ">h"), "uint16": (54321, ">H"), "int32": (-123456789, ">i"),
    "uint32": (3_000_000_000, ">I"), "float32": (-273.15, ">f"),
    "int64": (-(2**62) - 12345, ">q"), "uint64": (2**64 - 2, ">Q"),
    "float64": (6.02214076e23, ">d"),
}
ORDERS = ["ABCD", "CDAB", "BADC", "DCBA"]
REGISTER_TABLES = (RegisterKind.HOLDING, RegisterKind.INPUT)
# Values that are not numbers in every order: name -> (channel settings, words, expected)
SPECIAL = {
    "bcd16": ({"type": "bcd16"}, [0x1234], 1234),
    "bcd32_cdab": ({"type": "bcd32", "word_order": "CDAB"}, [0x5678, 0x1234], 12345678),
    "tag": ({"type": "string", "length": 4}, [0x4743, 0x2D31, 0x3233, 0x0000], "GC-123"),
    "tag_ba": ({"type": "string", "length": 2, "string_layout": "ba"}, [0x4347, 0x322D],
               "GC-2"),
    "bit0": ({"type": "bool", "bit": 0}, [0x8001], True),
    "sentinel": ({"type": "uint16", "sentinels": [65535]}, [0xFFFF], None),
}


def encode(value, code: str, order: str) -> list[int]:
    """Independent of the agent's decoder: lay out the bytes on the wire per order
    (CDAB reverses the words, BADC swaps the bytes in each word, DCBA does both)."""
    raw = struct.pack(code, value)
    words = [raw[i] << 8 | raw[i + 1] for i in range(0, len(raw), 2)]
    if order in ("CDAB", "DCBA") and len(words) > 1:
        words.reverse()
    if order in ("BADC", "DCBA"):
        words = [(w & 0xFF) << 8 | w >> 8 for w in words]
    return words


def channels_and_image():
    """One channel per (type, order, register table), packed at increasing addresses,
    plus the special types, coils and discrete inputs."""
    channels, image = [], {kind: {} for kind in RegisterKind}
    address = 0
    for (type_name, (value, code)), order, table in product(
            TYPED_VALUES.items(), ORDERS, REGISTER_TABLES):
        words = encode(value, code, order)
        name = f"{type_name}_{order}_{table.value}"
        channels.append({"name": name, "address": address, "register": table.value,
                         "type": type_name, "word_order": order, "unit": "u"})
        for offset, word in enumerate(words):
            image[table][address + offset] = word
        address += len(words) + 1  # leave a hole: reads must not run over it
    for name, (settings, words, _) in SPECIAL.items():
        channels.append({"name": name, "address": address, "unit": "u", **settings})
        for offset, word in enumerate(words):
            image[RegisterKind.HOLDING][address + offset] = word
        address += len(words) + 1
    channels.append({"name": "scaled", "address": 500, "type": "int16", "scale": 0.1,
                     "offset": -40, "unit": "degC"})
    image[RegisterKind.HOLDING][500] = 0xFF9C  # -100 -> -50.0
    for table in (RegisterKind.COIL, RegisterKind.DISCRETE):
        for bit_address, state in ((3, True), (4, False), (1000, True)):
            channels.append({"name": f"{table.value}_{bit_address}", "address": bit_address,
                             "register": table.value, "unit": ""})
            image[table][bit_address] = state
    return channels, image


def expected_value(name: str):
    if name == "scaled":
        return -50.0
    if name in SPECIAL:
        return SPECIAL[name][2]
    if name.startswith(("coil_", "discrete_")):
        return int(name.split("_")[1]) != 4
    type_name = name.split("_")[0]
    value, code = TYPED_VALUES[type_name]
    return struct.unpack(code, struct.pack(code, value))[0]


def sim_unit(unit_id: int, image) -> SimUnit:
    return SimUnit(unit_id, holding=image[RegisterKind.HOLDING],
                   input=image[RegisterKind.INPUT], coils=image[RegisterKind.COIL],
                   discrete=image[RegisterKind.DISCRETE], size=2048)


def run_agent_and_check(tmp_path, broker, collector, link: dict, server: SimServer,
                        channels: list[dict], unit_id: int) -> None:
    config_path = write_station(
        tmp_path / "station.yaml", links={"dev-link": link}, broker_port=broker.port,
        devices=[{"id": "dev-1", "link": "dev-link", "unit_id": unit_id,
                  "interval_s": 0.2, "channels": channels}])
    agent = Agent(load_config(config_path))
    agent.start()
    try:
        collector.wait_for(lambda c: len(c.seqs("dev-1")) >= 3, 30, "three samples")
    finally:
        agent.stop()
    for received in collector.samples:
        values = received.sample["values"]
        assert set(values) == {ch["name"] for ch in channels}
        for name, reading in values.items():
            assert reading["unit"] == next(c["unit"] for c in channels if c["name"] == name)
            if name == "sentinel":
                assert (reading["quality"], reading["reason"]) == ("BAD", "sentinel")
                continue
            assert reading["quality"] == "GOOD", (name, reading)
            if name.startswith("float32") or name == "scaled":
                assert reading["value"] == pytest.approx(expected_value(name), rel=1e-6), name
            else:
                assert reading["value"] == expected_value(name), name
                assert type(reading["value"]) is type(expected_value(name)), name


def test_values_match_registers_over_modbus_tcp(tmp_path, broker, collector):
    channels, image = channels_and_image()
    server = SimServer([sim_unit(7, image)]).start()
    try:
        run_agent_and_check(tmp_path, broker, collector,
                            {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port},
                            server, channels, unit_id=7)
    finally:
        server.stop()


def test_values_match_registers_over_modbus_rtu_on_a_pty_pair(tmp_path, broker, collector):
    channels, image = channels_and_image()
    with PtyPair() as pty:
        server = SimServer([sim_unit(3, image)],
                           serial_port=pty.device_path, baudrate=19200).start()
        try:
            run_agent_and_check(
                tmp_path, broker, collector,
                {"type": "serial", "port": pty.agent_path, "baudrate": 19200,
                 "parity": "N", "stopbits": 1, "timeout_ms": 500},
                server, channels, unit_id=3)
        finally:
            server.stop()
