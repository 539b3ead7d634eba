"""Register words to numbers: pure functions, tested with tables of raw words.

Modbus registers are 16-bit words sent big-endian. A 32-bit value spans two registers;
devices disagree on which word comes first and, rarely, on the byte order inside a word.
``WordOrder`` names the four layouts by the bytes of the value, A most significant.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from edge_agent.config.schema import DataType, WordOrder

_STRUCT_CODES = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.FLOAT32: ">f",
}


def words_to_bytes(words: Sequence[int], order: WordOrder) -> bytes:
    """Reassemble the value's bytes A..D (most significant first) from wire words."""
    if any(not 0 <= word <= 0xFFFF for word in words):
        raise ValueError(f"register words must be 0..65535, got {list(words)}")
    raw = b"".join(word.to_bytes(2, "big") for word in words)
    if len(words) == 1:
        return raw if order in (WordOrder.ABCD, WordOrder.CDAB) else raw[::-1]
    if order is WordOrder.ABCD:
        return raw
    if order is WordOrder.CDAB:
        return raw[2:4] + raw[0:2]
    if order is WordOrder.BADC:
        return raw[1::-1] + raw[3:1:-1]
    return raw[::-1]  # DCBA


def decode_words(words: Sequence[int], data_type: DataType, order: WordOrder) -> int | float:
    """The raw number held by ``words`` (no scaling). Raises ValueError on a wrong count."""
    if len(words) != data_type.word_count:
        raise ValueError(f"{data_type.value} needs {data_type.word_count} registers, "
                         f"got {len(words)}")
    (value,) = struct.unpack(_STRUCT_CODES[data_type], words_to_bytes(words, order))
    return value


def scale_value(raw: int | float, scale: float, offset: float) -> int | float:
    """Engineering value = raw * scale + offset; integers stay integers when exact."""
    if scale == 1.0 and offset == 0.0:
        return raw
    return raw * scale + offset
