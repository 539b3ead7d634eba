"""The ``uplinks:`` section: named uplinks beside the default one (``mqtt:``).

A station often feeds several platforms (municipal, provincial, the operator's cloud);
each is an uplink, acknowledged on its own. An uplink is a name (the key), an optional
``kind`` (config/uplink_kinds.py; ``mqtt`` by default), an optional ``devices`` list (the
device ids it carries; absent: every device) and its kind's settings written beside them,
read exactly as the ``mqtt:`` section is (validate_mqtt.py). Besides each uplink's own
settings this checks what only the set shows: a device list naming no device, two
uplinks fighting over one client id on one broker (each connect throws the other off),
and two uplinks delivering the same samples to the same topics (a warning).
Duplicate names are refused by the YAML reader (yamlsource.py), as every duplicate key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.config.declare import declared, read_declared
from edge_agent.config.fields import Checker, Section, as_section, found, join, suggest
from edge_agent.config.limits import MAX_DEVICES, MAX_UPLINKS, count_problem
from edge_agent.config.schema import DEFAULT_UPLINK_NAME, MqttConfig, UplinkConfig
from edge_agent.config.uplink_kinds import (
    DEFAULT_UPLINK_KIND,
    UPLINK_KINDS,
    UplinkPlace,
    uplink_kind_keys,
)
from edge_agent.config.validate_mqtt import PLAIN_PASSWORD, check_expanded_topics
from edge_agent.config.yamlsource import MapNode, Node, ScalarNode, SeqNode
from edge_agent.i18n import _

UPLINK_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
COMMON_KEYS = ("kind", "devices")  # declared on UplinkConfig; the kind's keys follow
KIND_CHOICES = {name: name for name in UPLINK_KINDS}


@dataclass
class KnownDevices:
    """The device ids the file writes, for ``devices`` lists. Suggesting a close id costs
    a comparison with every id (20 ms with 1000 devices), so only the first
    ``suggestions`` unknown ids of the file get one: a hostile file of thousands of
    unknown ids is still checked in seconds."""

    ids: list[str]
    suggestions: int = 20

    def __post_init__(self) -> None:
        self.known = frozenset(self.ids)

    def unknown(self, name: str) -> str:
        """The message for ``name``, which is not a device of the file."""
        message = _("there is no device '{name}' under devices: (known: {known})").format(
            name=name, known=", ".join(self.ids))
        if self.suggestions > 0:
            self.suggestions -= 1
            message += suggest(name, self.ids)
        return message


@dataclass
class UplinkTable:
    """The named uplinks read, and the section each was written in (where the checks
    across uplinks report)."""

    uplinks: list[UplinkConfig] = field(default_factory=list)
    sections: dict[str, Section] = field(default_factory=dict)


def names_an_uplink(top: Section) -> bool:
    """Whether ``uplinks:`` holds at least one entry (then ``mqtt:`` may be left out)."""
    entry = top.node.get("uplinks")
    return entry is not None and isinstance(entry.value, MapNode) and bool(entry.value.entries)


def read_uplinks(ck: Checker, top: Section, station_id: str | None, env: Mapping[str, str],
                 base: Path) -> UplinkTable:
    """Every uplink under ``uplinks:``; absent, null or empty: none. ``base`` is where
    relative TLS and password files are."""
    table = UplinkTable()
    entry = top.node.get("uplinks")
    if entry is None or (isinstance(entry.value, ScalarNode) and entry.value.value is None):
        return table
    names = [item.key for item in entry.value.entries] if isinstance(entry.value, MapNode) \
        else []
    section = as_section(ck, entry.value, "uplinks", entry.line, names)
    if section is None:
        return table
    if problem := count_problem(len(section.node.entries), MAX_UPLINKS, _("uplinks")):
        top.report("uplinks", problem, at_key=True)
        return table
    known = KnownDevices(written_device_ids(top))
    for item in section.node.entries:
        if item.key in table.sections:
            continue  # a duplicate name: the YAML reader reported it
        sec = _uplink_section(ck, item.key, item.line, item.value)
        if sec is None:
            continue
        table.sections[item.key] = sec
        place = UplinkPlace(station_id, item.key, env, base)
        uplink = _read_uplink(sec, place, known)
        if uplink is not None:
            table.uplinks.append(uplink)
    return table


def _uplink_section(ck: Checker, name: str, line: int, node: Node) -> Section | None:
    path = join("uplinks", name)
    if name == DEFAULT_UPLINK_NAME:
        ck.report(line, path, _("the name '{name}' is taken by the mqtt: section (the default "
                                "uplink); give this uplink another name").format(name=name))
    elif not UPLINK_NAME.fullmatch(name):
        ck.report(line, path, _("the uplink name '{name}' may contain only ASCII letters, "
                                "digits, '-' and '_', 1 to 32 of them").format(name=name))
    kind = _written_kind(node)
    keys = UPLINK_KINDS[kind].keys if kind else uplink_kind_keys()
    return as_section(ck, node, path, line, (*COMMON_KEYS, *keys),
                      {"password": _(PLAIN_PASSWORD)})


def _written_kind(node: Node) -> str | None:
    """The kind as written (the default when absent), or None when it is not a kind."""
    entry = node.get("kind") if isinstance(node, MapNode) else None
    if entry is None:
        return DEFAULT_UPLINK_KIND
    text = entry.value.text.lower() if isinstance(entry.value, ScalarNode) else ""
    return text if text in UPLINK_KINDS else None


def _read_uplink(sec: Section, place: UplinkPlace, known: KnownDevices
                 ) -> UplinkConfig | None:
    kind = read_declared(sec, UplinkConfig, "kind", choices=KIND_CHOICES)
    devices = _read_devices(sec, known)
    if kind is None:
        return None
    entry = UPLINK_KINDS[kind]
    settings = entry.read(sec, place)
    return UplinkConfig(place.name, kind, devices, **{entry.field: settings})


def written_device_ids(top: Section) -> list[str]:
    """Every device id the file writes, valid or not: a device with a wrong setting has
    its own issue and must not also be called unknown here."""
    entry = top.node.get("devices")
    if entry is None or not isinstance(entry.value, SeqNode):
        return []
    ids = []
    for item in entry.value.items:
        id_entry = item.get("id") if isinstance(item, MapNode) else None
        if id_entry is not None and isinstance(id_entry.value, ScalarNode):
            ids.append(id_entry.value.text)
    return ids


def _read_devices(sec: Section, known: KnownDevices) -> tuple[str, ...] | None:
    """``devices``: the ids this uplink carries; absent or null: None (every device)."""
    entry = sec.node.get("devices")
    if entry is None or (isinstance(entry.value, ScalarNode) and entry.value.value is None):
        return None
    node = entry.value
    if not isinstance(node, SeqNode):
        sec.report("devices", _("expected {expected}, found {found}").format(
            expected=declared(UplinkConfig)["devices"].expected(), found=found(node)))
        return None
    if not node.items:
        sec.report("devices", _("the list is empty: list the ids of the devices this uplink "
                                "carries, or leave devices out to carry every device"))
        return None
    if problem := count_problem(len(node.items), MAX_DEVICES, _("devices")):
        sec.report("devices", problem, at_key=True)
        return None
    ids: dict[str, int] = {}
    for index, item in enumerate(node.items):
        path = f"{sec.path_of('devices')}[{index}]"
        if not isinstance(item, ScalarNode) or item.value is None \
                or isinstance(item.value, bool):
            sec.ck.report(item.line, path, _("expected a device id such as gc-1, found "
                                             "{found}").format(found=found(item)))
        elif item.text in ids:
            sec.ck.report(item.line, path, _("'{name}' is listed twice (also devices[{index}]); "
                                             "list each device once").format(
                                                 name=item.text, index=ids[item.text]))
        elif item.text not in known.known:
            if known.ids:  # with no device at all, the devices: section's own issue says it
                sec.ck.report(item.line, path, known.unknown(item.text))
        else:
            ids[item.text] = index
    return tuple(ids)


def check_uplinks(ck: Checker, top: Section, table: UplinkTable, every: tuple[UplinkConfig, ...],
                  station_id: str | None, device_ids: list[str]) -> None:
    """What only the whole set of uplinks shows: each named uplink's expanded topics for
    the devices it carries, and two uplinks sharing a broker (``every``: the default
    uplink first, then the named ones)."""
    for uplink in table.uplinks:
        carried = [device for device in device_ids if uplink.carries(device)]
        check_expanded_topics(ck, top, uplink.mqtt, station_id, carried,
                              ("uplinks", uplink.name))
    mqtt = [(uplink, settings) for uplink in every
            if (settings := uplink.mqtt or _sparkplug_broker(uplink)) is not None]
    for index, (later, settings) in enumerate(mqtt):
        sec = table.sections.get(later.name)
        if sec is None:
            continue  # the default uplink comes first: it is the "other" one
        for earlier, other in mqtt[:index]:
            shared = _shared_address(settings, other)
            if shared is not None:
                _check_pair(sec, later, settings, earlier, other, shared)


def _sparkplug_broker(uplink: UplinkConfig) -> MqttConfig | None:
    """A Sparkplug uplink's broker settings (its client id may clash like any other)."""
    return uplink.sparkplug.broker if uplink.sparkplug is not None else None


def _shared_address(one: MqttConfig, two: MqttConfig) -> str | None:
    """The first broker address both connect to (host case-insensitive), or None."""
    theirs = {(address.host.lower(), address.port) for address in two.addresses}
    return next((str(address) for address in one.addresses
                 if (address.host.lower(), address.port) in theirs), None)


def _check_pair(sec: Section, later: UplinkConfig, settings: MqttConfig,
                earlier: UplinkConfig, other: MqttConfig, address: str) -> None:
    """Two uplinks on one broker: one client id is an error (the broker keeps one
    connection per client id), one data topic for shared devices a warning (every such
    sample arrives twice)."""
    if settings.client_id == other.client_id:
        sec.report("client_id", _(
            "{other} connects to {address} with the same client id '{client_id}': a broker "
            "keeps one connection per client id, so the two uplinks would throw each other "
            "off again and again; give each uplink its own client_id").format(
                other=_called(earlier), address=address, client_id=settings.client_id))
    elif later.kind == earlier.kind == "mqtt" and settings.topics.data == other.topics.data \
            and _overlap(later, earlier):
        sec.warn("topics", _(
            "{other} sends to the same broker ({address}) and the same data topic "
            "'{topic}': every sample of the devices both carry arrives there twice; give "
            "one of them other topics, or remove one").format(
                other=_called(earlier), address=address, topic=settings.topics.data))


def _overlap(one: UplinkConfig, two: UplinkConfig) -> bool:
    if one.devices is None or two.devices is None:
        return True
    return bool(set(one.devices) & set(two.devices))


def _called(uplink: UplinkConfig) -> str:
    if uplink.name == DEFAULT_UPLINK_NAME:
        return _("the mqtt: section (the default uplink)")
    return _("uplink '{name}'").format(name=uplink.name)
