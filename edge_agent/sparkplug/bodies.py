"""A stored sample body (payload.py ``encode_sample_body``) read back into a ``Sample``,
the form the Sparkplug session encodes.

The outbox keeps each sample as its JSON v1 body; the Sparkplug uplink turns the same
rows into DDATA, so both uplinks carry the same values, qualities, reasons and times.
A body that does not read (a bug, or a damaged row) is a BodyError naming what is
wrong: the uplink logs and counts it and sets the row aside, never crashes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from edge_agent.model import Quality, Reading, Sample


class BodyError(ValueError):
    """A stored body that is not a sample body; the message says what is wrong."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time(text: object, what: str) -> datetime:
    """An ISO-8601 time Sparkplug can carry: its timestamps and DateTime values are
    unsigned ms since 1970, so an earlier one (a GC's time registers reading 1900)
    would fail the encoding of every message it is in, and be retried forever."""
    if not isinstance(text, str):
        raise BodyError(f"{what}: {text!r}; expected an ISO-8601 time")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        raise BodyError(f"{what}: {text!r}; expected an ISO-8601 time") from err
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # stored bodies are UTC
    if moment < _EPOCH:
        raise BodyError(f"{what}: {text!r}; expected a time from 1970 on (Sparkplug "
                        "timestamps are milliseconds since 1970)")
    return moment


def sample_from_body(device_id: str, body: str) -> Sample:
    """The sample a stored body describes (readings in the body's order)."""
    try:
        document = json.loads(body)
        values = document["values"]
        acquired = _time(document["acquired_at"], "acquired_at")
        instrument = document.get("instrument_time")
        instrument_time = _time(instrument, "instrument_time") if instrument else None
        readings = tuple(
            Reading(device_id, channel, item.get("value"), item.get("unit") or "",
                    Quality(item.get("quality", "BAD")), acquired, item.get("reason"),
                    instrument_time)
            for channel, item in values.items())
    except BodyError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise BodyError(f"not a sample body ({type(err).__name__}: {err})") from err
    extra = {"stream": document["stream"]} if "stream" in document else {}
    return Sample(device_id, acquired, readings, instrument_time, extra)
