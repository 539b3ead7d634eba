"""Fuzzing the text-protocol decoders: random and mutated bytes into the framing, the
record parser and the serial-text driver. Nothing but our documented outcomes may come
out (frames, ``FrameFault``s, ``RecordError``, the driver's ``LinkError``s, BAD
readings), values are finite numbers or None, and memory stays bounded.

Seeded and counted (tests/support/fuzzing.py): the same cases on every CI run.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import pytest
from edge_agent_drivers.serialtext.protocol.checksums import (
    ByteOrder,
    ChecksumEncoding,
    ChecksumKind,
)
from edge_agent_drivers.serialtext.protocol.framing import Deframer, Frame, FrameFault, encode_frame
from edge_agent_drivers.serialtext.protocol.parse import RecordError, parse_record
from edge_agent_drivers.serialtext.protocol.settings import (
    Checksum,
    Covers,
    Framing,
    FramingKind,
    Locator,
    RecordFormat,
    StatusField,
    StatusRule,
    TextChannel,
    TimeField,
)
from support.fuzzing import SEED, mutate, noise, peak_memory, rng, split
from support.textreplay import fixture_device, fixture_files, load_fixture

from edge_agent.driver import load_driver
from edge_agent.link import LinkError
from edge_agent.model import Quality

pytestmark = pytest.mark.sweep  # fuzzing: run by scripts/test, left out by --fast

NOW = datetime(2024, 5, 6, 6, 31, tzinfo=UTC)
MAX_BYTES = 64  # small, so overlong frames and overflow are common cases
PEAK_BYTES = 8 * 1024 * 1024

FRAMINGS = [
    (Framing(max_bytes=MAX_BYTES), None),
    (Framing(FramingKind.LINE, b"$", b"", b"\r\n", MAX_BYTES),
     Checksum(ChecksumKind.XOR8, separator=b"*")),
    (Framing(FramingKind.STX_ETX, b"\x02", b"\x03", b"", MAX_BYTES),
     Checksum(ChecksumKind.SUM8, covers=Covers.BODY_END)),
    (Framing(FramingKind.STX_ETX, b"<<", b">>", b"", MAX_BYTES),
     Checksum(ChecksumKind.CRC16_MODBUS, ChecksumEncoding.RAW, ByteOrder.LITTLE)),
]
BODIES = [b"MD01,2024-05-06,14:30:00,+0012.3,+0004.5,A", b"H2S,1.25,ppm,OK", b"D 0042 0017",
          b"", b"x" * (MAX_BYTES + 5)]

NOX = RecordFormat(
    channels=(TextChannel("no", Locator((4,)), unit="ppb"),
              TextChannel("so2", Locator((5,)), scale=1e300, unit="ppb"),
              TextChannel("temp", Locator((6,)), scale=0.1, offset=-40, unit="degC")),
    delimiter=",", field_count=7, accept=re.compile("^MD"),
    time=TimeField(Locator((2, 3)), "%Y-%m-%d %H:%M:%S", timedelta(hours=8)),
    status=(StatusField(Locator((7,)), (("A", StatusRule(Quality.GOOD)),)),),
)
H2S = RecordFormat(
    channels=(TextChannel("h2s", Locator(group="h2s"), scale=-1e308),),
    pattern=re.compile(r"^H2S,(?P<h2s>[^,]*),(?P<t>[^,]*),(?P<s>\w*)$"),
    time=TimeField(Locator(group="t"), "%Y-%m-%dT%H:%M:%S%z"),
    status=(StatusField(Locator(group="s"), (("OK", StatusRule(Quality.GOOD)),)),),
)
RECORDS = [(NOX, b"MD01,2024-05-06,14:30:00,+0012.3,3,650,A"),
           (NOX, b"MD01,0001-01-01,00:00:00,1,2,3,A"),
           (H2S, b"H2S,1.25,2024-05-06T14:30:00+0800,OK"),
           (H2S, b"H2S,1e3,9999-12-31T23:59:59-1400,OK")]


def frames_of(deframer: Deframer, pieces: list[bytes]) -> list:
    events = []
    for piece in pieces:
        events += deframer.feed(piece)
        assert len(deframer.pending) <= MAX_BYTES + 2, "the deframer holds at most a frame"
    return events


def outline(events: list) -> list:
    """Frames with their bodies, faults by reason (a fault's detail shows what was
    buffered when it was found, which depends on the split)."""
    return [e if isinstance(e, Frame) else e.reason for e in events]


def test_fuzzed_bytes_become_frames_or_faults_the_same_however_split():
    """The framing's promise, under fuzz: any bytes give frames or FrameFaults, never an
    exception, hold at most max_bytes, and give the same events whole or in pieces."""
    rand = rng("framing")
    with peak_memory() as peak:
        for case in range(1500):
            framing, checksum = FRAMINGS[case % len(FRAMINGS)]
            good = b"".join(encode_frame(rand.choice(BODIES), framing, checksum)
                            for _ in range(rand.randint(1, 3)))
            data = mutate(rand, good) if case % 3 else noise(rand, 300)
            whole = frames_of(Deframer(framing, checksum), [data])
            pieces = split(rand, data)
            parts = frames_of(Deframer(framing, checksum), pieces)
            context = f"seed {SEED} case {case}: {data!r} in {pieces!r}"
            assert all(isinstance(e, Frame | FrameFault) for e in whole), context
            assert outline(parts) == outline(whole), context
    assert peak[0] < PEAK_BYTES


def test_fuzzed_records_give_values_or_record_errors_only():
    """Mutated records through the parser: a RecordError (the record is refused) or
    values that are finite numbers or None with a BAD reason, and a time in UTC."""
    rand = rng("records")
    with peak_memory() as peak:
        for case in range(3000):
            fmt, body = RECORDS[case % len(RECORDS)]
            data = mutate(rand, body)
            try:
                record = parse_record(data, fmt)
            except RecordError:
                continue
            context = f"seed {SEED} case {case}: {data!r}"
            for value in record.values:
                if value.value is None:
                    assert value.quality is Quality.BAD and value.reason, context
                else:
                    assert math.isfinite(value.value), context
            if record.instrument_time is not None:
                assert record.instrument_time.utcoffset() == timedelta(0), context
    assert peak[0] < PEAK_BYTES


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: p.stem)
def test_fuzzed_instrument_traffic_gives_readings_or_link_errors(path, tmp_path):
    """The recorded answers of each shipped fixture, mutated and split, through the
    serial-text driver: a sample whose values are finite or BAD, or a LinkError (the
    poll's BAD readings), never another exception."""
    fixture = load_fixture(path)
    device, _link = fixture_device(fixture, tmp_path)
    driver = load_driver(device)
    answers = [bytes.fromhex(poll["rx"]) for poll in fixture["polls"]]
    rand = rng(path.stem)
    outcomes = {"sample": 0, "error": 0}
    with peak_memory() as peak:
        for case in range(600):
            data = mutate(rand, rand.choice(answers))
            events = []
            for piece in split(rand, data):
                events += driver.deframer.feed(piece)
            try:
                sample = driver.sample_from(events, NOW)
            except LinkError as err:
                assert err.reason, err
                outcomes["error"] += 1
                continue
            finally:
                driver.deframer.reset()
            outcomes["sample"] += 1
            for reading in sample.readings:
                context = f"seed {SEED} case {case}: {data!r}: {reading}"
                if reading.value is None:
                    assert reading.quality is Quality.BAD and reading.reason, context
                else:
                    assert math.isfinite(reading.value), context
    assert peak[0] < PEAK_BYTES
    assert outcomes["sample"] and outcomes["error"], f"the mutations reach both: {outcomes}"
