"""Device settings that shape acquisition: request planning limits, Daniel/Enron ranges,
instrument-triggered publishing (GC cycles, FTIR measurements), the instrument's clock and
the GC stream channel. Each may come from a profile or the station file (see profiles.py).

::

    read: {max_registers: 60, max_gap: 4, forbidden: [{register: holding, first: 90, last: 99}]}
    enron: true
    trigger: {kind: counter, channel: cycle}         # or flag (+ clear_flag), timestamp
    clock: {format: fields, channels: [year, month, day, hour, minute, second],
            utc_offset: "+08:00"}
    stream_channel: stream
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from edge_agent_drivers.modbus.config_channels import ChannelNotes
from edge_agent_drivers.modbus.settings import (
    AddressRange,
    Channel,
    DataType,
    InstrumentClock,
    ReadLimits,
    RegisterKind,
    TimeFormat,
    Trigger,
    TriggerKind,
)

from edge_agent.config.declare import allowed_keys, declared, filled, read_declared
from edge_agent.config.fields import Section, as_section
from edge_agent.config.layers import Layers
from edge_agent.config.yamlsource import ScalarNode, SeqNode, kind

# read:, its forbidden: items, trigger: and clock: are declared on ReadLimits,
# AddressRange, Trigger and InstrumentClock (settings.py)
READ_KEYS = allowed_keys(ReadLimits)
ZONE_KEYS = allowed_keys(AddressRange)
TRIGGER_KEYS = allowed_keys(Trigger)
CLOCK_KEYS = allowed_keys(InstrumentClock)
_OFFSET = re.compile(r"^([+-])([01][0-9]|2[0-3]):?([0-5][0-9])$")


def read_limits(layers: Layers) -> ReadLimits:
    """``read:`` limits for request planning (Modbus limits when absent)."""
    rd = layers.block("read", READ_KEYS)
    if rd is None:
        return ReadLimits()
    numbers = {name: read_declared(rd.pick(name), ReadLimits, name)
               for name in ("max_registers", "max_bits", "max_gap")}
    return ReadLimits(**filled(ReadLimits, numbers), forbidden=_read_zones(rd.pick("forbidden")))


def _read_zones(rd: Section) -> tuple[AddressRange, ...]:
    entry = rd.node.get("forbidden")
    if entry is None:
        return ()
    if not isinstance(entry.value, SeqNode):
        rd.report("forbidden", f"expected {declared(ReadLimits)['forbidden'].hint}, "
                               f"found {kind(entry.value)}")
        return ()
    zones = []
    for index, node in enumerate(entry.value.items):
        zone = as_section(rd.ck, node, f"{rd.path_of('forbidden')}[{index}]", node.line,
                          ZONE_KEYS)
        if zone is None:
            continue
        register = read_declared(zone, AddressRange, "register")
        first = read_declared(zone, AddressRange, "first")
        last = read_declared(zone, AddressRange, "last", first)
        if first is not None and last is not None and last < first:
            zone.report("last", f"last ({last}) is before first ({first})")
        elif register is not None and first is not None and last is not None:
            zones.append(AddressRange(first, last, register=register))
    return tuple(zones)


def read_trigger(layers: Layers) -> Trigger | None:
    tr = layers.block("trigger", TRIGGER_KEYS)
    if tr is None:
        return None
    trigger_kind = read_declared(tr.pick("kind"), Trigger, "kind")
    if trigger_kind is TriggerKind.TIMESTAMP:
        if tr.pick("channel").has("channel"):
            tr.report("channel", "a timestamp trigger uses the device's clock: remove "
                                 "channel and set clock:")
        channel = ""
    else:
        channel = read_declared(tr.pick("channel"), Trigger, "channel")
    clear = read_declared(tr.pick("clear_flag"), Trigger, "clear_flag")
    if clear and trigger_kind is not TriggerKind.FLAG:
        tr.pick("clear_flag").report("clear_flag", "only a flag trigger can be cleared")
    if trigger_kind is None or channel is None or clear is None:
        return None
    return Trigger(trigger_kind, channel, clear)


def read_clock(layers: Layers) -> InstrumentClock | None:
    ck = layers.block("clock", CLOCK_KEYS)
    if ck is None:
        return None
    time_format = read_declared(ck.pick("format"), InstrumentClock, "format")
    names = _names(ck.pick("channels"), "channels")
    offset = _utc_offset(ck.pick("utc_offset"))
    if time_format is None or names is None or offset is None:
        return None
    wanted = 1 if time_format is TimeFormat.UNIX else 6
    if len(names) != wanted:
        shown = "one channel (seconds since 1970)" if wanted == 1 else \
            "six channels: year, month, day, hour, minute, second"
        ck.pick("channels").report(
            "channels", f"format {time_format.value} needs {shown}, found {len(names)}")
        return None
    return InstrumentClock(time_format, names, offset)


def _utc_offset(ck: Section) -> int | None:
    """``utc_offset: "+08:00"`` (quote it: YAML reads 08:00 as a number) in minutes."""
    text = ck.text("utc_offset", "+00:00", what='an offset from UTC such as "+08:00"')
    if text is None:
        return None
    match = _OFFSET.match(text.strip())
    if match is None:
        ck.report("utc_offset", f'expected an offset from UTC such as "+08:00" or "-05:00", '
                                f"found '{text}'")
        return None
    sign = -1 if match.group(1) == "-" else 1
    return sign * (int(match.group(2)) * 60 + int(match.group(3)))


def _names(sec: Section, key: str) -> tuple[str, ...] | None:
    entry = sec.node.get(key)
    if entry is None:
        sec.missing(key, "expected a list of channel names")
        return None
    items = entry.value.items if isinstance(entry.value, SeqNode) else (entry.value,)
    if not all(isinstance(item, ScalarNode) and isinstance(item.value, str) for item in items):
        sec.report(key, "expected a list of channel names")
        return None
    return tuple(str(item.value) for item in items)  # type: ignore[union-attr]


def check_references(pick: Callable[[str], Section], channels: Iterable[Channel],
                     trigger: Trigger | None, clock: InstrumentClock | None,
                     stream_channel: str | None, notes: ChannelNotes) -> None:
    """Every channel a setting names must exist on the device. ``pick(key)`` is the
    section (station file or profile) the setting came from, where a problem is shown.
    Channels that failed validation are not mentioned again (their error says it)."""
    by_name = {channel.name: channel for channel in channels}
    known = ", ".join(by_name) or "none"
    wanted: list[tuple[str, str]] = []
    if trigger is not None and trigger.channel:
        wanted.append(("trigger", trigger.channel))
    if clock is not None:
        wanted += [("clock", name) for name in clock.channels]
    if stream_channel:
        wanted.append(("stream_channel", stream_channel))
    for channel in by_name.values():
        for _, rule in channel.quality_bits + channel.quality_values:
            wanted += [("channels", name) for name in rule.channels]
    for key, name in wanted:
        if name in by_name or name in notes.failed:
            continue
        where = pick(key)
        if name in notes.disabled:
            where.report(key, f"channel '{name}' is switched off (enabled: false) but {key} "
                              "uses it", at_key=True)
        elif where is pick("id"):
            where.report(key, f"channel '{name}' is not defined on this device (known: "
                              f"{known})", at_key=True)
        else:  # in a profile shared by several devices: one message for all of them
            where.report(key, f"channel '{name}' is not defined in this profile", at_key=True)
    if trigger is not None and trigger.clear_flag and trigger.channel in by_name:
        problem = _unclearable(by_name[trigger.channel])
        if problem:
            pick("trigger").report("trigger", f"clear_flag writes 0 to '{trigger.channel}', "
                                              f"but {problem}", at_key=True)


def check_limits(device: Section, channels: Iterable[Channel], limits: ReadLimits,
                 notes: ChannelNotes) -> None:
    """A channel must fit in one request and never sit on a forbidden address."""
    for channel in channels:
        where = notes.placed.get(channel.name)
        sec, key = (where[0], "address" if where[0].has("address") else "number") \
            if where else (device, "channels")
        longest = limits.per_request(channel.register, channel.enron)
        if channel.span > longest:
            sec.report(key, f"'{channel.name}' spans {channel.span} addresses but one read "
                            f"may cover at most {longest} (read.max_registers)", at_key=True)
        last = channel.address + channel.span - 1
        for zone in limits.forbidden:
            if zone.register is channel.register and zone.first <= last and \
                    channel.address <= zone.last:
                sec.report(key, f"'{channel.name}' ({channel.register.value} "
                                f"{channel.address}..{last}) lies in the forbidden range "
                                f"{zone.first}..{zone.last} (read.forbidden)", at_key=True)


def _unclearable(flag: Channel) -> str | None:
    """Why writing 0 to ``flag`` would be wrong: read-only, or it would also wipe other
    bits of its register (a status word), or a 16-bit write to a 32-bit address."""
    if flag.register not in (RegisterKind.HOLDING, RegisterKind.COIL):
        return (f"it is in the {flag.register.value} table (read-only): it must be a holding "
                "register or a coil")
    if flag.register is RegisterKind.COIL:
        return None
    if flag.enron:
        return "it is a Daniel/Enron 32-bit address; a 16-bit write would not fit"
    if flag.bit is not None or flag.data_type not in (DataType.UINT16, DataType.INT16):
        return ("only a coil or a whole 16-bit register (uint16/int16) can be cleared: writing "
                "0 to a register that holds other bits would wipe them too")
    return None
