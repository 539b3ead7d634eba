"""The ``devices:`` section: instruments, their link and unit id, and their register maps.

A device's settings come from its profile (profiles.py), overridden by what the station
file writes for it. Besides each field, this checks what only the whole list shows:
duplicate device ids, two devices answering to one unit id on one wire, channels whose
registers overlap another channel (almost always an address counted wrong), and settings
naming channels that do not exist.
"""

from __future__ import annotations

from collections.abc import Callable

from edge_agent.config.fields import Checker, Section, as_section
from edge_agent.config.layers import Layers
from edge_agent.config.limits import (
    INTERVAL_S,
    MAX_CHANNELS_PER_STATION,
    MAX_DEVICES,
    count_problem,
)
from edge_agent.config.names import id_problem
from edge_agent.config.profiles import Profile, ProfileLibrary
from edge_agent.config.schema import Channel, DataType, Device, WordOrder
from edge_agent.config.validate_acquisition import (
    check_limits,
    check_references,
    read_clock,
    read_limits,
    read_trigger,
)
from edge_agent.config.validate_channels import (
    WORD_ORDERS,
    ChannelNotes,
    read_channels,
    without_disabled_targets,
)
from edge_agent.config.validate_links import LinkTable
from edge_agent.config.validate_polling import DEVICE_POLLING_KEYS, with_device_polling
from edge_agent.config.validate_text import (
    TEXT_DRIVER,
    SharedTextLinks,
    check_modbus_device,
    check_text_link_sharing,
    read_text_device,
    read_text_unit_id,
    uses_text_driver,
)
from edge_agent.config.yamlsource import ScalarNode, SeqNode, kind

DEVICE_KEYS = ("id", "link", "unit_id", "interval_s", "driver", "profile", "word_order",
               "enron", "read", "trigger", "clock", "stream_channel", "channels",
               "text", *DEVICE_POLLING_KEYS)
DRIVERS = {"modbus": "modbus", TEXT_DRIVER: TEXT_DRIVER}


def read_devices(ck: Checker, top: Section, links: LinkTable,
                 profiles: ProfileLibrary) -> tuple[Device, ...]:
    """Every device under ``devices:`` (required, at least one), cross-checked."""
    entry = top.node.get("devices")
    if entry is None:
        top.missing("devices", "a list of devices, each starting with '- id:'")
        return ()
    if not isinstance(entry.value, SeqNode) or not entry.value.items:
        found = kind(entry.value)
        top.report("devices", f"expected a list of devices ('- id: ...' items), found {found}")
        return ()
    if problem := count_problem(len(entry.value.items), MAX_DEVICES, "devices"):
        top.report("devices", problem, at_key=True)
        return ()
    devices: list[Device] = []
    ids: dict[str, int | None] = {}
    units: dict[tuple[str, int], tuple[str, int | None]] = {}
    text_links = SharedTextLinks()
    for index, node in enumerate(entry.value.items):
        path = f"devices[{index}]"
        sec = as_section(ck, node, path, node.line, DEVICE_KEYS)
        if sec is None:
            continue
        device = with_device_polling(sec, _read_device(sec, links, profiles))
        device = check_text_link_sharing(sec, device, text_links)
        _check_unique_id(sec, device, ids)
        _check_unit_id_free(sec, device, units)
        if device is not None:
            devices.append(device)
    channels = sum(len(device.channels) for device in devices)
    if problem := count_problem(channels, MAX_CHANNELS_PER_STATION, "channels in all"):
        top.report("devices", problem, at_key=True)
    return tuple(devices)


def _read_device(sec: Section, links: LinkTable, profiles: ProfileLibrary) -> Device | None:
    device_id = sec.text("id", what="the device's id, e.g. gc-1")
    if device_id is not None and (problem := id_problem(device_id, "device id")):
        sec.report("id", problem)
    link = _read_link_name(sec, links)
    profile = _read_profile(sec, profiles)
    if profile is _NO_PROFILE:
        return None  # what is required depends on the profile: its error says enough
    assert not isinstance(profile, _Missing)
    layers = Layers(sec, profile.section() if profile else None)
    text_device = uses_text_driver(layers.pick("driver"))  # own ASCII protocol: validate_text
    unit_id = read_text_unit_id(sec) if text_device \
        else _read_unit_id(sec, links.kinds.get(link or ""))
    interval_s = layers.pick("interval_s").number("interval_s", lo=INTERVAL_S[0],
                                                  hi=INTERVAL_S[1])
    driver = layers.pick("driver").choice("driver", DRIVERS, "modbus")
    if text_device:
        settings = read_text_device(sec, layers.pick("text"), links.links.get(link or ""),
                                    unit_id)
    else:
        check_modbus_device(sec, links.links.get(link or ""))
        settings = _read_acquisition(layers)
    if None in (device_id, link, unit_id, interval_s, driver, settings):
        return None
    assert settings is not None
    return Device(
        id=device_id or "",
        link=link or "",
        unit_id=unit_id or 0,
        interval_s=interval_s or 0.0,
        driver=driver or "modbus",
        profile=profile.name if profile else None,
        **settings,
    )


class _Missing:
    """A profile was named but could not be used (the reason is already reported)."""


_NO_PROFILE = _Missing()


def _read_profile(sec: Section, profiles: ProfileLibrary) -> Profile | _Missing | None:
    entry = sec.node.get("profile")
    if entry is None or (isinstance(entry.value, ScalarNode) and entry.value.value is None):
        return None
    reference = sec.text("profile", what="a profile name such as generic-gc, or a file")
    if reference is None:  # not text: reported
        return _NO_PROFILE
    found = profiles.find(reference)
    if isinstance(found, str):
        sec.report("profile", found)
        return _NO_PROFILE
    if found.root is None:  # unreadable YAML: reported against the profile's own file
        return _NO_PROFILE
    return found


def _read_acquisition(layers: Layers) -> dict[str, object] | None:
    """Channels and the settings that shape acquisition, profile first, station on top."""
    device = layers.pick("id")
    order = layers.pick("word_order").choice("word_order", WORD_ORDERS, WordOrder.ABCD)
    enron = layers.pick("enron").flag("enron", False)
    start = len(device.ck.issues)
    notes = ChannelNotes()
    base: dict[str, Channel] = {}
    if layers.profile is not None:
        base = {ch.name: ch for ch in read_channels(layers.profile, order or WordOrder.ABCD,
                                                     bool(enron), {}, notes)}
    channels = read_channels(device, order or WordOrder.ABCD, bool(enron), base, notes)
    channels = without_disabled_targets(channels, notes.disabled)
    _check_overlaps(device, channels, notes.placed)
    trigger = read_trigger(layers)
    clock = read_clock(layers)
    stream = layers.pick("stream_channel").text("stream_channel", None,
                                                what="the name of the stream channel")
    check_references(layers.pick, channels, trigger, clock, stream, notes)
    if trigger is not None and trigger.kind.value == "timestamp" and clock is None:
        layers.report("trigger", "a timestamp trigger needs clock: (where the analysis time "
                                 "is)")
    limits = read_limits(layers)
    check_limits(device, channels, limits, notes)
    failed = len(device.ck.issues) > start or not channels
    if order is None or enron is None or failed:
        return None
    return {"channels": channels, "limits": limits, "trigger": trigger, "clock": clock,
            "stream_channel": stream}


def _read_link_name(sec: Section, links: LinkTable) -> str | None:
    name = sec.text("link", what="the name of a link under links:")
    if name is None or name in links.kinds:
        return name
    if links.kinds:  # with no links at all, the links: section's own issue says it all
        sec.report("link", f"'{name}' is not defined (known: {', '.join(links.kinds)})")
    return None


def _read_unit_id(sec: Section, link_kind: str | None) -> int | None:
    """Modbus unit id: 1..247 on a serial bus (0 is broadcast), 0..255 over TCP."""
    serial = link_kind == "serial"
    shown = "an integer 1..247 on a serial link" if serial else None
    unit_id = sec.integer("unit_id", lo=0, hi=255, expected=shown)
    if unit_id is None or not serial or 1 <= unit_id <= 247:
        return unit_id
    if unit_id == 0:
        message = (
            "unit id 0 is the broadcast address on a serial bus and no device answers it; "
            "use the device's own address 1..247"
        )
    else:
        message = f"expected an integer 1..247 on a serial link, found {unit_id}"
    sec.report("unit_id", message)
    return None


def _check_unique_id(sec: Section, device: Device | None, ids: dict[str, int | None]) -> None:
    device_id = device.id if device else _plain_text(sec, "id")
    if device_id is None:
        return
    if device_id in ids:
        sec.report("id", f"device id '{device_id}' is already used at line {ids[device_id]}")
    else:
        ids[device_id] = sec.value_line("id")


def _check_unit_id_free(
    sec: Section, device: Device | None, units: dict[tuple[str, int], tuple[str, int | None]]
) -> None:
    """Two devices with one unit id on one link would both answer (or the wrong one)."""
    if device is None:
        return
    key = (device.link, device.unit_id)
    if key in units:
        other, line = units[key]
        sec.report(
            "unit_id",
            f"unit id {device.unit_id} on link '{device.link}' is already used by device "
            f"'{other}' (line {line})",
        )
    else:
        units[key] = (device.id, sec.value_line("unit_id"))


def _plain_text(sec: Section, key: str) -> str | None:
    """The text under ``key`` as written, even when the device as a whole is invalid."""
    entry = sec.node.get(key)
    if entry is None or not isinstance(entry.value, ScalarNode):
        return None
    return entry.value.value if isinstance(entry.value.value, str) else None


def _check_overlaps(sec: Section, channels: tuple[Channel, ...],
                    placed: dict[str, tuple[Section, int | None]]) -> None:
    """Channels sharing a register mean an address is off, except single registers read
    two ways (a status word as a number and as bits): both 16-bit or bits of one word."""
    near_before = _near_before(channels)
    for index, channel in enumerate(channels):
        clashes = [channels[i] for i in near_before(index) if _clash(channel, channels[i])]
        if not clashes:
            continue
        listing = " and ".join(f"{_describe(other)} (line {placed[other.name][1]})"
                               if other.name in placed else _describe(other)
                               for other in clashes)
        where = placed.get(channel.name)
        if where is None:
            sec.report("channels", f"{_describe(channel)} overlaps {listing}", at_key=True)
            continue
        key = "number" if where[0].has("number") else "address"
        where[0].report(key, f"{_describe(channel)} overlaps {listing}")


def _near_before(channels: tuple[Channel, ...]) -> Callable[[int], list[int]]:
    """For a channel's index, the indexes of the channels before it that start close
    enough to overlap it, in list order.

    Comparing every pair took a minute for 10 devices of 2000 channels; a channel spans
    at most a few hundred addresses, so only starts within the longest span can clash.
    """
    starts: dict[int, list[int]] = {}
    for i, channel in enumerate(channels):
        starts.setdefault(channel.address, []).append(i)
    longest = max((channel.span for channel in channels), default=1)

    def near(index: int) -> list[int]:
        first, last = _span(channels[index])
        return sorted(i for address in range(first - longest + 1, last + 1)
                      for i in starts.get(address, ()) if i < index)

    return near


def _clash(one: Channel, other: Channel) -> bool:
    if one.register is not other.register or one.enron != other.enron:
        return False
    if one.span == 1 and other.span == 1 and one.data_type is not DataType.STRING \
            and other.data_type is not DataType.STRING:
        return False
    first, last = _span(one)
    other_first, other_last = _span(other)
    return first <= other_last and other_first <= last


def _describe(channel: Channel) -> str:
    """ "float32 'toluene' at holding 101..102" for overlap messages."""
    first, last = _span(channel)
    where = f"{first}" if first == last else f"{first}..{last}"
    return f"{channel.data_type.value} '{channel.name}' at {channel.register.value} {where}"


def _span(channel: Channel) -> tuple[int, int]:
    return channel.address, channel.address + channel.span - 1
