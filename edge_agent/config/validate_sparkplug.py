"""A Sparkplug B uplink's settings (``uplinks.NAME`` with ``kind: sparkplug``;
docs/sparkplug.md).

The broker is written as for any MQTT uplink and read by the same reader
(validate_mqtt.py), so hosts, brokers, TLS, credentials and client id get the same checks
and messages. Sparkplug fixes the topic namespace, the QoS of every message and one
sample per DDATA, so ``topics``, ``qos``, ``max_samples_per_message`` and
``max_message_bytes`` are refused here with the reason. The ids (group, edge node,
primary host, and each carried device's) become topic levels: ``/``, ``+`` and ``#`` are
refused with the field named (tck-id-topic-structure-namespace-valid-*-id; device ids
are restricted further by the devices section). Each
carried device's channels become the Sparkplug device's metrics (``node_devices``),
filled in once the devices are read (``attach_sparkplug_devices``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from edge_agent.config.declare import read_declared
from edge_agent.config.fields import Section
from edge_agent.config.schema import Device, SparkplugConfig, StationConfig
from edge_agent.config.validate_mqtt import read_mqtt_settings
from edge_agent.i18n import _

FIXED_BY_SPARKPLUG = ("topics", "qos", "max_samples_per_message", "max_message_bytes")
_FORBIDDEN = ("/", "+", "#")


def read_sparkplug_settings(sec: Section, client_id: str, env: Mapping[str, str],
                            base: Path) -> SparkplugConfig:
    """The settings of one Sparkplug uplink; values reported as wrong become defaults
    (the loader raises before they are used)."""
    for key in FIXED_BY_SPARKPLUG:
        if sec.has(key):
            sec.report(key, _("Sparkplug B fixes the topics (spBv1.0/...), the QoS of each "
                              "message and one sample per DDATA; remove {key}").format(key=key))
    # the broker's settings without the keys just refused, so none is reported twice
    kept = tuple(entry for entry in sec.node.entries if entry.key not in FIXED_BY_SPARKPLUG)
    broker_sec = Section(sec.ck, dataclasses.replace(sec.node, entries=kept), sec.path,
                         sec.line, sec.allowed)
    broker = read_mqtt_settings(broker_sec, client_id, env, base)
    ids = {}
    for name in ("group_id", "edge_node_id", "primary_host_id"):
        value = read_declared(sec, SparkplugConfig, name)
        if value is not None and (problem := sparkplug_id_problem(value)):
            sec.report(name, problem)
            value = None
        ids[name] = value
    return SparkplugConfig(group_id=ids["group_id"] or "", edge_node_id=ids["edge_node_id"] or "",
                           broker=broker, primary_host_id=ids["primary_host_id"])


def sparkplug_id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a Sparkplug id (a topic level), or None."""
    if not value:
        return _("an empty id; expected text without / + #")
    bad = [ch for ch in _FORBIDDEN if ch in value]
    if bad:
        return _("'{value}' contains {chars}; expected text without / + # (it becomes a "
                 "level of the Sparkplug topics)").format(value=value, chars=" ".join(bad))
    return None


def attach_sparkplug_devices(config: StationConfig) -> StationConfig:
    """``config`` with each Sparkplug uplink's ``node_devices`` made from the devices it
    carries (device ids are letters, digits, ``-``, ``_`` and ``.`` already, so every
    one is a valid Sparkplug device id)."""
    uplinks = []
    for uplink in config.uplinks:
        settings = uplink.sparkplug
        if settings is None:
            uplinks.append(uplink)
            continue
        specs = tuple(_device_spec(device) for device in config.devices
                      if uplink.carries(device.id))
        uplinks.append(dataclasses.replace(
            uplink, sparkplug=dataclasses.replace(settings, node_devices=specs)))
    return dataclasses.replace(config, uplinks=tuple(uplinks))


def _device_spec(device: Device) -> object:
    """The Sparkplug device of ``device``: one metric per channel, with its datatype's
    type word, unit, and whether scale/offset make an integer a fraction."""
    from edge_agent.sparkplug.model import ChannelSpec, DeviceSpec

    settings = device.settings
    channels = getattr(settings, "channels", None)
    specs = []
    if channels is not None:  # Modbus
        for channel in channels:
            word = str(getattr(channel.data_type, "value", channel.data_type))
            scaled = channel.scale != 1.0 or channel.offset != 0.0
            specs.append(ChannelSpec(channel.name, word, channel.unit, scaled))
    else:  # serial text: numbers
        record = getattr(settings, "record", None)
        for channel in getattr(record, "channels", ()):
            specs.append(ChannelSpec(channel.name, "number", channel.unit))
    return DeviceSpec(device.id, tuple(specs))

