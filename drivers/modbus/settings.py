"""What a ``driver: modbus`` device carries: its register map and acquisition settings.

``ModbusSettings`` is the ``settings`` of a Modbus ``Device`` (config/schema.py holds
what every kind shares). The types here are what reader.py produces from the station
file and profiles and what the driver, the decoder (drivers/modbus/protocol/decode.py) and the
tools read; they are plain frozen values with no I/O, so any module may import them.
Defaults are the ones documented in docs/configuration.md; change both together.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from edge_agent.config.declare import setting
from edge_agent.i18n import _
from edge_agent.model import Quality
from edge_agent.values import ValidRange

MAX_STRING_REGISTERS = 125  # a string channel's length: what one read can fetch


class RegisterKind(StrEnum):
    """Modbus data table, named by what it holds; ``function_code`` reads it."""

    COIL = "coil"
    DISCRETE = "discrete"
    HOLDING = "holding"
    INPUT = "input"

    @property
    def function_code(self) -> int:
        return _FUNCTION_CODES[self]  # a table built once: this runs for every read

    @property
    def is_bit(self) -> bool:
        """Coils and discrete inputs hold single bits, read up to 2000 at a time."""
        return self in _BIT_KINDS


_FUNCTION_CODES = {RegisterKind.COIL: 1, RegisterKind.DISCRETE: 2, RegisterKind.HOLDING: 3,
                   RegisterKind.INPUT: 4}
_BIT_KINDS = frozenset({RegisterKind.COIL, RegisterKind.DISCRETE})


class DataType(StrEnum):
    """How a channel's register words become a value."""

    BOOL = "bool"  # a coil, a discrete input, or one bit of a register (``bit``)
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    BCD16 = "bcd16"  # 4 decimal digits in one register (0x1234 -> 1234)
    BCD32 = "bcd32"  # 8 decimal digits in two registers
    STRING = "string"  # ``length`` registers of text

    @property
    def word_count(self) -> int:
        """Registers (16-bit words) one value occupies; strings say their own length."""
        return _WORD_COUNTS[self.value]

    @property
    def integer_range(self) -> tuple[int, int] | None:
        """The raw values an integer type can hold (None: not an integer type)."""
        return _INTEGER_RANGES.get(self.value)


# What manuals and PLC programs call a type (IEC 61131-3, C, vendors' tables), and the
# type(s) each may be here. Refused with this hint, not accepted: "int" is 16 bits in a
# PLC manual and 32 in C, "float" is 64 bits in some software, so a silent guess could
# publish plausible but wrong values; the hint costs one edit at `check`.
MANUAL_TYPE_WORDS: dict[str, tuple[str, ...]] = {
    "float": ("float32",), "real": ("float32",), "single": ("float32",),
    "double": ("float64",), "lreal": ("float64",),
    "int": ("int16", "int32"), "short": ("int16",), "word": ("int16", "uint16"),
    "uint": ("uint16", "uint32"), "ushort": ("uint16",),
    "dint": ("int32",), "long": ("int32",), "udint": ("uint32",),
    "dword": ("uint32",), "lint": ("int64",), "ulint": ("uint64",), "lword": ("uint64",),
    "bit": ("bool",), "boolean": ("bool",), "bcd": ("bcd16", "bcd32"),
    "ascii": ("string",), "str": ("string",), "text": ("string",), "char": ("string",),
}


def article(word: str) -> str:
    """ "an int16", "a uint16": messages about types read as sentences."""
    if word[0] in "aeio":
        return _("an {type}").format(type=word)
    return _("a {type}").format(type=word)


_INTEGER_RANGES = {"int16": (-2**15, 2**15 - 1), "uint16": (0, 2**16 - 1),
                   "int32": (-2**31, 2**31 - 1), "uint32": (0, 2**32 - 1),
                   "int64": (-2**63, 2**63 - 1), "uint64": (0, 2**64 - 1),
                   "bcd16": (0, 9999), "bcd32": (0, 99_999_999), "bool": (0, 1)}
_WORD_COUNTS = {"bool": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "int64": 4,
                "uint64": 4, "float32": 2, "float64": 4, "bcd16": 1, "bcd32": 2, "string": 1}


class WordOrder(StrEnum):
    """Byte order of a multi-register value, letters naming bytes from most significant (A).

    ABCD: high word first, big-endian bytes (Modbus "big endian", most devices).
    CDAB: low word first ("word swapped", many meters and GCs).
    BADC: high word first, bytes swapped in each word.
    DCBA: fully little-endian.
    """

    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"


class StringLayout(StrEnum):
    """How a string sits in registers.

    ab: two characters per register, first character in the high byte (most devices).
    ba: two characters per register, first character in the low byte.
    single: one character per register, in the low byte.
    """

    AB = "ab"
    BA = "ba"
    SINGLE = "single"


@dataclass(frozen=True)
class QualityRule:
    """Quality that a status or alarm condition imposes on channels (an item of
    ``quality_bits`` / ``quality_values``, declared as written there).

    ``channels`` empty means every channel of the device except the status channel.
    """

    quality: Quality = setting("choice", choices={q.value: q for q in Quality})
    reason: str = setting("text", hint="a reason word such as calibrating, maintenance, "
                                       "fault, warmup")
    channels: tuple[str, ...] = setting("custom", (), hint="a list of channel names")


@dataclass(frozen=True)
class Channel:
    """One value read from a device. ``address`` is 0-based, as sent on the wire.

    ``bit`` picks one bit (0 = least significant) of a register for a ``bool``;
    ``length`` is the register count of a ``string``. ``sentinels`` are raw values (before
    scale and offset) that the instrument sends for a broken loop; ``quality_bits`` and
    ``quality_values`` make this channel a status word that flags other channels.
    """

    # Each setting of a ``channels:`` entry is declared here (config_channels.py reads
    # them; a profile's channel gives the defaults of the station's channel of that name).
    # Kind "custom": read by its own reader (edge_agent/config/value_fields.py,
    # config_quality.py), the schema knows the key only.
    name: str = setting("custom", hint="the channel's name")
    address: int = setting("integer", range=(0, 65535))
    register: RegisterKind = setting("choice", RegisterKind.HOLDING,
                                     choices={item.value: item for item in RegisterKind})
    # bool on coils and discrete inputs (config_channels.py)
    data_type: DataType = setting("choice", DataType.UINT16, key="type",
                                  choices={item.value: item for item in DataType},
                                  other_words=MANUAL_TYPE_WORDS)
    # the device's word_order when the channel has none
    word_order: WordOrder = setting("choice", WordOrder.ABCD,
                                    choices={item.value: item for item in WordOrder})
    scale: float = setting("number", 1.0)
    offset: float = setting("number", 0.0)
    unit: str = setting("custom", "", hint="the unit, e.g. ppm")
    bit: int | None = setting("integer", None, range=(0, 15),
                              hint="the bit number 0..15 (0 = least significant)")
    length: int = setting("integer", 1, range=(1, MAX_STRING_REGISTERS),
                          hint="the number of registers the text occupies, 1..125")
    string_layout: StringLayout = setting("choice", StringLayout.AB,
                                          choices={item.value: item for item in StringLayout})
    valid_range: ValidRange | None = setting("custom", None,
                                             hint="{min, max, quality} in engineering units")
    sentinels: tuple[float, ...] = setting("custom", (),
                                           hint="raw values that mean 'no reading'")
    quality_bits: tuple[tuple[int, QualityRule], ...] = setting(
        "custom", (), hint="bit number: quality (this channel is a status word)")
    quality_values: tuple[tuple[int, QualityRule], ...] = setting(
        "custom", (), hint="value: quality (this channel is a status word)")
    enron: bool = False  # from the device's enron: and the address, not written here

    @property
    def span(self) -> int:
        """Addresses the channel occupies on the wire: one per bit, per Enron 32-bit value,
        or per 16-bit register of the value."""
        if self.register.is_bit or self.enron:
            return 1
        if self.data_type is DataType.STRING:
            return self.length
        return self.data_type.word_count

    @property
    def words(self) -> int:
        """16-bit words the value is made of (an Enron address carries a 32-bit value)."""
        return 2 if self.enron else self.span


@dataclass(frozen=True)
class AddressRange:
    """Addresses ``first``..``last`` (0-based, inclusive) of one table: an item of
    ``read.forbidden``, declared as written there (``register`` holding and ``last`` =
    ``first`` when left out: config_acquisition.py, the fields keep their order)."""

    register: RegisterKind = setting("choice", RegisterKind.HOLDING, kw_only=True,
                                     choices={r.value: r for r in RegisterKind})
    first: int = setting("integer", range=(0, 65535))
    last: int = setting("integer", range=(0, 65535))


@dataclass(frozen=True)
class ReadLimits:
    """How requests to one device may be merged (see drivers/modbus/plan.py).

    ``max_gap`` unlisted registers (or bits) between two channels may be read and thrown
    away to save a request; ``forbidden`` addresses are never read, gap or not.
    """

    max_registers: int = setting("integer", 125, range=(1, 125))
    max_bits: int = setting("integer", 2000, range=(1, 2000))
    max_gap: int = setting("integer", 0, range=(0, 124))
    forbidden: tuple[AddressRange, ...] = setting(
        "custom", (), hint="a list of '{register: holding, first: 90, last: 99}' items")

    def per_request(self, register: RegisterKind, enron: bool) -> int:
        """The most addresses one request may cover: the Modbus limits (125 registers,
        2000 bits, 60 Enron values so the byte count fits a byte) or smaller ones."""
        if register.is_bit:
            return min(self.max_bits, 2000)
        return min(self.max_registers, 60 if enron else 125)


class TriggerKind(StrEnum):
    """What tells that the instrument has a new result (GC cycle, FTIR measurement)."""

    FLAG = "flag"  # a new-result flag goes non-zero
    COUNTER = "counter"  # a cycle counter changes
    TIMESTAMP = "timestamp"  # the analysis time changes


class TimeFormat(StrEnum):
    """How the instrument's own timestamp is held in registers."""

    UNIX = "unix"  # seconds since 1970 in one channel
    FIELDS = "fields"  # year, month, day, hour, minute, second channels


@dataclass(frozen=True)
class InstrumentClock:
    """Where the instrument's timestamp is, and its zone (instruments rarely run UTC)."""

    format: TimeFormat = setting("choice", choices={f.value: f for f in TimeFormat})
    channels: tuple[str, ...] = setting("custom", hint="a list of channel names")
    # written as "+08:00" (config_acquisition.py turns it into minutes)
    utc_offset_min: int = setting("custom", 0, key="utc_offset",
                                  hint='an offset from UTC such as "+08:00"')


@dataclass(frozen=True)
class Trigger:
    """Publish a sample only when the instrument has a new result, exactly once.

    ``clear_flag`` writes 0 to the flag after the sample is committed; only for
    instruments that expect it, because two masters would steal each other's results.
    """

    kind: TriggerKind = setting("choice", choices={k.value: k for k in TriggerKind})
    channel: str = setting("text", hint="the name of the flag or counter channel")
    clear_flag: bool = setting("flag", False)


@dataclass(frozen=True)
class ModbusSettings:
    """What a ``driver: modbus`` device reads: its register map and the settings that
    shape acquisition (read limits, a new-result trigger, the instrument's clock, a
    stream channel). Read by drivers/modbus/reader.py.

    ``word_order`` and ``enron`` are written on the device and give each channel's
    defaults (``Channel.word_order``, ``Channel.enron``); they are kept here as written.
    """

    channels: tuple[Channel, ...] = setting("custom", hint="a list of channels")
    word_order: WordOrder = setting("choice", WordOrder.ABCD,
                                    choices={item.value: item for item in WordOrder})
    enron: bool = setting("flag", False)
    limits: ReadLimits = setting("section", key="read", default_factory=ReadLimits)
    trigger: Trigger | None = setting("section", None)
    clock: InstrumentClock | None = setting("section", None)
    stream_channel: str | None = setting("text", None, hint="the name of the stream channel")
