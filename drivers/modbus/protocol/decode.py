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
from dataclasses import dataclass

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
    """Where one number lies in a read's answer and how its bytes are ordered, worked
    out once per planned read (``number_slot``), not per channel per poll.

    Every word order is one struct byte order applied to one of two byte strings of
    the answer: the words as sent (straight) or with the two bytes of each word swapped.
    ABCD is big-endian on the straight bytes, DCBA little-endian on them; BADC is
    big-endian on the swapped bytes, CDAB little-endian on them (reversing the bytes of
    the swapped words reverses the words).
    """

    byte_offset: int
    swapped: bool
    little: bool
    code: str  # struct format character: h H i I q Q f d

    @property
    def end(self) -> int:
        """First byte after the number."""
        return self.byte_offset + struct.calcsize(self.code)


def number_slot(data_type: DataType, order: WordOrder, word_offset: int) -> NumberSlot | None:
    """The slot of a ``data_type`` value ``word_offset`` words into an answer; None for
    types that are not a plain struct number (BCD, strings, bits), which are decoded
    from their words by ``decode_words`` and friends."""
    code = _STRUCT_CODES.get(data_type)
    if code is None:
        return None
    return NumberSlot(2 * word_offset, swapped=order in (WordOrder.CDAB, WordOrder.BADC),
                      little=order in (WordOrder.CDAB, WordOrder.DCBA), code=code[1:])


class BlockLayout:
    """Unpacks the numbers of many slots of one answer in a few struct calls.

    Slots that share a byte string and a byte order and do not overlap become one
    ``struct.Struct`` with pad bytes between them (``>4xf2xi``): a read of 25 floats in one
    word order is one ``unpack_from``. A slot overlapping another of its kind (a register
    read on its own and as half of a float) starts a further struct.
    """

    def __init__(self, slots: Sequence[NumberSlot]) -> None:
        chains: list[tuple[NumberSlot, list[int]]] = []  # (last slot, slot indices)
        for index in sorted(range(len(slots)), key=lambda i: slots[i].byte_offset):
            slot = slots[index]
            for position, (last, indices) in enumerate(chains):
                if (last.swapped, last.little) == (slot.swapped, slot.little) \
                        and last.end <= slot.byte_offset:
                    indices.append(index)
                    chains[position] = (slot, indices)
                    break
            else:
                chains.append((slot, [index]))
        #: slot indices in the order ``unpack`` returns their numbers
        self.order: tuple[int, ...] = tuple(i for _, indices in chains for i in indices)
        self.needs_swapped = any(slot.swapped for slot in slots)
        self._unpackers = [(slots[indices[0]].swapped,
                            _chain_struct([slots[i] for i in indices]).unpack_from)
                           for _, indices in chains]

    @property
    def calls(self) -> int:
        """Struct calls one ``unpack`` makes."""
        return len(self._unpackers)

    def unpack(self, straight: bytes, swapped: bytes) -> list[int | float]:
        """The raw numbers (float32 still widened, no scaling) in ``order``. Raises
        ``struct.error`` when the answer is shorter than the slots."""
        numbers: list[int | float] = []
        for use_swapped, unpack_from in self._unpackers:
            numbers += unpack_from(swapped if use_swapped else straight)
        return numbers


def _chain_struct(slots: Sequence[NumberSlot]) -> struct.Struct:
    """One struct for non-overlapping slots of one byte string and order, by offset."""
    parts = ["<" if slots[0].little else ">"]
    position = 0
    for slot in slots:
        if slot.byte_offset > position:
            parts.append(f"{slot.byte_offset - position}x")
        parts.append(slot.code)
        position = slot.end
    return struct.Struct("".join(parts))


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
_PACK32 = _FLOAT32.pack
_FLOAT32_MIN_NORMAL = 2.0 ** -126  # below: subnormal, fewer significant bits than digits
_SIX, _LONGER = "%.6g", ("%.7g", "%.8g", "%.9g")  # constant: no spec built per call
_ALL_DIGITS = tuple(f"%.{digits}g" for digits in range(1, 10))


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
    packed = _PACK32(value)
    if abs(value) >= _FLOAT32_MIN_NORMAL:
        candidate = float(_SIX % value)
        try:
            if _PACK32(candidate) == packed:
                return candidate
        except OverflowError:  # rounded past float32's largest value (3.4e38)
            pass
        formats = _LONGER
    else:
        formats = _ALL_DIGITS
    for spec in formats:
        candidate = float(spec % value)
        try:
            if _PACK32(candidate) == packed:
                return candidate
        except OverflowError:
            continue
    return value
