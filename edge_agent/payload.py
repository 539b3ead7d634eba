"""Payload v1: how samples and gap events become MQTT message bodies.

The sample body is encoded once, when the sample is appended to the outbox, and stored as
JSON text; a message wraps one or more stored bodies of one device. Encoding a message
from the same rows always gives the same bytes, so a resent message is identical to the
original (same message id, same samples). Schema: edge_agent/schema/payload-v1.schema.json.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from edge_agent.model import Sample, iso_utc

PAYLOAD_VERSION = 1


@dataclass(frozen=True)
class StoredEntry:
    """One outbox row as the forwarder sees it: a sample or a gap event."""

    row_id: int
    kind: str  # "sample" | "gap"
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
    """The stored JSON of one sample: everything but the envelope."""
    values = {
        reading.channel: {
            "value": _json_number(reading.value),
            "unit": reading.unit,
            "quality": reading.quality.value,
            "reason": reading.reason,
        }
        for reading in sample.readings
    }
    body = {
        "id": sample_id,
        "seq": seq,
        "acquired_at": iso_utc(sample.acquired_at),
        "instrument_time": iso_utc(sample.instrument_time) if sample.instrument_time else None,
        **({"stream": sample.extra["stream"]} if "stream" in sample.extra else {}),
        "values": values,
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


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


def encode_message(message: Message, station_id: str) -> bytes:
    """The bytes published for a message; deterministic for the same rows."""
    items = ",".join(entry.body for entry in message.entries)
    list_key = "samples" if message.kind == "sample" else "gaps"
    head = {
        "v": PAYLOAD_VERSION,
        "type": "data" if message.kind == "sample" else "gap",
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
