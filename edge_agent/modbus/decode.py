"""Register words to numbers: pure functions, tested with tables of raw words.

Modbus registers are 16-bit words sent big-endian. A 32-bit value spans two registers;
devices disagree on which word comes first and, rarely, on the byte order inside a word.
``WordOrder`` names the four layouts by the bytes of the value, A most significant.
"""

from __future__ import annotations

import math
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
    if data_type is DataType.FLOAT32:
        return shortest_float32(value)
    return value


def shortest_float32(value: float) -> float:
    """The shortest decimal that is the same float32: 0.635, not 0.6349999904632568.

    The instrument sent a float32; printing its double widening shows digits the
    instrument never had. No information is lost: the result packs to the same bits.
    """
    if not math.isfinite(value) or value == 0.0:
        return value
    packed = struct.pack(">f", value)
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        try:
            if struct.pack(">f", candidate) == packed:
                return candidate
        except OverflowError:  # rounded past float32's largest value (3.4e38)
            continue
    return value


def scale_value(raw: int | float, scale: float, offset: float) -> int | float:
    """Engineering value = raw * scale + offset, without binary noise (18.9, not
    18.900000000000002: 15 significant digits is what a double holds exactly)."""
    if scale == 1.0 and offset == 0.0:
        return raw
    return float(f"{raw * scale + offset:.15g}")
