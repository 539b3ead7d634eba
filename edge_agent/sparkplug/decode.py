"""Reading a Sparkplug payload back into plain values (the host simulator's side).

A data message carries aliases and no datatypes, so reading one needs what the birth
said: callers keep the birth's alias -> (name, datatype) table and pass the datatype in.
A payload that does not decode is a PayloadError naming the topic; a receiver logs and
counts it, never stops.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from edge_agent.sparkplug import sparkplug_b_pb2 as pb
from edge_agent.sparkplug.datatypes import get_value


class PayloadError(ValueError):
    """Bytes that are not a Sparkplug B payload."""


def decode_payload(topic: str, data: bytes) -> pb.Payload:
    """The payload published on ``topic``; PayloadError when it does not decode."""
    try:
        return pb.Payload.FromString(data)
    except DecodeError as err:
        raise PayloadError(f"{topic}: not a Sparkplug B payload ({err})") from err


def metric_value(metric: pb.Payload.Metric, datatype: int) -> object:
    """The metric's value as ``datatype`` says (None when null)."""
    return get_value(metric, datatype)


def metric_properties(metric: pb.Payload.Metric) -> dict[str, object]:
    """The metric's property set as a dict (values read by each property's own type)."""
    found: dict[str, object] = {}
    for key, value in zip(metric.properties.keys, metric.properties.values, strict=False):
        found[key] = get_value(value, value.type)
    return found
