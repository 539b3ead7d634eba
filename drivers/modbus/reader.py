"""The Modbus part of a ``devices[]`` entry: unit id, register map, acquisition settings.

Called through the registry (edge_agent_drivers.registry) by config/validate_devices.py,
which reads what every kind shares. Channels and the settings that shape acquisition
come from the profile first, the station file on top (config/layers.py).
"""

from __future__ import annotations

from dataclasses import replace

from edge_agent_drivers.modbus.config_acquisition import (
    check_limits,
    check_references,
    read_clock,
    read_limits,
    read_trigger,
)
from edge_agent_drivers.modbus.config_channels import (
    ChannelNotes,
    read_channels,
    without_disabled_targets,
)
from edge_agent_drivers.modbus.overlaps import check_overlaps
from edge_agent_drivers.modbus.settings import Channel, ModbusSettings, WordOrder

from edge_agent.config.declare import Setting, allowed_keys, read_declared, read_setting
from edge_agent.config.fields import Section
from edge_agent.config.schema import Link
from edge_agent.driverkind import DeviceEntry

#: Device-level keys only Modbus devices read, all declared on ModbusSettings (word_order
#: and enron give each channel's defaults).
MODBUS_KEYS = allowed_keys(ModbusSettings)


#: A Modbus unit id as the protocol allows it (0..255 over TCP); on a serial bus only
#: 1..247 answer (0 is broadcast): a rule across unit_id and the link's type.
UNIT_ID = Setting(("unit_id",), "integer", 0, 255)
SERIAL_UNIT_IDS = (1, 247)


def read_unit_id(sec: Section, link_type: str | None) -> int | None:
    """Modbus unit id: 1..247 on a serial bus (0 is broadcast), 0..255 over TCP."""
    serial = link_type == "serial"
    low, high = SERIAL_UNIT_IDS
    shown = f"an integer {low}..{high} on a serial link" if serial else ""
    unit_id = read_setting(sec, replace(UNIT_ID, hint=shown))
    if unit_id is None or not serial or low <= unit_id <= high:
        return unit_id
    if unit_id == 0:
        message = (
            "unit id 0 is the broadcast address on a serial bus and no device answers it; "
            f"use the device's own address {low}..{high}"
        )
    else:
        message = f"expected {shown}, found {unit_id}"
    sec.report("unit_id", message)
    return None


def wrong_link(link: Link, speaker: str | None) -> str:
    """A Modbus device on a link of another protocol: say which driver that link is for
    (``speaker``, from the registry)."""
    what = " (an instrument's own ASCII protocol)" if link.protocol.value == "text" else ""
    use = f"use driver: {speaker} for this device, or " if speaker else "use "
    return (f"link '{link.name}' has protocol: {link.protocol.value}{what}; {use}a Modbus "
            "protocol on the link")


def read_settings(entry: DeviceEntry) -> ModbusSettings | None:
    """Channels and the settings that shape acquisition, profile first, station on top.
    None after an issue (or when no channel is left)."""
    for key, owner in entry.owners.items():
        if entry.section.has(key):
            entry.section.report(key, f"{key}: is only for driver: {owner}", at_key=True)
    layers = entry.layers
    device = layers.pick("id")
    order = read_declared(layers.pick("word_order"), ModbusSettings, "word_order")
    enron = read_declared(layers.pick("enron"), ModbusSettings, "enron")
    start = len(device.ck.issues)
    notes = ChannelNotes()
    base: dict[str, Channel] = {}
    if layers.profile is not None:
        base = {ch.name: ch for ch in read_channels(layers.profile, order or WordOrder.ABCD,
                                                     bool(enron), {}, notes)}
    channels = read_channels(device, order or WordOrder.ABCD, bool(enron), base, notes)
    channels = without_disabled_targets(channels, notes.disabled)
    check_overlaps(device, channels, notes.placed)
    trigger = read_trigger(layers)
    clock = read_clock(layers)
    stream = read_declared(layers.pick("stream_channel"), ModbusSettings, "stream_channel")
    check_references(layers.pick, channels, trigger, clock, stream, notes)
    if trigger is not None and trigger.kind.value == "timestamp" and clock is None:
        layers.report("trigger", "a timestamp trigger needs clock: (where the analysis time "
                                 "is)")
    limits = read_limits(layers)
    check_limits(device, channels, limits, notes)
    failed = len(device.ck.issues) > start or not channels
    if order is None or enron is None or failed:
        return None
    return ModbusSettings(channels=channels, word_order=order, enron=enron, limits=limits,
                          trigger=trigger, clock=clock, stream_channel=stream)
