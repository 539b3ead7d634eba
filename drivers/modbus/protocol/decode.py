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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class NumberSlot:
    """Where one number lies in a read's answer and how to unpack it, worked out once
    per planned read (``number_slot``) so that a poll costs one ``unpack_from`` per
    channel instead of re-deriving the layout from type and word order every time.

    Every word order is one struct byte order applied to one of two byte strings of
    the answer (``WordBlock``): the words as sent (``straight``) or with the two bytes
    of each word swapped (``swapped``). ABCD is big-endian on the straight bytes, DCBA
    little-endian on them; BADC is big-endian on the swapped bytes, CDAB little-endian
    on them (reversing the bytes of the swapped words reverses the words).
    """

    byte_offset: int
    swapped: bool
    unpack_from: Callable[[bytes, int], tuple[Any, ...]]
    float32: bool


def number_slot(data_type: DataType, order: WordOrder, word_offset: int) -> NumberSlot | None:
    """The slot of a ``data_type`` value ``word_offset`` words into an answer; None for
    types that are not a plain struct number (BCD, strings, bits), which are decoded
    from their words by ``decode_words`` and friends."""
    code = _STRUCT_CODES.get(data_type)
    if code is None:
        return None
    little = order in (WordOrder.CDAB, WordOrder.DCBA)
    swapped = order in (WordOrder.CDAB, WordOrder.BADC)
    unpacker = struct.Struct(("<" if little else ">") + code[1:])
    return NumberSlot(2 * word_offset, swapped, unpacker.unpack_from,
                      data_type is DataType.FLOAT32)


class WordBlock:
    """The bytes of a read's answer, packed once for all its channels (``NumberSlot``).

    Raises ``struct.error`` when a word is not 0..65535 or the answer does not have
    ``count`` words; callers then decode channel by channel, which reports it as before.
    """

    __slots__ = ("straight", "swapped")

    def __init__(self, words: Sequence[int], big: struct.Struct,
                 little: struct.Struct | None) -> None:
        """``big`` and ``little`` pack ``count`` words (``>{count}H``, ``<{count}H``);
        ``little`` is None when no channel of the read needs the swapped bytes."""
        self.straight: bytes = big.pack(*words)
        self.swapped: bytes = little.pack(*words) if little is not None else b""

    def number(self, slot: NumberSlot) -> int | float:
        """The raw number in ``slot`` (no scaling), as ``decode_words`` would give it."""
        (value,) = slot.unpack_from(self.swapped if slot.swapped else self.straight,
                                    slot.byte_offset)
        return shortest_float32(value) if slot.float32 else value


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


_FLOAT32 = struct.Struct(">f")
_FLOAT32_MIN_NORMAL = 2.0 ** -126  # below: subnormal, fewer significant bits than digits


def shortest_float32(value: float) -> float:
    """The shortest decimal that is the same float32: 0.635, not 0.6349999904632568.

    The instrument sent a float32; printing its double widening shows digits the
    instrument never had. No information is lost: the result packs to the same bits.

    Tried first at 6 significant digits: a normal float32's spacing is finer than that
    of 6-digit decimals, so at most one 6-digit decimal is the float32, and when one
    is, it is the shortest decimal that is (0.635 and 0.635000 are one number). Only
    values needing 7 to 9 digits, and subnormals, try digit counts one by one.
    """
    if not math.isfinite(value) or value == 0.0:
        return value
    packed = _FLOAT32.pack(value)
    first = 1
    if abs(value) >= _FLOAT32_MIN_NORMAL:
        candidate = float(f"{value:.6g}")
        try:
            if _FLOAT32.pack(candidate) == packed:
                return candidate
        except OverflowError:  # rounded past float32's largest value (3.4e38)
            pass
        first = 7
    for digits in range(first, 10):
        candidate = float(f"{value:.{digits}g}")
        try:
            if _FLOAT32.pack(candidate) == packed:
                return candidate
        except OverflowError:
            continue
    return value
