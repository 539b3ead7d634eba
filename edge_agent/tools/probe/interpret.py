"""Every way a range of register words could be read, and which of them match a display.

The probe does not know the device's register map. It decodes every type in every word
order starting at every register, so the one that matches the number on the instrument's
display can be picked out by eye or by ``find``. Byte layouts come from
``edge_agent_drivers.modbus.protocol.decode.words_to_bytes``, so a word order the probe
suggests means exactly what it means in a station file. Everything here is pure: tested with tables.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from edge_agent_drivers.modbus.protocol.decode import shortest_float32, words_to_bytes
from edge_agent_drivers.modbus.settings import RegisterKind, WordOrder

ORDERS: tuple[WordOrder, ...] = tuple(WordOrder)


@dataclass(frozen=True)
class WideType:
    """A value spanning several registers, decoded in each of the four word orders."""

    name: str
    struct_code: str
    word_count: int


# Floats first: analyzers (GC, FTIR) mostly publish concentrations as float32.
WIDE_TYPES = (
    WideType("float32", ">f", 2),
    WideType("int32", ">i", 2),
    WideType("uint32", ">I", 2),
    WideType("float64", ">d", 4),
)
# Integer registers often hold the displayed value times 10, 100 or 1000 (0.1 ppm steps):
# find tries these divisors on integers, never on floats.
DIVISORS = (1, 10, 100, 1000)
_TABLE_DIGIT = {RegisterKind.COIL: 0, RegisterKind.DISCRETE: 1, RegisterKind.INPUT: 3,
                RegisterKind.HOLDING: 4}
_DIGIT_TABLE = {digit: kind for kind, digit in _TABLE_DIGIT.items()}


@dataclass(frozen=True)
class RegisterView:
    """One register and every value that starts at it.

    ``wide`` maps (type name, order) to the value; a type is absent when the range ends
    before its last register. float32 values are the exact widening of the float the
    device sent (format with 7 significant digits, or ``decode.shortest_float32``).
    """

    address: int
    word: int
    wide: Mapping[tuple[str, WordOrder], int | float] = field(default_factory=dict)

    @property
    def int16(self) -> int:
        return self.word - 0x10000 if self.word & 0x8000 else self.word

    @property
    def uint16(self) -> int:
        return self.word

    @property
    def text_high_first(self) -> str:
        return printable(self.word.to_bytes(2, "big"))

    @property
    def text_low_first(self) -> str:
        return printable(self.word.to_bytes(2, "little"))


def interpret(start: int, words: Sequence[int]) -> list[RegisterView]:
    """A view per register of ``words`` read from 0-based ``start``."""
    if any(not 0 <= word <= 0xFFFF for word in words):
        raise ValueError(f"register words must be 0..65535, got {list(words)}")
    return [RegisterView(start + index, word, _wide_values(words[index:]))
            for index, word in enumerate(words)]


def _wide_values(words: Sequence[int]) -> dict[tuple[str, WordOrder], int | float]:
    values: dict[tuple[str, WordOrder], int | float] = {}
    for wide in WIDE_TYPES:
        if len(words) < wide.word_count:
            continue
        for order in ORDERS:
            raw = words_to_bytes(list(words[:wide.word_count]), order)
            (values[wide.name, order],) = struct.unpack(wide.struct_code, raw)
    return values


def printable(raw: bytes) -> str:
    """Text as a display would show it; bytes outside printable ASCII become '.'."""
    return "".join(chr(byte) if 0x20 <= byte < 0x7F else "." for byte in raw)


def range_text(words: Sequence[int], *, high_first: bool) -> str:
    """The text a range holds, two characters per register (tags, serial numbers)."""
    byteorder = "big" if high_first else "little"
    return printable(b"".join(word.to_bytes(2, byteorder) for word in words))


# -- manual numbers (40001 = holding register 0) ----------------------------------------


def manual_number(kind: RegisterKind, address: int) -> str:
    """The 1-based number a manual prints for 0-based ``address``: 40001, 30001, 00001;
    six digits (465536) where five cannot hold it."""
    number = address + 1
    width = 4 if number <= 9999 else 5
    return f"{_TABLE_DIGIT[kind]}{number:0{width}d}"


def parse_manual_number(text: str) -> tuple[RegisterKind, int]:
    """'40001' or '400001' -> (holding, 0). Raises ValueError saying what is expected.

    The first digit names the table (0 coil, 1 discrete input, 3 input, 4 holding); the
    rest is 1-based. Only five or six digits are accepted: '1' alone says no table.
    """
    text = text.strip()
    expected = ("expected a manual register number with its table digit, five or six "
                "digits: 40001 or 400001 (holding), 30001 (input), 10001 (discrete), "
                "00001 (coil)")
    if not text.isdigit() or len(text) not in (5, 6) or int(text[0]) not in _DIGIT_TABLE:
        raise ValueError(f"'{text}': {expected}")
    number = int(text[1:])
    limit = 9999 if len(text) == 5 else 65536
    if not 1 <= number <= limit:
        raise ValueError(f"'{text}': the register number after the table digit must be "
                         f"1..{limit}")
    return _DIGIT_TABLE[int(text[0])], number - 1


# -- find: which reading is near the display value --------------------------------------


@dataclass(frozen=True)
class Match:
    """One reading of the registers that is within tolerance of the display value.

    ``value`` = ``raw`` / ``divisor``; in a station file that is ``scale: 1/divisor``.
    ``type_name`` may be 'int16|uint16' when both read the same (a positive number).
    """

    address: int
    type_name: str
    order: WordOrder | None
    divisor: int
    raw: int | float
    value: float
    error: float

    @property
    def config_type(self) -> str:
        """The type to write in the station file: the signed one when both fit, since
        concentrations near zero can drift below it."""
        return self.type_name.split("|")[0]


def find(views: Sequence[RegisterView], target: float, tolerance: float) -> list[Match]:
    """Every reading within ``tolerance`` of ``target``, best first (smallest error, then
    unscaled before scaled, then lowest address)."""
    slack = tolerance + 1e-9 * max(1.0, abs(target))  # 0.1 + 0.2 style float noise
    matches = [
        Match(view.address, name, order, divisor, raw, value, abs(value - target))
        for view in views
        for name, order, raw in _candidates(view)
        for divisor in (DIVISORS if isinstance(raw, int) else (1,))
        if math.isfinite(value := raw / divisor) and abs(value - target) <= slack
    ]
    return sorted(matches, key=lambda m: (m.error, m.divisor, m.address,
                                          _WORDS.get(m.config_type, 1)))


_WORDS = {wide.name: wide.word_count for wide in WIDE_TYPES}


def _candidates(view: RegisterView) -> Iterator[tuple[str, WordOrder | None, int | float]]:
    """Each distinct reading at one register; a signed and an unsigned type that read the
    same are one candidate, so a positive number is not listed twice."""
    yield from _signed_pair("int16", "uint16", None, view.int16, view.uint16)
    for order in ORDERS:
        if ("float32", order) in view.wide:
            # compare what the device meant (12.45), not its float32 widening (12.4499998)
            yield "float32", order, shortest_float32(view.wide["float32", order])
            yield from _signed_pair("int32", "uint32", order, view.wide["int32", order],
                                    view.wide["uint32", order])
        if ("float64", order) in view.wide:
            yield "float64", order, view.wide["float64", order]


def _signed_pair(signed: str, unsigned: str, order: WordOrder | None, signed_value: int | float,
                 unsigned_value: int | float,
                 ) -> Iterator[tuple[str, WordOrder | None, int | float]]:
    if signed_value == unsigned_value:
        yield f"{signed}|{unsigned}", order, signed_value
        return
    yield signed, order, signed_value
    yield unsigned, order, unsigned_value
