"""The ``devices:`` section: instruments, their link and unit id, and their register maps.

Besides each field, this checks what only the whole list shows: duplicate device ids,
two devices answering to one unit id on one wire, and 32-bit channels whose two
registers overlap another channel (almost always an address counted wrong).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge_agent.config.fields import Checker, Section, as_section, join
from edge_agent.config.schema import Channel, DataType, Device, RegisterKind, WordOrder
from edge_agent.config.validate_links import LinkTable
from edge_agent.config.yamlsource import ScalarNode, SeqNode, kind

DEVICE_KEYS = ("id", "link", "unit_id", "interval_s", "driver", "word_order", "channels")
CHANNEL_KEYS = ("name", "address", "register", "type", "word_order", "scale", "offset", "unit")
DRIVERS = {"modbus": "modbus"}
REGISTERS = {kind.value: kind for kind in RegisterKind}
DATA_TYPES = {data_type.value: data_type for data_type in DataType}
WORD_ORDERS = {order.value: order for order in WordOrder}
_TOPIC_UNSAFE = re.compile(r"[/+#{}\s]")


def topic_safe_problem(value: str, what: str) -> str | None:
    """Why ``value`` cannot be a station or device id (they become MQTT topic levels)."""
    if _TOPIC_UNSAFE.search(value):
        return (
            f"{what} '{value}' becomes part of MQTT topics, so it cannot contain "
            "'/', '+', '#', braces or spaces"
        )
    return None


@dataclass(frozen=True)
class _Placed:
    """A channel with where it was written, for overlap messages."""

    channel: Channel
    line: int | None


def read_devices(ck: Checker, top: Section, links: LinkTable) -> tuple[Device, ...]:
    """Every device under ``devices:`` (required, at least one), cross-checked."""
    entry = top.node.get("devices")
    if entry is None:
        top.missing("devices", "a list of devices, each starting with '- id:'")
        return ()
    if not isinstance(entry.value, SeqNode) or not entry.value.items:
        found = kind(entry.value)
        top.report("devices", f"expected a list of devices ('- id: ...' items), found {found}")
        return ()
    devices: list[Device] = []
    ids: dict[str, int | None] = {}
    units: dict[tuple[str, int], tuple[str, int | None]] = {}
    for index, node in enumerate(entry.value.items):
        path = f"devices[{index}]"
        sec = as_section(ck, node, path, node.line, DEVICE_KEYS)
        if sec is None:
            continue
        device = _read_device(sec, links)
        _check_unique_id(sec, device, ids)
        _check_unit_id_free(sec, device, units)
        if device is not None:
            devices.append(device)
    return tuple(devices)


def _read_device(sec: Section, links: LinkTable) -> Device | None:
    device_id = sec.text("id", what="the device's id, e.g. gc-1")
    if device_id is not None and (problem := topic_safe_problem(device_id, "device id")):
        sec.report("id", problem)
    link = _read_link_name(sec, links)
    unit_id = _read_unit_id(sec, links.kinds.get(link or ""))
    interval_s = sec.number("interval_s", lo=0, above=True)
    driver = sec.choice("driver", DRIVERS, "modbus")
    default_order = sec.choice("word_order", WORD_ORDERS, WordOrder.ABCD)
    channels = _read_channels(sec, default_order or WordOrder.ABCD)
    if None in (device_id, link, unit_id, interval_s, driver):
        return None
    return Device(
        id=device_id or "",
        link=link or "",
        unit_id=unit_id or 0,
        interval_s=interval_s or 0.0,
        channels=channels,
        driver=driver or "modbus",
    )


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


def _read_channels(sec: Section, default_order: WordOrder) -> tuple[Channel, ...]:
    entry = sec.node.get("channels")
    if entry is None:
        sec.missing("channels", "a list of channels, each starting with '- name:'")
        return ()
    if not isinstance(entry.value, SeqNode) or not entry.value.items:
        message = f"expected a list of channels ('- name: ...' items), found {kind(entry.value)}"
        sec.report("channels", message)
        return ()
    placed: list[_Placed] = []
    names: dict[str, int | None] = {}
    for index, node in enumerate(entry.value.items):
        path = f"{join(sec.path, 'channels')}[{index}]"
        channel_sec = as_section(sec.ck, node, path, node.line, CHANNEL_KEYS)
        if channel_sec is None:
            continue
        channel = _read_channel(channel_sec, default_order)
        if channel is None:
            continue
        _check_unique_name(channel_sec, channel, names)
        _check_overlap(channel_sec, channel, placed)
        placed.append(_Placed(channel, channel_sec.value_line("address")))
    return tuple(item.channel for item in placed)


def _read_channel(sec: Section, default_order: WordOrder) -> Channel | None:
    name = sec.text("name", what="the channel's name, e.g. benzene")
    address = sec.integer("address", lo=0, hi=65535)
    register = sec.choice("register", REGISTERS, RegisterKind.HOLDING)
    data_type = sec.choice("type", DATA_TYPES, DataType.UINT16)
    word_order = sec.choice("word_order", WORD_ORDERS, default_order)
    scale = sec.number("scale", 1.0)
    if scale == 0:
        sec.report("scale", "scale 0 would turn every value into 0; use 1 for no scaling")
    offset = sec.number("offset", 0.0)
    unit = sec.text("unit", "", empty_ok=True)
    if data_type is not None and address is not None and address + data_type.word_count > 65536:
        last = 65536 - data_type.word_count
        sec.report(
            "address",
            f"a {data_type.value} needs {data_type.word_count} registers: expected an "
            f"address 0..{last}, found {address}",
        )
        return None
    values = (name, address, register, data_type, word_order, scale, offset, unit)
    if any(value is None for value in values) or scale == 0:
        return None
    return Channel(name, address, register, data_type, word_order, scale, offset, unit)


def _check_unique_name(sec: Section, channel: Channel, names: dict[str, int | None]) -> None:
    if channel.name in names:
        line = names[channel.name]
        sec.report("name", f"channel '{channel.name}' is already defined at line {line}")
    else:
        names[channel.name] = sec.value_line("name")


def _check_overlap(sec: Section, channel: Channel, placed: list[_Placed]) -> None:
    """A 32-bit value sharing a register with another channel means an address is off.

    Two 16-bit channels on one register are allowed (one status word read two ways).
    """
    first, last = _span(channel)
    clashes = []
    for other in placed:
        if other.channel.register != channel.register:
            continue
        if channel.data_type.word_count == 1 and other.channel.data_type.word_count == 1:
            continue
        other_first, other_last = _span(other.channel)
        if first <= other_last and other_first <= last:
            clashes.append(f"{_describe(other.channel)} (line {other.line})")
    if clashes:
        message = f"{_describe(channel)} overlaps {' and '.join(clashes)}"
        sec.report("address", message)


def _describe(channel: Channel) -> str:
    """ "float32 'toluene' at holding 101..102" for overlap messages."""
    first, last = _span(channel)
    where = f"{first}" if first == last else f"{first}..{last}"
    return f"{channel.data_type.value} '{channel.name}' at {channel.register.value} {where}"


def _span(channel: Channel) -> tuple[int, int]:
    return channel.address, channel.address + channel.data_type.word_count - 1
