"""The ``devices:`` section: instruments, their link, unit id and driver kind.

A device's settings come from its profile (profiles.py), overridden by what the station
file writes for it. This reads what every kind shares (id, link, interval_s, driver,
profile, polling) and hands the rest to the kind's reader through the registry
(edge_agent_drivers.registry): the kind reads its unit id and its ``settings``, and says
which link protocols it speaks. Besides each field, this checks what only the whole list
shows: duplicate device ids, two devices answering to one unit id on one wire, text
links shared by devices that cannot share them, and the station's channel count.
"""

from __future__ import annotations

from collections.abc import Collection

from edge_agent_drivers.modbus.settings import ModbusSettings
from edge_agent_drivers.registry import DEFAULT_KIND, KINDS, kind_keys

from edge_agent.alarms.rules import ChannelAlarms
from edge_agent.config.declare import allowed_keys, read_declared
from edge_agent.config.fields import Checker, Section, as_section
from edge_agent.config.layers import Layers
from edge_agent.config.limits import (
    MAX_CHANNELS_PER_STATION,
    MAX_DEVICES,
    count_problem,
)
from edge_agent.config.names import id_problem
from edge_agent.config.profiles import Profile, ProfileLibrary
from edge_agent.config.schema import Device, Link
from edge_agent.config.text_links import SharedTextLinks, check_text_link_sharing
from edge_agent.config.validate_links import LinkTable
from edge_agent.config.validate_polling import DEVICE_POLLING_KEYS, with_device_polling
from edge_agent.config.yamlsource import ScalarNode, SeqNode, kind
from edge_agent.driverkind import DeviceEntry, DriverKind
from edge_agent.i18n import _

# declared on config/schema.py's Device: id, link, unit_id, interval_s, driver, profile
COMMON_KEYS = allowed_keys(Device)


def device_keys() -> tuple[str, ...]:
    """What a device may write: the common keys, each registered kind's, polling's."""
    return (*COMMON_KEYS, *kind_keys(), *DEVICE_POLLING_KEYS)


def read_devices(ck: Checker, top: Section, links: LinkTable,
                 profiles: ProfileLibrary) -> tuple[Device, ...]:
    """Every device under ``devices:`` (required, at least one), cross-checked."""
    entry = top.node.get("devices")
    if entry is None:
        top.missing("devices", _("a list of devices, each starting with '- id:'"))
        return ()
    if not isinstance(entry.value, SeqNode) or not entry.value.items:
        found = kind(entry.value)
        top.report("devices", _("expected a list of devices ('- id: ...' items), found {found}")
                   .format(found=found))
        return ()
    if problem := count_problem(len(entry.value.items), MAX_DEVICES, _("devices")):
        top.report("devices", problem, at_key=True)
        return ()
    devices: list[Device] = []
    ids: dict[str, int | None] = {}
    units: dict[tuple[str, int], tuple[str, int | None]] = {}
    text_links = SharedTextLinks()
    for index, node in enumerate(entry.value.items):
        path = f"devices[{index}]"
        sec = as_section(ck, node, path, node.line, device_keys())
        if sec is None:
            continue
        device = with_device_polling(sec, _read_device(sec, links, profiles))
        device = check_text_link_sharing(sec, device, text_links)
        _check_unique_id(sec, device, ids)
        _check_unit_id_free(sec, device, units)
        if device is not None:
            devices.append(device)
    channels = sum(len(device.settings.channels) for device in devices
                   if isinstance(device.settings, ModbusSettings))
    if problem := count_problem(channels, MAX_CHANNELS_PER_STATION, _("channels in all")):
        top.report("devices", problem, at_key=True)
    return tuple(devices)


def _read_device(sec: Section, links: LinkTable, profiles: ProfileLibrary) -> Device | None:
    device_id = read_declared(sec, Device, "id")
    if device_id is not None and (problem := id_problem(device_id, _("device id"))):
        sec.report("id", problem)
    link = _read_link_name(sec, links)
    profile = _read_profile(sec, profiles)
    if profile is _NO_PROFILE:
        return None  # what is required depends on the profile: its error says enough
    assert not isinstance(profile, _Missing)
    layers = Layers(sec, profile.section() if profile else None)
    kind_of = _kind(layers.pick("driver"))  # what else is read depends on the kind
    unit_id = kind_of.read_unit_id(sec, links.kinds.get(link or ""))
    interval_s = read_declared(layers.pick("interval_s"), Device, "interval_s")
    driver = read_declared(layers.pick("driver"), Device, "driver",
                           choices={name: name for name in KINDS})
    link_settings = links.links.get(link or "")
    if problem := kind_of.link_problem(link_settings, _speaker(link_settings)):
        sec.report("link", problem)
    owners = _owners(kind_of)
    if not kind_of.refuses_other_keys:
        _refuse_other_keys(layers, kind_of, owners)
    settings = kind_of.read_settings(DeviceEntry(sec, layers, link_settings, unit_id,
                                                 owners))
    if settings is not None and not isinstance(settings, kind_of.settings_class()):
        raise TypeError(f"driver kind {kind_of.name}: its reader returned "
                        f"{type(settings).__name__}, not {kind_of.settings_class().__name__}")
    alarms = _device_alarms(layers, _channel_names(settings))
    if None in (device_id, link, unit_id, interval_s, driver, settings):
        return None
    return Device(
        id=device_id or "",
        link=link or "",
        unit_id=unit_id or 0,
        interval_s=interval_s or 0.0,
        settings=settings,
        driver=driver or DEFAULT_KIND,
        profile=profile.name if profile else None,
        alarms=alarms,
    )


def _device_alarms(layers: Layers, channels: Collection[str] | None
                   ) -> tuple[ChannelAlarms, ...]:
    """The device's alarm rules (validate_alarms.read_device_alarms), none when neither
    the station nor the profile writes ``alarms:``. The alarm reader is imported only
    for a device that has rules: a station without any would keep it in memory for
    nothing (issue 11, RSS)."""
    if not any(layer is not None and layer.has("alarms")
               for layer in (layers.profile, layers.device)):
        return ()
    from edge_agent.config.validate_alarms import read_device_alarms

    return read_device_alarms(layers, channels)


def _channel_names(settings: object) -> tuple[str, ...] | None:
    """The names of a device's channels, for its alarm rules (None: its settings were
    wrong, so rules are read without checking their channel)."""
    channels = getattr(settings, "channels", None)
    return None if channels is None else tuple(channel.name for channel in channels)


def _kind(sec: Section) -> DriverKind:
    """The kind ``driver:`` names (any case), before it is read; the default kind when
    absent or unknown (``driver:`` itself then reports the unknown name)."""
    entry = sec.node.get("driver")
    value = entry.value if entry is not None else None
    named = str(value.value).lower() if isinstance(value, ScalarNode) else DEFAULT_KIND
    return KINDS.get(named, KINDS[DEFAULT_KIND])


def _speaker(link: Link | None) -> str | None:
    """The first registered kind that speaks ``link``'s protocol (None: none does)."""
    if link is None:
        return None
    return next((kind.name for kind in KINDS.values() if link.protocol in kind.link_protocols),
                None)


def _owners(kind_of: DriverKind) -> dict[str, str]:
    """Each device-level key of another kind (and not of ``kind_of``) -> that kind."""
    owners: dict[str, str] = {}
    for other in KINDS.values():
        for key in other.keys:
            if key not in kind_of.keys:
                owners.setdefault(key, other.name)
    return owners


def _refuse_other_keys(layers: Layers, kind_of: DriverKind, owners: dict[str, str]) -> None:
    """Keys that only other kinds read are refused, never ignored (station and profile)."""
    for layer in {id(one): one for one in (layers.device, layers.profile)
                  if one is not None}.values():
        for key, owner in owners.items():
            if layer.has(key):
                layer.report(key, _("{key} is a setting of driver {owner}; driver {driver} "
                                    "does not read it").format(key=key, owner=owner,
                                                               driver=kind_of.name), at_key=True)


class _Missing:
    """A profile was named but could not be used (the reason is already reported)."""


_NO_PROFILE = _Missing()


def _read_profile(sec: Section, profiles: ProfileLibrary) -> Profile | _Missing | None:
    entry = sec.node.get("profile")
    if entry is None or (isinstance(entry.value, ScalarNode) and entry.value.value is None):
        return None
    reference = read_declared(sec, Device, "profile")
    if reference is None:  # not text: reported
        return _NO_PROFILE
    found = profiles.find(reference)
    if isinstance(found, str):
        sec.report("profile", found)
        return _NO_PROFILE
    if found.root is None:  # unreadable YAML: reported against the profile's own file
        return _NO_PROFILE
    return found


def _read_link_name(sec: Section, links: LinkTable) -> str | None:
    name = read_declared(sec, Device, "link")
    if name is None or name in links.kinds:
        return name
    if links.kinds:  # with no links at all, the links: section's own issue says it all
        sec.report("link", _("'{name}' is not defined (known: {known})").format(
            name=name, known=", ".join(links.kinds)))
    return None


def _check_unique_id(sec: Section, device: Device | None, ids: dict[str, int | None]) -> None:
    device_id = device.id if device else _plain_text(sec, "id")
    if device_id is None:
        return
    if device_id in ids:
        sec.report("id", _("device id '{id}' is already used at line {line}").format(
            id=device_id, line=ids[device_id]))
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
            _("unit id {unit_id} on link '{link}' is already used by device '{other}' (line "
              "{line})").format(unit_id=device.unit_id, link=device.link, other=other, line=line),
        )
    else:
        units[key] = (device.id, sec.value_line("unit_id"))


def _plain_text(sec: Section, key: str) -> str | None:
    """The text under ``key`` as written, even when the device as a whole is invalid."""
    entry = sec.node.get(key)
    if entry is None or not isinstance(entry.value, ScalarNode):
        return None
    return entry.value.value if isinstance(entry.value.value, str) else None
