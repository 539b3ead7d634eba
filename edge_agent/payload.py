"""Payload v1: how samples, gap events and alarm events become MQTT message bodies.

The sample body is encoded once, when the sample is appended to the outbox, and stored as
JSON text; a message wraps one or more stored bodies of one device. Encoding a message
from the same rows always gives the same bytes, so a resent message is identical to the
original (same message id, same samples). Schema: edge_agent/schema/payload-v1.schema.json.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edge_agent.model import PolledReadings, Quality, Sample, iso_utc

PAYLOAD_VERSION = 1


@dataclass(frozen=True)
class StoredEntry:
    """One outbox row as the forwarder sees it: a sample or a gap event."""

    row_id: int
    kind: str  # "sample" | "gap" | "alarm"
    device_id: str
    seq: int | None
    entry_id: str
    body: str  # JSON object text


@dataclass(frozen=True)
class Message:
    """One MQTT publication: rows of one device and one kind, in outbox order."""

    msg_id: str
    kind: str
    device_id: str
    historical: bool
    entries: tuple[StoredEntry, ...]


def _json_number(value: float | int | bool | str | None) -> float | int | bool | str | None:
    """JSON has no NaN or infinity; the driver flags those BAD, here they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def encode_sample_body(sample: Sample, seq: int, sample_id: str) -> str:
    """The stored JSON of one sample: everything but the envelope.

    The bytes are exactly those of ``json.dumps`` of the nested dict (compact separators,
    ``ensure_ascii=False``), assembled from per-channel fragments that are computed once
    and cached (``_fragments``): only the value itself is encoded per reading, a finite
    float in the loop itself. The head is written out too: ``json.dumps`` with its
    keyword arguments builds an encoder per call, a fifth of this function's time.
    JSON encoding of samples was 7-10 % of the agent's CPU (issue 11), and this runs in
    the outbox's writer thread, the busiest of the agent.
    """
    extra = sample.extra
    stream = extra.get("stream", _NO_STREAM) if extra else _NO_STREAM
    head = "".join((
        '{"id":', _json_text(sample_id), ',"seq":', _json_value(seq),
        ',"acquired_at":"', iso_utc(sample.acquired_at),
        '","instrument_time":',
        f'"{iso_utc(sample.instrument_time)}"' if sample.instrument_time else "null",
        "" if stream is _NO_STREAM else ',"stream":' + _json_stream(stream)))
    # a dict, as before: a channel named twice keeps its first place and its last value
    values: dict[str, str] = {}
    fragments = _FRAGMENTS
    readings = sample.readings
    if isinstance(readings, PolledReadings):  # from the poll's outcomes: no Reading built
        outcomes = readings.outcomes
        for channel, unit in readings.channels:
            value, quality, reason, _ = outcomes[channel]
            key = (channel, unit, quality, reason)
            around = fragments.get(key) or _fragments(key)
            text = float.__repr__(value) if value.__class__ is float and value - value == 0 \
                else _json_value(value)  # finite floats, the common case, without a call
            values[channel] = around[0] + text + around[1]
    else:
        for reading in readings:
            key = (reading.channel, reading.unit, reading.quality, reading.reason)
            around = fragments.get(key) or _fragments(key)
            value = reading.value
            text = float.__repr__(value) if value.__class__ is float and value - value == 0 \
                else _json_value(value)
            values[reading.channel] = around[0] + text + around[1]
    return f'{head},"values":{{{",".join(values.values())}}}}}'


_NO_STREAM = object()
_FragmentKey = tuple[str, str, Quality, str | None]  # channel, unit, quality, reason


def _json_stream(stream: object) -> str:
    """The stream number as ``json.dumps`` writes it; anything but an int goes through it
    and so fails as it did (a NaN raises ValueError: a bug, never a null in its place)."""
    if stream.__class__ is int:
        return int.__repr__(stream)  # type: ignore[arg-type]
    return json.dumps(stream, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _json_text(text: str) -> str:
    """``json.dumps(text, ensure_ascii=False)``, without the call for the usual sample id
    (32 hex digits: nothing to escape)."""
    if text.isascii() and text.isalnum():
        return f'"{text}"'
    return json.dumps(text, ensure_ascii=False)


_FRAGMENTS: dict[_FragmentKey, tuple[str, str]] = {}
_MAX_FRAGMENTS = 4096  # channels x units x qualities x reasons of a station: far fewer


def _fragments(key: _FragmentKey) -> tuple[str, str]:
    """The JSON before and after a reading's value, cached by channel, unit, quality and
    reason (a plain dict: one lookup per reading; emptied if it ever grows past
    ``_MAX_FRAGMENTS``, so odd reasons cannot make it grow without bound)."""
    channel, unit, quality, reason = key
    rest = {"unit": unit, "quality": quality.value, "reason": reason}
    around = (json.dumps(channel, ensure_ascii=False) + ':{"value":',
              "," + json.dumps(rest, separators=(",", ":"), ensure_ascii=False)[1:])
    if len(_FRAGMENTS) >= _MAX_FRAGMENTS:
        _FRAGMENTS.clear()
    _FRAGMENTS[key] = around
    return around


def _json_value(value: float | int | bool | str | None) -> str:
    """The JSON of a reading's value as ``json.dumps`` writes it (floats and ints by their
    repr, as its encoder does), with non-finite numbers as null (``_json_number``)."""
    kind = value.__class__
    if kind is float:
        return float.__repr__(value) if math.isfinite(value) else "null"  # type: ignore[arg-type]
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)  # type: ignore[arg-type]
    return json.dumps(_json_number(value), ensure_ascii=False, allow_nan=False)


def encode_gap_body(
    gap_id: str, first_at: str, last_at: str, count: int, first_seq: int | None,
    last_seq: int | None, reasons: Sequence[str],
) -> str:
    """The stored JSON of one gap event (samples dropped on purpose, counted)."""
    body = {
        "id": gap_id,
        "first_at": first_at,
        "last_at": last_at,
        "count": count,
        "first_seq": first_seq,
        "last_seq": last_seq,
        "reasons": sorted(set(reasons)),
    }
    return json.dumps(body, separators=(",", ":"))


def encode_alarm_body(event: Mapping[str, object]) -> str:
    """The stored JSON of one alarm event (``AlarmEvent.as_dict``): what the ``alarms``
    list of an alarm message holds (docs/payload.md)."""
    clean = {key: None if isinstance(value, float) and not math.isfinite(value) else value
             for key, value in event.items()}
    return json.dumps(clean, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# message kind -> (the envelope's "type", the key of its list)
_ENVELOPES = {"sample": ("data", "samples"), "gap": ("gap", "gaps"),
              "alarm": ("alarm", "alarms")}


def encode_message(message: Message, station_id: str) -> bytes:
    """The bytes published for a message; deterministic for the same rows."""
    items = ",".join(entry.body for entry in message.entries)
    kind, list_key = _ENVELOPES[message.kind]
    head = {
        "v": PAYLOAD_VERSION,
        "type": kind,
        "id": message.msg_id,
        "station": station_id,
        "device": message.device_id,
        "historical": message.historical,
    }
    head_json = json.dumps(head, separators=(",", ":"), ensure_ascii=False)
    return f'{head_json[:-1]},"{list_key}":[{items}]}}'.encode()


def envelope_overhead_bytes(station_id: str, device_id: str) -> int:
    """Bytes a message costs besides its entries (bounds message size when batching)."""
    empty = Message("0" * 32, "sample", device_id, historical=False, entries=())
    return len(encode_message(empty, station_id)) + 16
