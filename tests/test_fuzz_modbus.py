"""Fuzzing the Modbus decoders: random and mutated answers on a real socket into the client
the pollers use (Modbus TCP's MBAP framing and RTU framing, both through pymodbus behind
drivers/modbus/protocol/pymodbus_client.py), then through the register-map driver, and
random register words into the value decoding. Nothing but our documented outcomes may
come out (a ``LinkError`` that makes the poll's readings BAD, or readings whose values
are finite or None with a BAD reason), and memory stays bounded.

Seeded and counted (tests/support/fuzzing.py): the same cases on every CI run.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from edge_agent_drivers.modbus.protocol.transport import ModbusLinkClient
from edge_agent_drivers.modbus.settings import (
    Channel,
    DataType,
    RegisterKind,
    StringLayout,
    WordOrder,
)
from edge_agent_drivers.modbus.values import judge_words
from support.fuzzing import SEED, mutate, noise, peak_memory, rng
from support.rawmodbus import RawModbusDevice, Request

from edge_agent.config.loader import load_config
from edge_agent.config.schema import LinkProtocol, TcpLink
from edge_agent.driver import load_driver
from edge_agent.link import LinkError
from edge_agent.model import Quality
from edge_agent.values import ValidRange

pytestmark = pytest.mark.sweep  # fuzzing: run by scripts/test, left out by --fast

NOW = datetime(2024, 5, 6, 6, 31, tzinfo=UTC)
PEAK_BYTES = 16 * 1024 * 1024
EXTREMES = [0, 1, 0x7FFF, 0x8000, 0xFFFF, 0x7F80, 0xFF80, 0x7FF0, 0x7FC0, 0x9999, 0xA000]


def words(rand, count: int) -> list[int]:
    return [rand.choice(EXTREMES) if rand.random() < 0.5 else rand.randrange(0x10000)
            for _ in range(count)]


def hostile_answer(rand, valid_share: float = 0.15):
    """An answerer: the valid answer (``valid_share`` of the time), noise (0.15), or a
    mutation of the valid answer."""
    def answer(request: Request) -> bytes:
        valid = request.frame(request.answer_pdu(words(rand, request.count)))
        roll = rand.random()
        if roll < valid_share:
            return valid
        if roll < valid_share + 0.15:
            return noise(rand, 300)
        return mutate(rand, valid)
    return answer


@pytest.mark.parametrize("protocol", [LinkProtocol.MODBUS_TCP, LinkProtocol.MODBUS_RTU],
                         ids=["mbap", "rtu"])
def test_fuzzed_answers_give_registers_or_link_errors(protocol):
    rand = rng(f"wire-{protocol.value}")
    outcomes: dict[str, int] = {}
    # Mostly the device hangs up after its answer (a truncated frame ends at once);
    # sometimes it stays on the line, so bad frames end in the client's own checks.
    with RawModbusDevice(protocol is LinkProtocol.MODBUS_RTU, hostile_answer(rand),
                         close_after_answer=lambda: rand.random() < 0.9) as device:
        client = ModbusLinkClient(TcpLink("fuzz", "127.0.0.1", device.port, protocol,
                                          timeout_ms=50))
        try:
            with peak_memory() as peak:
                for case in range(250):
                    kind = rand.choice(list(RegisterKind))
                    count = rand.randint(1, 20)
                    try:
                        if kind.is_bit:
                            got = client.read_bits(1, kind, rand.randrange(100), count)
                        else:
                            got = client.read_registers(1, kind, rand.randrange(100), count)
                    except LinkError as err:
                        assert err.reason, f"seed {SEED} case {case}"
                        outcomes[err.reason] = outcomes.get(err.reason, 0) + 1
                        continue
                    assert len(got) == count, f"seed {SEED} case {case}"
                    outcomes["answer"] = outcomes.get("answer", 0) + 1
        finally:
            client.close()
    assert peak[0] < PEAK_BYTES
    assert outcomes.get("answer") and len(outcomes) >= 3, outcomes


def test_fuzzed_answers_through_the_gas_detector_driver(tmp_path):
    """The shipped gas-detector profile (status words, sentinels, ranges, a string)
    polled through hostile answers: a sample of judged readings, or a LinkError."""
    rand = rng("driver")
    with RawModbusDevice(False, hostile_answer(rand, valid_share=0.6),
                         close_after_answer=lambda: rand.random() < 0.9) as device:
        path = tmp_path / "station.yaml"
        path.write_text(
            "station: {id: ST01}\n"
            f"links: {{lan: {{type: tcp, host: 127.0.0.1, port: {device.port}, "
            "timeout_ms: 50}}\n"
            "devices:\n"
            "  - {id: gas-1, link: lan, profile: generic-gas-detector, unit_id: 1}\n"
            "mqtt: {host: 127.0.0.1}\n", encoding="utf-8")
        config = load_config(path, env={})
        driver = load_driver(config.devices[0])
        client = ModbusLinkClient(config.links["lan"])
        samples = errors = 0
        try:
            with peak_memory() as peak:
                for case in range(150):
                    try:
                        sample = driver.poll(client, NOW)
                    except LinkError:
                        errors += 1
                        continue
                    samples += 1
                    for reading in sample.readings:
                        assert_judged(reading.value, reading.quality, reading.reason,
                                      f"seed {SEED} case {case}: {reading}")
        finally:
            client.close()
    assert peak[0] < PEAK_BYTES
    assert samples and errors


def assert_judged(value, quality: Quality, reason: str | None, context: str) -> None:
    if value is None:
        assert quality is Quality.BAD and reason, context
    elif isinstance(value, float):
        assert math.isfinite(value), context


def random_channel(rand) -> Channel:
    data_type = rand.choice([t for t in DataType if t is not DataType.BOOL])
    scale = rand.choice([1.0, 0.1, -1.0, 1e-300, 1e300, 3.4e38, 1e308])
    offset = rand.choice([0.0, -40.0, 1e308, -1e308])
    limits = rand.choice([None, ValidRange(0, 100), ValidRange(None, 1e10, Quality.SUSPECT)])
    return Channel("v", 0, RegisterKind.HOLDING, data_type, rand.choice(list(WordOrder)),
                   scale, offset, length=rand.randint(1, 8),
                   string_layout=rand.choice(list(StringLayout)), valid_range=limits,
                   sentinels=rand.choice([(), (65535,), (-1.0, 3.4e38)]))


def test_fuzzed_register_words_give_finite_values_or_bad_readings():
    """Any words, any type, word order, scale and offset: a finite value, or None with a
    BAD reason (never inf or NaN, which JSON cannot carry, and never an exception)."""
    rand = rng("values")
    with peak_memory() as peak:
        for case in range(5000):
            channel = random_channel(rand)
            count = channel.length if channel.data_type is DataType.STRING \
                else channel.data_type.word_count
            raw = words(rand, count)
            judged = judge_words(channel, raw)
            assert_judged(judged.value, judged.quality, judged.reason,
                          f"seed {SEED} case {case}: {channel} {raw} -> {judged}")
    assert peak[0] < PEAK_BYTES
