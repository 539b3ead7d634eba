"""How the host simulator shows events: one readable line each (one per metric), and one
JSON object per line for ``--jsonl`` (what the tests read)."""

from __future__ import annotations

import json
from datetime import datetime

from edge_agent.model import iso_utc
from edge_agent.sparkplug.datatypes import from_epoch_ms
from edge_agent.sparkplug.quality import AGENT_QUALITY_KEY, QUALITY_KEY
from edge_agent.tools.sparkplughost.hostmodel import Event

_SHOWN_APART = (QUALITY_KEY, AGENT_QUALITY_KEY, "engUnit")


def _plain(value: object) -> object:
    return iso_utc(value) if isinstance(value, datetime) else value


def _time(ms: int | None) -> str:
    return "-" if ms is None else iso_utc(from_epoch_ms(ms))


def line(event: Event) -> str:
    """The readable line of an event."""
    if event.kind == "rule":
        return f"RULE {event.rule} {event.node or '-'}: {event.detail}"
    if event.kind == "state":
        return (f"STATE {event.node} {'online' if event.value else 'offline'} "
                f"t={_time(event.timestamp_ms)}")
    where = event.node + (f"/{event.device}" if event.device else "")
    seq = "" if event.seq is None else f" seq={event.seq}"
    if event.kind == "message":
        extra = f" bdSeq={event.value}" if event.name else ""
        return f"{event.verb} {where}{seq}{extra} t={_time(event.timestamp_ms)}"
    props = event.properties
    unit = f" {props['engUnit']}" if props.get("engUnit") else ""
    quality = ""
    if QUALITY_KEY in props:
        quality = f" quality={props.get(AGENT_QUALITY_KEY) or ''}({props[QUALITY_KEY]})"
    others = "".join(f" {key}={_plain(value)}" for key, value in props.items()
                     if key not in _SHOWN_APART and value is not None)
    historical = " historical" if event.historical else ""
    value = "null" if event.value is None else _plain(event.value)
    return (f"{event.verb} {where}{seq} {event.name} = {value}{unit} [{event.datatype}]"
            f"{quality}{others}{historical} t={_time(event.timestamp_ms)}")


def record(event: Event) -> str:
    """The event as one line of JSON."""
    document = {
        "kind": event.kind, "verb": event.verb and str(event.verb), "node": event.node,
        "device": event.device, "seq": event.seq, "name": event.name,
        "value": _plain(event.value), "datatype": event.datatype,
        "properties": {key: _plain(value) for key, value in event.properties.items()},
        "timestamp": event.timestamp_ms, "historical": event.historical,
        "rule": event.rule, "detail": event.detail,
    }
    return json.dumps(document, ensure_ascii=False)
