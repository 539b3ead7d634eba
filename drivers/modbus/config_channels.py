"""A device's ``channels:``: what each setting means for each data type, checked precisely.

Which settings apply to which type (anything else is reported, never ignored):

==================  ===============================================================
coil / discrete     type bool (the default there); nothing about words or scaling
bool in a register  ``bit`` 0..15 required
string              ``length`` (registers) required; ``string_layout``
numbers             ``word_order``, ``scale``, ``offset``, ``valid_range``, ``sentinels``
integers, bool      ``quality_bits`` / ``quality_values`` (a status word)
==================  ===============================================================

A channel may give the manual's register number instead of the wire address:
``number: 40001`` is holding register 0, ``30001`` input register 0, ``10001`` discrete
input 0, ``1`` coil 0 (six digits too: ``400001``). With a profile, a channel whose name
is in the profile takes the profile's settings as defaults and overrides what it lists;
``enabled: false`` removes a profile channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, replace

from edge_agent_drivers.modbus.config_quality import read_quality_rules
from edge_agent_drivers.modbus.settings import (
    Channel,
    DataType,
    RegisterKind,
    WordOrder,
    article,
)

from edge_agent.config.declare import Setting, allowed_keys, read_declared, read_setting
from edge_agent.config.fields import REQUIRED, Section, as_section, join
from edge_agent.config.limits import MAX_CHANNELS_PER_LIST, count_problem
from edge_agent.config.value_fields import (
    read_channel_name,
    read_sentinels,
    read_unit,
    read_valid_range,
)
from edge_agent.config.yamlsource import SeqNode, kind

# Declared on Channel (settings.py); besides them, ``number`` (the manual's register
# number instead of address: 1..9999 coils up to 400001 + 65535 holding) and ``enabled``
# (false removes a profile's channel), declared here: neither is kept on the Channel.
NUMBER = Setting(("number",), "integer", 1, 465536,
                 hint="a register number such as 40001 or 300001")
ENABLED = Setting(("enabled",), "flag")
_DECLARED = allowed_keys(Channel)
CHANNEL_KEYS = (*_DECLARED[:2], NUMBER.key, *_DECLARED[2:], ENABLED.key)
_NUMERIC_ONLY = ("word_order", "scale", "offset", "valid_range", "sentinels")
# Daniel/Enron-style ranges: each address holds one 32-bit value (int32 / float32).
ENRON_RANGES = ((5001, 5999), (7001, 7999))
_ENRON_TYPES = (DataType.INT32, DataType.UINT32, DataType.FLOAT32)


def is_enron_address(address: int) -> bool:
    return any(first <= address <= last for first, last in ENRON_RANGES)


def modicon_number(number: int) -> tuple[RegisterKind, int] | None:
    """The table and 0-based address of a manual's register number, or None."""
    for base, register in ((400001, RegisterKind.HOLDING), (300001, RegisterKind.INPUT),
                           (100001, RegisterKind.DISCRETE), (40001, RegisterKind.HOLDING),
                           (30001, RegisterKind.INPUT), (10001, RegisterKind.DISCRETE)):
        span = 65536 if base > 99999 else 9999
        if base <= number < base + span:
            return register, number - base
    if 1 <= number <= 9999:
        return RegisterKind.COIL, number - 1
    return None


@dataclass
class ChannelNotes:
    """What reading the channels learned besides the channels: where each was written
    (for messages), which were switched off, which were invalid (already reported)."""

    placed: dict[str, tuple[Section, int | None]] = field(default_factory=dict)
    disabled: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)


def read_channels(sec: Section, default_order: WordOrder, enron: bool,
                  base: Mapping[str, Channel], notes: ChannelNotes) -> tuple[Channel, ...]:
    """The device's channels: ``base`` (from a profile) overridden and extended by the
    ``channels:`` list; required when there is no profile."""
    entry = sec.node.get("channels")
    if entry is None:
        if not base:
            sec.missing("channels", "a list of channels, each starting with '- name:'")
        return tuple(base.values())
    if not isinstance(entry.value, SeqNode) or not entry.value.items:
        message = f"expected a list of channels ('- name: ...' items), found {kind(entry.value)}"
        sec.report("channels", message)
        return tuple(base.values())
    if problem := count_problem(len(entry.value.items), MAX_CHANNELS_PER_LIST, "channels"):
        sec.report("channels", problem, at_key=True)
        return tuple(base.values())
    merged: dict[str, Channel | None] = dict(base)
    lines: dict[str, int | None] = {}
    for index, node in enumerate(entry.value.items):
        path = f"{join(sec.path, 'channels')}[{index}]"
        channel_sec = as_section(sec.ck, node, path, node.line, CHANNEL_KEYS)
        if channel_sec is None:
            continue
        name = read_channel_name(channel_sec)
        if name is not None and name in lines:
            channel_sec.report("name", f"channel '{name}' is already defined at line "
                                       f"{lines[name]}")
            continue
        if name is not None:
            lines[name] = channel_sec.value_line("name")
        if read_setting(channel_sec, ENABLED, True) is False:
            if name is not None:
                merged[name] = None
                notes.disabled.add(name)
            continue
        channel = _read_listed(channel_sec, name, default_order, enron, base)
        if name is not None:
            merged[name] = channel
            notes.disabled.discard(name)
            if channel is None:
                notes.failed.add(name)
            notes.placed[name] = (channel_sec, channel_sec.value_line(
                "address" if channel_sec.has("address") else "number"))
    return tuple(channel for channel in merged.values() if channel is not None)


def _read_listed(sec: Section, name: str | None, default_order: WordOrder, enron: bool,
                 base: Mapping[str, Channel]) -> Channel | None:
    known = base.get(name) if name is not None else None
    if base and known is None and name is not None and not (
            sec.has("address") or sec.has("number")):
        sec.report("name", f"'{name}' is not a channel of the profile (its channels: "
                           f"{', '.join(base)}); a new channel needs an address or number")
        return None
    return read_channel(sec, name or "?", default_order, enron, known)


def read_channel(sec: Section, name: str, default_order: WordOrder, enron: bool,
                 base: Channel | None) -> Channel | None:
    """One channel; ``base`` supplies every default when the profile defines it."""
    place = _read_place(sec, base)
    register = place[0] if place else None
    default_type = DataType.BOOL if register is not None and register.is_bit \
        else DataType.UINT16
    data_type = read_declared(sec, Channel, "data_type",
                              base.data_type if base else default_type)
    if place is None or register is None or data_type is None:
        return None
    address = place[1]
    if not _type_fits_register(sec, register, data_type):
        return None
    is_enron = enron and not register.is_bit and is_enron_address(address)
    if is_enron and data_type not in _ENRON_TYPES:
        sec.report("type", f"address {address} is in a Daniel/Enron 32-bit range (device "
                           f"enron: true): expected int32, uint32 or float32, found "
                           f"{data_type.value}")
        return None
    return _finish(sec, name, register, address, data_type, default_order, is_enron, base)


def _finish(sec: Section, name: str, register: RegisterKind, address: int,
            data_type: DataType, default_order: WordOrder, is_enron: bool,
            base: Channel | None) -> Channel | None:
    numeric = data_type not in (DataType.BOOL, DataType.STRING)
    _refuse_unused(sec, data_type, numeric)
    start = len(sec.ck.issues)
    fields = dict(
        word_order=read_declared(sec, Channel, "word_order",
                                 base.word_order if base else default_order),
        scale=_declared(sec, "scale", base),
        offset=_declared(sec, "offset", base),
        unit=read_unit(sec, base.unit if base else ""),
        bit=_read_bit(sec, data_type, base),
        length=_read_length(sec, data_type, address, register, base),
        string_layout=_declared(sec, "string_layout", base),
        valid_range=read_valid_range(sec, base.valid_range if base else None),
        sentinels=read_sentinels(sec, data_type, base.sentinels if base else ()),
        quality_bits=read_quality_rules(sec, "quality_bits", data_type,
                                        base.quality_bits if base else ()),
        quality_values=read_quality_rules(sec, "quality_values", data_type,
                                          base.quality_values if base else ()),
    )
    if fields["scale"] == 0:
        sec.report("scale", "scale 0 would turn every value into 0; use 1 for no scaling")
    if len(sec.ck.issues) > start or any(value is None for key, value in fields.items()
                                         if key not in ("bit", "valid_range")):
        return None
    channel = Channel(name, address, register, data_type, enron=is_enron,
                      **fields)  # type: ignore[arg-type]
    if address + channel.span > 65536:
        sec.report("address", f"{article(data_type.value)} needs {channel.span} registers: "
                              f"expected an address 0..{65536 - channel.span}, found {address}")
        return None
    return channel


def _declared(sec: Section, name: str, base: Channel | None) -> object:
    """Channel setting ``name`` as declared; the profile's channel (``base``) gives the
    default when there is one."""
    return read_declared(sec, Channel, name, getattr(base, name) if base else MISSING)


def _read_place(sec: Section, base: Channel | None) -> tuple[RegisterKind, int] | None:
    """Table and wire address, from ``address`` (+ ``register``) or a manual ``number``."""
    if sec.has("number"):
        if sec.has("address"):
            sec.report("number", "give either address (0-based, as sent on the wire) or "
                                 "number (the manual's 1-based register number), not both")
            return None
        number = read_setting(sec, NUMBER)
        if number is None:
            return None
        place = modicon_number(number)
        if place is None:
            sec.report("number", f"{number} is not a register number: expected 1..9999 "
                                 "(coils), 10001.. (discrete inputs), 30001.. (input "
                                 "registers) or 40001.. (holding registers), 5 or 6 digits")
            return None
        written = read_declared(sec, Channel, "register", place[0])
        if written is not None and written is not place[0]:
            sec.report("register", f"register number {number} is in the {place[0].value} "
                                   f"table, but register says {written.value}")
            return None
        return place
    register = _declared(sec, "register", base)
    address = _declared(sec, "address", base)
    if register is None or address is None:
        return None
    return register, address


def _type_fits_register(sec: Section, register: RegisterKind, data_type: DataType) -> bool:
    if register.is_bit and data_type is not DataType.BOOL:
        sec.report("type", f"{register.value}s hold single bits: expected bool, found "
                           f"{data_type.value}")
        return False
    return True


def _refuse_unused(sec: Section, data_type: DataType, numeric: bool) -> None:
    """Settings that mean nothing for this type are errors, not silently ignored."""
    unused = [] if numeric else [key for key in _NUMERIC_ONLY if sec.has(key)]
    if data_type is not DataType.BOOL and sec.has("bit"):
        unused.append("bit")
    if data_type is not DataType.STRING:
        unused += [key for key in ("length", "string_layout") if sec.has(key)]
    for key in unused:
        sec.report(key, f"'{key}' does not apply to {data_type.value} channels", at_key=True)


def _read_bit(sec: Section, data_type: DataType, base: Channel | None) -> int | None:
    if data_type is not DataType.BOOL:
        return None
    register = sec.node.get("register")
    on_bits = register is not None and str(getattr(register.value, "value", "")).lower() \
        in ("coil", "discrete")
    if on_bits or (base is not None and base.register.is_bit) or (
            sec.has("number") and not sec.has("bit")):
        return None
    default = base.bit if base is not None and base.bit is not None else REQUIRED
    return read_declared(sec, Channel, "bit", default)


def _read_length(sec: Section, data_type: DataType, address: int, register: RegisterKind,
                 base: Channel | None) -> int:
    if data_type is not DataType.STRING:
        return 1
    default = base.length if base is not None and base.data_type is DataType.STRING \
        else REQUIRED
    length = read_declared(sec, Channel, "length", default)
    return length or 1


def without_disabled_targets(channels: tuple[Channel, ...],
                             disabled: set[str]) -> tuple[Channel, ...]:
    """Status rules of a profile that name a channel the station switched off
    (``enabled: false``) simply no longer apply to it."""
    if not disabled:
        return channels

    def keep(rules: tuple) -> tuple:
        return tuple((key, replace(rule, channels=tuple(
            name for name in rule.channels if name not in disabled)))
            for key, rule in rules
            if not rule.channels or any(name not in disabled for name in rule.channels))

    return tuple(replace(ch, quality_bits=keep(ch.quality_bits),
                         quality_values=keep(ch.quality_values)) for ch in channels)
