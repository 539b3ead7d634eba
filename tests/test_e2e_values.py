"""Published values equal what the simulated devices hold, for every type and word order,
over Modbus TCP and over Modbus RTU on a pseudo-terminal pair."""

from __future__ import annotations

import struct
from itertools import product

import pytest
from support.station import write_station

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.config.schema import RegisterKind
from edge_agent.modbus.transport import SimServer, SimUnit
from edge_agent.sim.ptypair import PtyPair

# (type, order, value as the instrument means it, struct code)
TYPED_VALUES = {
    "int16": (-1234, ">h"), "uint16": (54321, ">H"), "int32": (-123456789, ">i"),
    "uint32": (3_000_000_000, ">I"), "float32": (-273.15, ">f"),
}
ORDERS = ["ABCD", "CDAB", "BADC", "DCBA"]


def encode(value, code: str, order: str) -> list[int]:
    """Independent of the agent's decoder: lay out bytes A..D on the wire per order."""
    raw = struct.pack(code, value)
    if len(raw) == 2:
        raw = raw if order in ("ABCD", "CDAB") else raw[::-1]
        return [int.from_bytes(raw, "big")]
    a, b, c, d = raw
    layout = {"ABCD": (a, b, c, d), "CDAB": (c, d, a, b), "BADC": (b, a, d, c),
              "DCBA": (d, c, b, a)}[order]
    return [layout[0] << 8 | layout[1], layout[2] << 8 | layout[3]]


def channels_and_image():
    """One channel per (type, order, register table), packed at increasing addresses."""
    channels, image = [], {RegisterKind.HOLDING: {}, RegisterKind.INPUT: {}}
    address = 0
    for (type_name, (value, code)), order, table in product(
            TYPED_VALUES.items(), ORDERS, RegisterKind):
        words = encode(value, code, order)
        name = f"{type_name}_{order}_{table.value}"
        channels.append({"name": name, "address": address, "register": table.value,
                         "type": type_name, "word_order": order, "unit": "u"})
        for offset, word in enumerate(words):
            image[table][address + offset] = word
        address += len(words) + 1  # leave a hole: reads must not run over it
    channels.append({"name": "scaled", "address": 500, "type": "int16", "scale": 0.1,
                     "offset": -40, "unit": "degC"})
    image[RegisterKind.HOLDING][500] = 0xFF9C  # -100 -> -50.0
    return channels, image


def expected_value(name: str):
    if name == "scaled":
        return -50.0
    type_name = name.split("_")[0]
    value, code = TYPED_VALUES[type_name]
    return struct.unpack(code, struct.pack(code, value))[0]


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
            assert reading["quality"] == "GOOD", (name, reading)
            assert reading["unit"] == next(c["unit"] for c in channels if c["name"] == name)
            if name.startswith("float32") or name == "scaled":
                assert reading["value"] == pytest.approx(expected_value(name), rel=1e-6), name
            else:
                assert reading["value"] == expected_value(name), name


def test_values_match_registers_over_modbus_tcp(tmp_path, broker, collector):
    channels, image = channels_and_image()
    server = SimServer([SimUnit(7, holding=image[RegisterKind.HOLDING],
                                input=image[RegisterKind.INPUT])]).start()
    try:
        run_agent_and_check(tmp_path, broker, collector,
                            {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port},
                            server, channels, unit_id=7)
    finally:
        server.stop()


def test_values_match_registers_over_modbus_rtu_on_a_pty_pair(tmp_path, broker, collector):
    channels, image = channels_and_image()
    with PtyPair() as pty:
        server = SimServer([SimUnit(3, holding=image[RegisterKind.HOLDING],
                                    input=image[RegisterKind.INPUT])],
                           serial_port=pty.device_path, baudrate=19200).start()
        try:
            run_agent_and_check(
                tmp_path, broker, collector,
                {"type": "serial", "port": pty.agent_path, "baudrate": 19200,
                 "parity": "N", "stopbits": 1, "timeout_ms": 500},
                server, channels, unit_id=3)
        finally:
            server.stop()
