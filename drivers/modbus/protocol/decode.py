"""Register words to values: pure functions, tested with tables of raw words.

Modbus registers are 16-bit words sent big-endian. Wider values span several registers;
devices disagree on which word comes first and, more rarely, on the byte order inside a
word. ``WordOrder`` names the layouts by the bytes of a 32-bit value, A most significant,
and generalises to 64 bits: CDAB reverses the words, BADC swaps the bytes inside each
word, DCBA does both (fully little-endian).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from edge_agent_drivers.modbus.settings import DataType, StringLayout, WordOrder

_STRUCT_CODES = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.INT64: ">q",
    DataType.UINT64: ">Q",
    DataType.FLOAT32: ">f",
    DataType.FLOAT64: ">d",
}


class DecodeError(ValueError):
    """Words that cannot be the declared type (a BCD nibble above 9, a wrong count);
    ``reason`` is the quality reason the reading gets."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def words_to_bytes(words: Sequence[int], order: WordOrder) -> bytes:
    """Reassemble the value's bytes, most significant first, from wire words."""
    if any(not 0 <= word <= 0xFFFF for word in words):
        raise ValueError(f"register words must be 0..65535, got {list(words)}")
    wire = list(words)
    if order in (WordOrder.CDAB, WordOrder.DCBA) and len(wire) > 1:
        wire.reverse()
    if order in (WordOrder.BADC, WordOrder.DCBA):
        return b"".join(word.to_bytes(2, "little") for word in wire)
    return b"".join(word.to_bytes(2, "big") for word in wire)


def decode_words(words: Sequence[int], data_type: DataType, order: WordOrder) -> int | float:
    """The raw number held by ``words`` (no scaling). Raises DecodeError on a wrong count
    or on BCD digits above 9; strings and bits have their own functions."""
    if len(words) != data_type.word_count:
        raise DecodeError("bad_response", f"{data_type.value} needs {data_type.word_count} "
                                          f"registers, got {len(words)}")
    raw = words_to_bytes(words, order)
    if data_type in (DataType.BCD16, DataType.BCD32):
        return decode_bcd(raw)
    (value,) = struct.unpack(_STRUCT_CODES[data_type], raw)
    if data_type is DataType.FLOAT32:
        return shortest_float32(value)
    return value


def decode_bcd(raw: bytes) -> int:
    """Packed BCD, two decimal digits per byte: 0x12 0x34 -> 1234."""
    digits = raw.hex()
    if not digits.isdigit():
        raise DecodeError("bad_bcd", f"0x{digits} is not binary-coded decimal "
                                     "(a digit above 9)")
    return int(digits)


def decode_bit(word: int, bit: int) -> bool:
    """Bit ``bit`` (0 = least significant) of a register."""
    return bool((word >> bit) & 1)


def decode_string(words: Sequence[int], layout: StringLayout) -> str:
    """The text in ``words``: stops at the first NUL, trailing spaces removed, bytes that
    are not ASCII kept as U+FFFD so a garbled register shows instead of failing the read."""
    if layout is StringLayout.SINGLE:
        raw = bytes(word & 0xFF for word in words)
    else:
        byteorder = "big" if layout is StringLayout.AB else "little"
        raw = b"".join(word.to_bytes(2, byteorder) for word in words)
    raw = raw.split(b"\0", 1)[0]
    return raw.decode("ascii", errors="replace").rstrip(" ")


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

