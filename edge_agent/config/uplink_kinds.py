"""Every uplink kind the station file knows: one entry each.

An uplink kind (``mqtt``; ``hj212``, an HJ 212 platform;
``sparkplug``, a Sparkplug B edge node) is what ``uplinks.NAME.kind`` names. Its
entry says which keys an uplink of the kind may write beside ``kind`` and ``devices``,
which ``UplinkConfig`` field holds its settings, and the reader that validates them.
Adding a kind is a settings dataclass, a field of that type on ``UplinkConfig``, its
reader, and one line in ``UPLINK_KINDS``; the uplinks reader keeps no list of kinds.
The order is the order messages list the kinds in; the first is the default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.config.declare import allowed_keys
from edge_agent.config.fields import Section
from edge_agent.config.schema import Hj212Config, MqttConfig, SparkplugConfig
from edge_agent.config.validate_mqtt import read_mqtt_settings


@dataclass(frozen=True)
class UplinkPlace:
    """What a kind's reader needs besides the uplink's section: the default client id
    (or the kind's own name for the station on the wire), the environment that holds
    passwords, and the directory relative secret files are in."""

    station_id: str | None
    name: str
    env: Mapping[str, str]
    base: Path

    @property
    def client_id(self) -> str:
        """``edge-agent-STATION-NAME``: unique per uplink, so two uplinks on one broker
        do not throw each other off (the default uplink's is ``edge-agent-STATION``)."""
        return f"edge-agent-{self.station_id}-{self.name}"


@dataclass(frozen=True)
class UplinkKind:
    """One uplink kind: ``field`` names the ``UplinkConfig`` field its settings go in;
    ``read(section, place)`` returns them (values reported as wrong already replaced by
    defaults: the loader raises before they are used)."""

    name: str
    settings_type: type
    field: str
    read: Callable[[Section, UplinkPlace], Any]

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys an uplink of this kind writes beside ``kind`` and ``devices``."""
        return allowed_keys(self.settings_type)


def _read_mqtt(sec: Section, place: UplinkPlace) -> MqttConfig:
    return read_mqtt_settings(sec, place.client_id, place.env, place.base)


def _read_hj212(sec: Section, place: UplinkPlace) -> Hj212Config:
    # Imported here: the HJ 212 code table and SM4 (cryptography) load only for a station
    # that has an HJ 212 platform (tests/test_runtime_footprint.py).
    from edge_agent.config.validate_hj212 import read_hj212_settings

    return read_hj212_settings(sec, place.env, place.base)


def _read_sparkplug(sec: Section, place: UplinkPlace) -> SparkplugConfig:
    from edge_agent.config.validate_sparkplug import read_sparkplug_settings

    return read_sparkplug_settings(sec, place.client_id, place.env, place.base)


UPLINK_KINDS: dict[str, UplinkKind] = {kind.name: kind for kind in (
    UplinkKind("mqtt", MqttConfig, "mqtt", _read_mqtt),
    UplinkKind("hj212", Hj212Config, "hj212", _read_hj212),
    UplinkKind("sparkplug", SparkplugConfig, "sparkplug", _read_sparkplug),
)}
DEFAULT_UPLINK_KIND = next(iter(UPLINK_KINDS))


def uplink_kind_keys() -> tuple[str, ...]:
    """The keys of every registered kind, each once: what an uplink whose kind cannot
    be read may write (only ``kind`` itself is then reported)."""
    return tuple(dict.fromkeys(key for kind in UPLINK_KINDS.values() for key in kind.keys))
