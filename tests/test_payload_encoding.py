"""A sample's stored JSON (``encode_sample_body``) is assembled from cached per-channel
fragments (issue 11); its bytes must stay those of ``json.dumps`` of the payload-v1 dict,
whatever the names, units, reasons and values hold, and valid against the schema."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from support.collector import VALIDATOR

from edge_agent.model import PolledReadings, Quality, Reading, Sample, iso_utc
from edge_agent.payload import Message, StoredEntry, encode_message, encode_sample_body

NOW = datetime(2026, 12, 3, 6, 0, 0, 123456, tzinfo=UTC)


def by_json_dumps(sample: Sample, seq: int, sample_id: str) -> str:
    """The reference: the payload-v1 dict given to json.dumps (the encoder before issue
    11)."""
    def number(value: object) -> object:
        return None if isinstance(value, float) and not math.isfinite(value) else value
    body = {
        "id": sample_id, "seq": seq, "acquired_at": iso_utc(sample.acquired_at),
        "instrument_time": iso_utc(sample.instrument_time) if sample.instrument_time else None,
        **({"stream": sample.extra["stream"]} if "stream" in sample.extra else {}),
        "values": {r.channel: {"value": number(r.value), "unit": r.unit,
                               "quality": r.quality.value, "reason": r.reason}
                   for r in sample.readings},
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


AWKWARD_TEXT = ["", "ppm", "mg/m³", "µg/m3", 'say "hi"', "back\\slash", "tab\there",
                "line\nbreak", "\x00nul", "\x7f", "\u2028", "日本語", "emoji 🧪", "é"]
VALUES = [None, True, False, 0, -1, 2**64, -(2**63), 0.0, -0.0, 0.635, 1e300, 5e-324,
          -123.456, 16777218.0, math.nan, math.inf, -math.inf, "", "text", 'q"uote',
          "日本", "ctl\x01"]


def random_sample(rand: random.Random) -> Sample:
    readings = tuple(
        Reading("dev-1", rand.choice(AWKWARD_TEXT + [f"c{n}" for n in range(6)]),
                rand.choice(VALUES), rand.choice(AWKWARD_TEXT), rand.choice(list(Quality)),
                NOW, rand.choice([None, "timeout", "out_of_range+calibrating", 'odd "r"']))
        for _ in range(rand.randint(0, 12)))
    extra = rand.choice([{}, {"stream": rand.randint(0, 9)}])
    when = rand.choice([None, NOW - timedelta(seconds=30)])
    return Sample("dev-1", NOW, readings, when, extra)


def test_sample_bodies_are_the_bytes_json_dumps_gives():
    rand = random.Random(12)
    for seq in range(1, 3001):
        sample = random_sample(rand)
        # the agent's ids are 32 hex digits; any text is encoded as json.dumps does
        sample_id = f"{seq:032x}" if seq % 3 else rand.choice(AWKWARD_TEXT) + str(seq)
        assert encode_sample_body(sample, seq, sample_id) == \
            by_json_dumps(sample, seq, sample_id)


def as_polled(sample: Sample) -> Sample:
    """``sample`` as a driver's poll hands it over: its readings as the poll's outcomes
    (``PolledReadings``), no ``Reading`` built. Channels named twice keep the last
    outcome, as the driver's dict of outcomes does."""
    outcomes = {r.channel: (r.value, r.quality, r.reason, None) for r in sample.readings}
    channels = [(r.channel, r.unit) for r in sample.readings]
    return replace(sample, readings=PolledReadings(sample.device_id, sample.acquired_at,
                                                   channels, outcomes))


def test_bodies_of_polled_samples_are_the_bytes_their_readings_give():
    """The encoder reads a poll's outcomes without building its readings; the bytes must
    be those of the same sample with its readings built."""
    rand = random.Random(14)
    for seq in range(1, 2001):
        polled = as_polled(random_sample(rand))
        built = replace(polled, readings=tuple(polled.readings))
        assert isinstance(polled.readings, PolledReadings)
        assert encode_sample_body(polled, seq, f"{seq:032x}") == \
            encode_sample_body(built, seq, f"{seq:032x}") == \
            by_json_dumps(built, seq, f"{seq:032x}")


def test_a_channel_named_twice_keeps_its_first_place_and_last_value():
    readings = (Reading("d", "a", 1, "ppm", Quality.GOOD, NOW),
                Reading("d", "b", 2, "ppm", Quality.GOOD, NOW),
                Reading("d", "a", 3, "ppm", Quality.BAD, NOW, "sentinel"))
    sample = Sample("d", NOW, readings)
    body = encode_sample_body(sample, 1, "0" * 32)
    assert body == by_json_dumps(sample, 1, "0" * 32)
    assert list(json.loads(body)["values"]) == ["a", "b"]
    assert json.loads(body)["values"]["a"]["value"] == 3


def coherent(reading: Reading) -> Reading:
    """What a driver produces: GOOD has a value and no reason, the others a reason."""
    if reading.quality is Quality.GOOD:
        value = 1.5 if reading.value is None or (isinstance(reading.value, float)
                                                 and not math.isfinite(reading.value)) \
            else reading.value
        return replace(reading, value=value, reason=None)
    return replace(reading, reason=reading.reason or "timeout")


def test_messages_of_encoded_bodies_are_valid_payload_v1():
    rand = random.Random(13)
    for seq in range(1, 301):
        sample = random_sample(rand)
        if not sample.readings:
            continue
        sample = replace(sample, readings=tuple(coherent(r) for r in sample.readings))
        body = encode_sample_body(sample, seq, f"{seq:032x}")
        entry = StoredEntry(seq, "sample", "dev-1", seq, f"{seq:032x}", body)
        message = Message(f"{seq:032x}", "sample", "dev-1", False, (entry,))
        VALIDATOR.validate(json.loads(encode_message(message, "station-1")))


def test_a_stream_is_encoded_as_json_dumps_encodes_it_and_a_nan_one_fails():
    """The stream number: an int as it is, a bool as JSON's true, and a NaN (a driver
    bug) raises as json.dumps does, so the poller counts an agent_error instead of
    storing a null (tests/test_poller_settle.py relies on it)."""
    import pytest

    for stream in (0, 7, 2**40, True, [1, 2], {"a": 1}):
        sample = Sample("dev-1", NOW, (), None, {"stream": stream})
        assert encode_sample_body(sample, 1, "0" * 32) == by_json_dumps(sample, 1, "0" * 32)
    with pytest.raises(ValueError):
        encode_sample_body(Sample("dev-1", NOW, (), None, {"stream": math.nan}), 1, "0" * 32)
