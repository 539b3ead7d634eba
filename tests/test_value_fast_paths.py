"""The poll path's fast ways (issue 11) give exactly what the general ways give.

``NumberJudge`` (rules read once) and its inline plain case against ``judge_number``;
``ReadJudge.outcomes`` against judging each channel from its own words; and a whole
``driver.poll`` against a server (a real pymodbus simulator) against the poll built the
general way: ``judge_words`` per channel, ``Reading(...)``, ``apply_status`` over every
channel with every raw number, the instrument's clock and the stream looked up as before.
Floats are compared by type and bits (NaN equals NaN, -0.0 differs from 0.0)."""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from edge_agent_drivers.modbus.driver import ModbusMapDriver
from edge_agent_drivers.modbus.plan import plan
from edge_agent_drivers.modbus.protocol.transport import ModbusExceptionReply, ModbusLinkClient
from edge_agent_drivers.modbus.settings import (
    Channel,
    DataType,
    InstrumentClock,
    ModbusSettings,
    QualityRule,
    ReadLimits,
    RegisterKind,
    TimeFormat,
    WordOrder,
)
from edge_agent_drivers.modbus.status import apply_status
from edge_agent_drivers.modbus.trigger import ClockError, instrument_time
from edge_agent_drivers.modbus.values import judge_words

from edge_agent.config.schema import Device, TcpLink
from edge_agent.model import Quality, Reading, Sample
from edge_agent.tools.sim.simserver import SimServer, SimUnit
from edge_agent.values import Judged, NumberJudge, ValidRange, judge_number

NOW = datetime(2026, 12, 3, 19, 0, tzinfo=UTC)
NUMBERS = [DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32, DataType.INT64,
           DataType.UINT64, DataType.FLOAT32, DataType.FLOAT64, DataType.BCD16]
SCALES = [1.0, 1.0, 1.0, 0.1, -2.5, 1e300, 1e-300]
OFFSETS = [0.0, 0.0, 0.0, -3.0, 1e308, 0.5]
SENTINELS = [(), (), (-1,), (65535, -9999.0), (0.0,), (float("inf"),)]
RANGES = [None, None, ValidRange(-10.0, 10.0), ValidRange(None, 5.0, Quality.SUSPECT),
          ValidRange(0.0, None), ValidRange(None, None, Quality.SUSPECT)]
# words that make NaN, infinities, -0.0, the largest and smallest floats, sentinels
WORDS = [0x0000, 0x8000, 0x7FC0, 0x7F80, 0xFF80, 0x7F7F, 0xFFFF, 0x0001, 0x7FF0, 0xFFF0,
         0x4120, 0xC120, 0x3F80]


def exact(value: object) -> object:
    """A value as compared here: floats by type and bits."""
    return ("float", struct.pack(">d", value)) if isinstance(value, float) else \
        (type(value).__name__, value)


def fields(judged: Judged) -> tuple:
    return (exact(judged.value), judged.quality, judged.reason, exact(judged.raw))


def raw_numbers(rand: random.Random) -> list[int | float]:
    """Ints and floats of every kind a decoder gives, and the edges of the rules above."""
    specials = [0, -1, 1, 65535, -9999, 2**63, -2**63, 2**64 - 1, float("nan"),
                float("inf"), float("-inf"), -0.0, 0.0, 1e308, -1e308, 5e-324,
                3.4028234663852886e38, -10.0, 10.0, 5.0, 10.000000000000002, -9999.0, 0.1,
                18.9, 189]
    floats = [struct.unpack(">f", rand.getrandbits(32).to_bytes(4, "big"))[0]
              for _ in range(40)]
    doubles = [struct.unpack(">d", rand.getrandbits(64).to_bytes(8, "big"))[0]
               for _ in range(20)]
    ints = [rand.randint(-2**31, 2**32) for _ in range(20)] + [rand.randint(-20, 20)
                                                                  for _ in range(20)]
    return specials + floats + doubles + ints


def random_rules(rand: random.Random, name: str, address: int, data_type: DataType,
                 order: WordOrder = WordOrder.ABCD) -> Channel:
    return Channel(name, address, data_type=data_type, word_order=order,
                   scale=rand.choice(SCALES), offset=rand.choice(OFFSETS),
                   sentinels=rand.choice(SENTINELS), valid_range=rand.choice(RANGES))


def test_number_judge_gives_what_judge_number_gives_for_every_rule_and_number():
    rand = random.Random(11)
    for index in range(300):
        rules = random_rules(rand, f"c{index}", 0, DataType.FLOAT64)
        judge = NumberJudge(rules)
        for raw in raw_numbers(rand):
            assert fields(Judged(*judge.outcome(raw))) == fields(judge_number(rules, raw)), \
                (rules, raw)


PLAIN = [(DataType.FLOAT32, ">f"), (DataType.FLOAT64, ">d"), (DataType.INT32, ">i"),
         (DataType.UINT64, ">Q")]


def test_plain_channels_are_judged_inline_as_judge_number_judges_them():
    """A plain channel's number, decided inline by ``ReadJudge.outcomes``: every raw
    number of ``raw_numbers`` its type can hold, as words, against ``judge_words``."""
    rand = random.Random(12)
    for data_type, code in PLAIN:
        channel = Channel("plain", 0, data_type=data_type)
        assert NumberJudge(channel).plain
        (request,) = plan([channel])
        for raw in raw_numbers(rand):
            try:
                packed = struct.pack(code, raw)
            except (struct.error, OverflowError):
                continue  # not a number of this type
            data = list(struct.unpack(f">{len(packed) // 2}H", packed))
            (name, outcome), = request.judge.outcomes(data)
            expected = fields(judge_words(channel, data))
            assert (exact(outcome[0]), outcome[1], outcome[2], exact(outcome[3])) == expected


def test_only_channels_without_sentinel_scale_offset_or_range_are_plain():
    rand = random.Random(17)
    for index in range(300):
        rules = random_rules(rand, f"c{index}", 0, DataType.FLOAT64)
        expected = not (rules.sentinels or rules.valid_range is not None
                        or rules.scale != 1.0 or rules.offset != 0.0)
        assert NumberJudge(rules).plain is expected, rules


def one_by_one(request, data: list[int]) -> list[tuple]:
    per_address = 2 if request.enron else 1
    result = []
    for channel in request.channels:
        offset = (channel.address - request.address) * per_address
        judged = judge_words(channel, data[offset:offset + channel.words])
        result.append((channel.name, *fields(judged)))
    return sorted(result)


def test_read_outcomes_are_channel_by_channel_judgement_with_sentinels_ranges_and_nan():
    rand = random.Random(13)
    for _ in range(300):
        address, channels = 0, []
        for index in range(rand.randint(1, 14)):
            data_type = rand.choice(NUMBERS)
            channels.append(random_rules(rand, f"c{index}", address, data_type,
                                         rand.choice(list(WordOrder))))
            address += data_type.word_count + rand.choice([0, 0, 1])
        for request in plan(channels, ReadLimits(max_gap=1)):
            data = [rand.choice(WORDS) if rand.random() < 0.6 else rand.getrandbits(16)
                    for _ in range(request.count)]
            got = sorted((name, exact(o[0]), o[1], o[2], exact(o[3]))
                         for name, o in request.judge.outcomes(data))
            assert got == one_by_one(request, data)


# -- a whole poll against a real simulator ----------------------------------------------

STATUS_RULES = ((0, QualityRule(Quality.SUSPECT, "calibrating")),
                (3, QualityRule(Quality.BAD, "fault", ("c1", "c2"))))


def device_channels(rand: random.Random, status: bool) -> list[Channel]:
    """A status word (or a plain word), a stream number, a clock, plain numbers and random
    numbers with random rules."""
    word = Channel("status", 0, quality_bits=STATUS_RULES,
                   quality_values=((7, QualityRule(Quality.SUSPECT, "warmup")),)) \
        if status else Channel("status", 0)
    channels = [word, Channel("stream", 1), Channel("clock", 2, data_type=DataType.UINT32)]
    channels += [Channel("plain_abcd", 4, data_type=DataType.FLOAT32),
                 Channel("plain_cdab", 6, data_type=DataType.FLOAT32,
                         word_order=WordOrder.CDAB),
                 Channel("plain_double", 8, data_type=DataType.FLOAT64),
                 Channel("plain_int", 12, data_type=DataType.INT32)]
    address = 14
    for index in range(20):
        data_type = rand.choice(NUMBERS)
        channels.append(random_rules(rand, f"c{index}", address, data_type,
                                     rand.choice(list(WordOrder))))
        address += data_type.word_count
    return channels


def general_poll(driver: ModbusMapDriver, link: ModbusLinkClient, now: datetime) -> Sample:
    """The poll as built before the fast paths: a Judged per channel from its own words,
    Reading(...) for each, status rules over every channel with every raw number."""
    device, settings = driver.device, driver.settings
    judged: dict[str, Judged] = {}
    for request in driver.requests:
        try:
            data = link.read_registers(device.unit_id, request.register, request.address,
                                       request.count)
        except ModbusExceptionReply as err:
            judged.update((ch.name, Judged(None, Quality.BAD, err.reason))
                          for ch in request.channels)
            continue
        for channel in request.channels:
            offset = channel.address - request.address
            judged[channel.name] = judge_words(channel, data[offset:offset + channel.words])
    readings = [Reading(device.id, ch.name, judged[ch.name].value, ch.unit,
                        judged[ch.name].quality, now, judged[ch.name].reason)
                for ch in settings.channels]
    raw = {name: result.raw for name, result in judged.items()}
    readings = apply_status(readings, settings.channels, raw)
    when = None
    if settings.clock is not None:
        try:
            when = instrument_time(settings.clock, raw)
        except ClockError:
            when = None
    stream = raw.get(settings.stream_channel) if settings.stream_channel else None
    extra = {"stream": stream} if isinstance(stream, int) else {}
    return Sample(device.id, now, tuple(readings), when, extra)


def comparable(sample: Sample | None) -> object:
    assert sample is not None
    return (sample.device_id, sample.acquired_at, sample.instrument_time, sample.extra,
            [(r.device_id, r.channel, exact(r.value), r.unit, r.quality, r.acquired_at,
              r.reason, r.instrument_time) for r in sample.readings])


@pytest.fixture
def simulator() -> Iterator[tuple[SimUnit, SimUnit, int]]:
    plain, holed = SimUnit(1, size=200), SimUnit(2, size=200, holes={RegisterKind.HOLDING: {30}})
    server = SimServer([plain, holed], tcp_port=0).start()
    try:
        yield plain, holed, server.tcp_port
    finally:
        server.stop()


def modbus_device(unit_id: int, channels: list[Channel], **settings: object) -> Device:
    return Device(id=f"dev-{unit_id}", link="lan", unit_id=unit_id, interval_s=1.0,
                  settings=ModbusSettings(channels=tuple(channels), **settings))


@pytest.mark.parametrize(("with_clock_and_stream", "with_status"),
                         [(False, True), (True, True), (False, False)])
def test_a_poll_gives_what_the_general_path_gives(simulator, with_clock_and_stream,
                                                  with_status):
    unit, _, port = simulator
    rand = random.Random(14 + with_clock_and_stream + 2 * with_status)
    channels = device_channels(rand, with_status)
    extra = dict(clock=InstrumentClock(TimeFormat.UNIX, ("clock",)),
                 stream_channel="stream") if with_clock_and_stream else {}
    driver = ModbusMapDriver(modbus_device(1, channels, **extra))
    link = ModbusLinkClient(TcpLink("lan", "127.0.0.1", port, timeout_ms=2000))
    try:
        for poll in range(40):
            words = {address: rand.choice(WORDS) if rand.random() < 0.5
                     else rand.getrandbits(16) for address in range(80)}
            words[0] = rand.choice([0, 1, 7, 8, 9, 0xFFFF])  # status bits 0 and 3, value 7
            words[1] = rand.choice([0, 3])
            unit.holding.clear()
            unit.holding.update(words)
            fast = driver.poll(link, NOW)
            assert comparable(fast) == comparable(general_poll(driver, link, NOW)), poll
    finally:
        link.close()
    if with_clock_and_stream:  # the clock and stream were really looked at
        assert fast is not None and "stream" in fast.extra


def test_a_read_that_fails_and_is_split_gives_what_the_general_path_gives(simulator):
    _, unit, port = simulator
    channels = [Channel("status", 20, quality_bits=STATUS_RULES),
                Channel("c1", 22, data_type=DataType.FLOAT32, sentinels=(-1.0,)),
                Channel("c2", 30), Channel("c3", 31, scale=0.1)]
    unit.holding.update({20: 1, 22: 0xBF80, 23: 0, 31: 189})  # c1 -1.0: its sentinel
    driver = ModbusMapDriver(modbus_device(2, channels, limits=ReadLimits(max_gap=8)))
    link = ModbusLinkClient(TcpLink("lan", "127.0.0.1", port, timeout_ms=2000))
    try:
        first = driver.poll(link, NOW)  # the merged read answers exception 02: split
        assert driver.split_reads and len(driver.requests) > 1
        assert driver.isolated == {"c2": "answers exception 02 (illegal data address) on "
                                         "its own"}
        assert comparable(first) == comparable(general_poll(driver, link, NOW))
        assert comparable(driver.poll(link, NOW)) == comparable(first)
    finally:
        link.close()
    by_name = {r.channel: r for r in first.readings}
    assert (by_name["c1"].quality, by_name["c1"].reason) == (Quality.BAD, "sentinel")
    assert (by_name["c2"].quality, by_name["c2"].reason) == (Quality.BAD, "exception_02")
    assert (by_name["c3"].value, by_name["c3"].quality, by_name["c3"].reason) == (
        18.9, Quality.SUSPECT, "calibrating")


def test_a_channel_without_an_outcome_fails_the_poll_where_it_happens(simulator):
    """A poll's sample carries its outcomes to the outbox's writer and the status page;
    a channel the reads left without one (a plan bug) must fail the poll itself, in the
    poller, with the channel named, not later in another thread."""
    _, _, port = simulator
    driver = ModbusMapDriver(modbus_device(1, [Channel("a", 0), Channel("b", 1)]))
    link = ModbusLinkClient(TcpLink("lan", "127.0.0.1", port, timeout_ms=2000))
    try:
        assert [r.channel for r in driver.poll(link, NOW).readings] == ["a", "b"]
        read_all = driver._read_all
        driver._read_all = lambda link: {  # type: ignore[method-assign]
            name: outcome for name, outcome in read_all(link).items() if name != "b"}
        with pytest.raises(AssertionError, match=r"dev-1: no outcome for channel\(s\) \['b'\]"):
            driver.poll(link, NOW)
    finally:
        link.close()
