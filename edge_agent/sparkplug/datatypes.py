"""Sparkplug datatypes: which one a channel gets, and how a value sits in a payload.

A metric's datatype comes from its channel's type (the ``type:`` of a Modbus channel, or
``number``/``text`` for text-protocol fields). A scaled integer channel (``scale`` or
``offset`` set) yields fractions, so it is a Double: an Int16 tag could not hold 12.5.

Where a value goes follows the specification's payload chapter (and Tahu): 8/16/32-bit
integers in ``int_value`` (uint32), 64-bit integers and DateTime in ``long_value``
(uint64), negative integers as two's complement of the type's own width (Int16 -1 is
65535 in int_value), Float/Double/Boolean/String in their own fields.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from edge_agent.sparkplug import sparkplug_b_pb2 as pb

# The agent's channel type words -> Sparkplug DataType numbers.
CHANNEL_TYPES: dict[str, int] = {
    "bool": pb.Boolean,
    "int16": pb.Int16,
    "uint16": pb.UInt16,
    "int32": pb.Int32,
    "uint32": pb.UInt32,
    "int64": pb.Int64,
    "uint64": pb.UInt64,
    "float32": pb.Float,
    "float64": pb.Double,
    "bcd16": pb.UInt16,   # 0..9999
    "bcd32": pb.UInt32,   # 0..99999999
    "string": pb.String,
    "number": pb.Double,  # a text-protocol number field
    "text": pb.String,    # a text-protocol text field
}
INTEGER_TYPES = frozenset({pb.Int16, pb.UInt16, pb.Int32, pb.UInt32, pb.Int64, pb.UInt64,
                           pb.Int8, pb.UInt8})
_WIDTHS = {pb.Int8: 8, pb.Int16: 16, pb.Int32: 32, pb.Int64: 64,
           pb.UInt8: 8, pb.UInt16: 16, pb.UInt32: 32, pb.UInt64: 64}
_SIGNED = frozenset({pb.Int8, pb.Int16, pb.Int32, pb.Int64})
_INT_FIELD = frozenset({pb.Int8, pb.Int16, pb.Int32, pb.UInt8, pb.UInt16, pb.UInt32})
_LONG_FIELD = frozenset({pb.Int64, pb.UInt64, pb.DateTime})
_STRING_FIELD = frozenset({pb.String, pb.Text, pb.UUID})


class ValueTypeError(ValueError):
    """A value that does not fit its metric's datatype (a bug upstream, or a channel
    whose type changed without a new birth); the caller sends the metric as null."""


def channel_datatype(type_word: str, scaled: bool = False) -> int:
    """The Sparkplug DataType of a channel of type ``type_word``; a scaled integer
    channel is a Double. KeyError names an unknown type word."""
    try:
        datatype = CHANNEL_TYPES[type_word]
    except KeyError:
        raise KeyError(f"channel type {type_word!r} has no Sparkplug datatype "
                       f"(known: {', '.join(sorted(CHANNEL_TYPES))})") from None
    if scaled and datatype in INTEGER_TYPES:
        return pb.Double
    return datatype


def datatype_name(datatype: int) -> str:
    """``Float``, ``Int16``...: the specification's name of a DataType number."""
    try:
        return pb.DataType.Name(datatype)
    except ValueError:
        return f"DataType({datatype})"


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, UTC (tck-id-payloads-timestamp-in-UTC)."""
    return int(round(moment.astimezone(UTC).timestamp() * 1000))


def from_epoch_ms(ms: int) -> datetime:
    """The UTC datetime of a Sparkplug timestamp."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def set_value(target: Any, datatype: int, value: object) -> None:
    """Put ``value`` into ``target`` (a Metric or PropertyValue) as ``datatype`` wants.

    None sets ``is_null``. ValueTypeError when the value cannot be this type.
    """
    if value is None:
        target.is_null = True
        return
    if datatype == pb.Boolean:
        if not isinstance(value, bool):
            raise ValueTypeError(f"{value!r} is not a Boolean")
        target.boolean_value = value
    elif datatype in _WIDTHS:
        _set_integer(target, datatype, value)
    elif datatype == pb.DateTime:
        if not isinstance(value, datetime):
            raise ValueTypeError(f"{value!r} is not a DateTime")
        target.long_value = epoch_ms(value)
    elif datatype in (pb.Float, pb.Double):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueTypeError(f"{value!r} is not a number")
        if datatype == pb.Float:
            target.float_value = float(value)
        else:
            target.double_value = float(value)
    elif datatype in _STRING_FIELD:
        if not isinstance(value, str):
            raise ValueTypeError(f"{value!r} is not text")
        target.string_value = value
    else:
        raise ValueTypeError(f"datatype {datatype_name(datatype)} is not sent by the agent")


def _set_integer(target: Any, datatype: int, value: object) -> None:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueTypeError(f"{value!r} is not an integer")
    bits = _WIDTHS[datatype]
    low, high = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if datatype in _SIGNED
                 else (0, (1 << bits) - 1))
    if not low <= value <= high:
        raise ValueTypeError(f"{value} is outside {datatype_name(datatype)} ({low}..{high})")
    wire = value % (1 << bits)  # two's complement of the type's own width
    if datatype in _INT_FIELD:
        target.int_value = wire
    else:
        target.long_value = wire


def get_value(source: Any, datatype: int) -> object:
    """The value ``source`` (a Metric or PropertyValue) holds, read as ``datatype``:
    the inverse of ``set_value``; None when it is null or holds nothing."""
    if source.is_null or source.WhichOneof("value") is None:
        return None
    if datatype in _WIDTHS:
        bits = _WIDTHS[datatype]
        wire = source.int_value if datatype in _INT_FIELD else source.long_value
        if datatype in _SIGNED and wire >= 1 << (bits - 1):
            return wire - (1 << bits)
        return wire
    if datatype == pb.DateTime:
        return from_epoch_ms(source.long_value)
    field = source.WhichOneof("value")
    return getattr(source, field)
