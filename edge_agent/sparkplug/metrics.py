"""Building metrics and property sets: the one place that fills the generated classes.

Every property value carries its type (tck-id-payloads-metric-propertyvalue-type-req),
keys and values stay the same length (tck-id-payloads-propertyset-keys-array-size), and a
property without a value (a GOOD reading's reason) is sent as null, not left out, so a
host that keeps properties learns that the old reason no longer holds.
"""

from __future__ import annotations

from datetime import datetime

from edge_agent.sparkplug import sparkplug_b_pb2 as pb
from edge_agent.sparkplug.datatypes import epoch_ms, set_value

Property = tuple[str, int, object]  # key, DataType number, value (None: null)


def add_properties(metric: pb.Payload.Metric, properties: list[Property]) -> None:
    """Append ``properties`` to the metric's property set, each with its type."""
    for key, datatype, value in properties:
        metric.properties.keys.append(key)
        prop = metric.properties.values.add()
        prop.type = datatype
        set_value(prop, datatype, value)


def add_metric(payload: pb.Payload, *, name: str, alias: int | None, datatype: int,
               timestamp: datetime, value: object, birth: bool,
               historical: bool = False) -> pb.Payload.Metric:
    """Append one metric. A birth names it and gives its datatype and alias
    (tck-id-payloads-alias-birth-requirement, ...-metric-datatype-req); a data message
    gives the alias only (tck-id-payloads-alias-data-cmd-requirement,
    ...-metric-datatype-not-req). Every metric carries its timestamp
    (tck-id-payloads-name-birth-data-requirement). ``alias`` None: a birth metric sent by
    name only (``Node Control/Rebirth``). ValueTypeError: see ``set_value``."""
    metric = payload.metrics.add()
    if birth:
        metric.name = name
        metric.datatype = datatype
    if alias is not None:
        metric.alias = alias
    metric.timestamp = epoch_ms(timestamp)
    if historical:
        metric.is_historical = True
    set_value(metric, datatype, value)
    return metric


def new_payload(now: datetime, seq: int | None) -> pb.Payload:
    """A payload sent at ``now`` (tck-id-payloads-*-timestamp) with ``seq``, or without
    one (NDEATH, tck-id-payloads-ndeath-seq)."""
    payload = pb.Payload()
    payload.timestamp = epoch_ms(now)
    if seq is not None:
        payload.seq = seq
    return payload
