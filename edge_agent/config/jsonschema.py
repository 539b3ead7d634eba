"""The JSON Schema of the station file, generated from the settings' declarations.

Editors with the YAML language server complete and check station files against it
(docs/configuration.md). Sections declared with ``setting(...)`` (config/declare.py:
station, store, retention, polling, health, mqtt and each uplink, tls, topics, links,
a device's common keys, timeout_ms and retries, a text block with its framing, checksum,
channels, time and status, a Modbus device with its channels, read, trigger and clock,
a profile's own keys) give types, ranges, choices, defaults and descriptions; keys a kind registers
without declaring them (drivers/registry.py: a new kind's) are accepted as written.
The loader stays the judge: the schema may accept what ``check`` refuses (cross-field
rules, files that must exist), never the other way round for the files the project
ships (tests/test_station_schema.py).

It is JSON Schema draft-07, the draft the YAML language server supports fully (2019-09
and 2020-12 only in part).

Regenerate the checked-in copy with ``python -m edge_agent.config.jsonschema`` (or
``scripts/station-schema``) after changing a setting; a test fails while it is stale.
"""

from __future__ import annotations

import enum
import json
import sys
from dataclasses import MISSING
from pathlib import Path
from typing import Any

from edge_agent_drivers.modbus import config_channels
from edge_agent_drivers.modbus.settings import (
    AddressRange,
    Channel,
    ModbusSettings,
    QualityRule,
    ReadLimits,
)
from edge_agent_drivers.registry import DEFAULT_KIND, KINDS, kind_keys
from edge_agent_drivers.serialtext.protocol.settings import (
    Checksum,
    Framing,
    StatusField,
    TextChannel,
    TextSettings,
)

from edge_agent.config.alarm_settings import (
    AlarmAction,
    AlarmSettings,
    InstrumentSetting,
    LimitSetting,
)
from edge_agent.config.declare import (
    Setting,
    allowed_keys,
    declared,
    default_of,
    section_type,
    sections,
)
from edge_agent.config.loader import TOP_KEYS
from edge_agent.config.profiles import PROFILE_INFO_KEYS, ProfileInfo
from edge_agent.config.schema import (
    Device,
    DevicePolling,
    HealthConfig,
    Hj212Channel,
    Hj212Config,
    MqttConfig,
    PollingPolicy,
    SerialLink,
    SparkplugConfig,
    StationConfig,
    StoreConfig,
    TcpLink,
    TlsConfig,
    UplinkConfig,
)
from edge_agent.config.uplink_kinds import DEFAULT_UPLINK_KIND, UPLINK_KINDS
from edge_agent.config.value_fields import ValidRangeSetting
from edge_agent.driverkind import DriverKind

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema" / "station-v1.schema.json"
SCHEMA_ID = "https://edge-agent.invalid/schema/station-v1.schema.json"

# Where the station file's declarations start: each top-level section, a link, a
# device with its polling and each registered kind's settings, a profile's own keys.
# Every other declared section is reached from these (declare.sections).
def roots() -> tuple[type, ...]:
    """The declared classes the schema starts from (kinds from the registry)."""
    kinds = tuple(kind.settings_class() for kind in KINDS.values()
                  if declared(kind.settings_class()))
    return (StationConfig, TcpLink, SerialLink, Device, DevicePolling, *kinds, PollingPolicy,
            StoreConfig, MqttConfig, UplinkConfig, HealthConfig, ProfileInfo, AlarmSettings,
            AlarmAction, LimitSetting, InstrumentSetting)


def declared_sections() -> tuple[type, ...]:
    """Every declared section of a station or profile file, each once."""
    return sections(*roots())


_TEXT = {"type": ["string", "number"]}  # a plain number is taken as written: id: 0042
_ANY: dict[str, Any] = {}


def _plain(value: Any) -> Any:
    """A default as JSON writes it (enums by value, paths as text)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


def _field_schema(cls: type, name: str, meta: Setting) -> dict[str, Any]:
    """One declared field: its type, range, choices, default and hint."""
    return setting_schema(meta, default_of(cls, name))


def setting_schema(meta: Setting, default: Any = MISSING) -> dict[str, Any]:
    """One declared setting, with its default (MISSING: required or none)."""
    kind = meta.kind
    schema: dict[str, Any]
    if kind in ("integer", "number"):
        schema = {"type": kind}
        if meta.lo is not None:
            schema["exclusiveMinimum" if meta.above else "minimum"] = meta.lo
        if meta.hi is not None:
            schema["maximum"] = meta.hi
    elif kind == "flag":
        schema = {"type": "boolean"}
    elif kind == "choice":
        words = [str(word) for word in meta.choices or {}]
        cased = dict.fromkeys(w for word in words for w in (word, word.lower(), word.upper()))
        schema = {"enum": [*cased, *(float(w) for w in words if _is_number(w))]}
    elif kind in ("text", "path", "secret", "bytes"):
        schema = dict(_TEXT) if kind == "text" else {"type": "string"}
    elif kind == "limit":
        schema = {"type": ["integer", "number", "string", "null"]}
        if meta.lo is not None:
            schema["minimum"] = meta.lo
        if meta.hi is not None:
            schema["maximum"] = meta.hi
    else:  # a section: filled in by the caller
        schema = {}
    if (default is None or meta.null_ok) and "type" in schema:  # null: not set, as the default
        schema["type"] = [*_types(schema["type"]), "null"]
    if default is not MISSING and kind not in ("section", "secret", "bytes", "custom") \
            and default is not None:  # bytes: "" may mean "any line end", not empty
        schema["default"] = _plain(default)
    if meta.hint or kind not in ("section",):
        schema["description"] = meta.expected()
    return schema


def _types(kind: str | list[str]) -> list[str]:
    return [kind] if isinstance(kind, str) else [t for t in kind if t != "null"]


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def declared_section(cls: type, nested: dict[str, dict[str, Any]] | None = None
                     ) -> dict[str, Any]:
    """An object schema from the declarations of ``cls``; ``nested`` gives the schema of
    fields by name where the declarations do not say it all (a list of items, a section
    also written as one word); other sections are walked into, and the fields of an
    inline dataclass stand at its place."""
    nested = nested or {}
    properties: dict[str, Any] = {}
    for name, meta in declared(cls).items():
        if meta.kind == "inline" and meta.of is not None:
            properties.update(declared_section(meta.of, nested)["properties"])
            continue
        for key in meta.keys:
            if name in nested:
                properties[key] = nested[name]
            elif meta.kind == "section":
                inner = section_type(cls, name)
                properties[key] = declared_section(inner) if inner is not None else _ANY
            else:
                properties[key] = _field_schema(cls, name, meta)
    # an empty section (null) is read as absent: every default
    return {"type": ["object", "null"], "properties": properties,
            "additionalProperties": False}


def keys_only(keys: tuple[str, ...], **known: dict[str, Any]) -> dict[str, Any]:
    """An object schema that knows the keys of a section still read by hand (values
    checked only by ``edge-agent check``), with ``known`` schemas for some of them."""
    return {"type": ["object", "null"], "additionalProperties": False,
            "properties": {key: known.get(key, _ANY) for key in keys}}


def _items(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": schema}


def _modbus_parts() -> dict[str, Any]:
    read = declared_section(ReadLimits)
    read["properties"]["forbidden"] = _items(declared_section(AddressRange))
    parts = declared_section(ModbusSettings, {"limits": read})["properties"]
    rules = {"type": "object", "additionalProperties": declared_section(QualityRule),
             "description": "bit number or value: {quality, reason, channels}"}
    channel = declared_section(Channel, {"quality_bits": rules, "quality_values": rules,
                                         "valid_range": _valid_range()})
    parts["channels"] = _items(keys_only(
        config_channels.CHANNEL_KEYS, **channel["properties"],
        number=setting_schema(config_channels.NUMBER),
        enabled=setting_schema(config_channels.ENABLED, True)))
    return parts


def _valid_range() -> dict[str, Any]:
    schema = declared_section(ValidRangeSetting)
    schema["description"] = "{min, max, quality} in engineering units"
    return schema


def _text_parts() -> dict[str, Any]:
    text = declared_section(TextSettings, {
        "framing": {"anyOf": [_field_schema(Framing, "kind", declared(Framing)["kind"]),
                              declared_section(Framing)]},
        "checksum": {"anyOf": [{"type": "null"},
                               _field_schema(Checksum, "kind", declared(Checksum)["kind"]),
                               declared_section(Checksum)]},
        "status": {"anyOf": [declared_section(StatusField),
                             _items(declared_section(StatusField))]},
        "channels": _items(declared_section(TextChannel, {"valid_range": _valid_range()})),
    })
    return {"text": text}


def _kind_parts() -> dict[str, Any]:
    """Schemas of the device keys of each registered kind that this module knows more
    of than the key; other keys of a kind (a new kind's) are accepted as written."""
    return {**_modbus_parts(), **_text_parts()}


def _common() -> dict[str, Any]:
    """What every device (and profile) may write, from the declarations of ``Device``;
    ``driver``'s words are the registered kinds."""
    common = declared_section(Device)["properties"]
    common["alarms"] = _device_alarms(common["alarms"]["description"])
    common["driver"] = {"enum": list(KINDS), "default": DEFAULT_KIND,
                        "description": "the driver kind (drivers/registry.py)"}
    return common


def _device_alarms(description: str) -> dict[str, Any]:
    """A device's ``alarms:``: channel name -> its rules (config/validate_alarms.py)."""
    limit = declared_section(LimitSetting)
    limit["properties"]["on_delay"] = {"type": ["integer", "string"], "description":
                                       limit["properties"]["on_delay"]["description"]}
    levels = {"type": "object", "additionalProperties": {"enum": [1, 2, "high", "high_high"]}}
    instrument = declared_section(InstrumentSetting)
    instrument["properties"]["values"] = {**levels, "description": instrument[
        "properties"]["values"]["description"]}
    instrument["properties"]["bits"] = {**levels, "description": instrument[
        "properties"]["bits"]["description"]}
    rule = {"anyOf": [{"type": "number"}, limit]}
    rules = {"type": ["object", "null"], "additionalProperties": False, "properties": {
        "high": rule, "high_high": rule, "low": rule, "low_low": rule,
        "rate_of_rise": rule, "instrument": instrument}}
    return {"type": ["object", "null"], "additionalProperties": rules,
            "description": description}


def _alarms() -> dict[str, Any]:
    """The station's ``alarms:`` section with its list of local actions."""
    action = declared_section(AlarmAction)
    action["properties"]["devices"] = {"type": "array", "items": _TEXT, "description":
                                       action["properties"]["devices"]["description"]}
    return declared_section(AlarmSettings, {"actions": _items(action)})


def _device(keys: tuple[str, ...], kind: DriverKind | None = None) -> dict[str, Any]:
    """A device entry of ``kind`` (None: of any kind) with ``keys``; the kind's own
    declaration of unit_id replaces the common one."""
    parts = _kind_parts()
    known = {key: parts[key] for key in keys if key in parts}
    known.update(_common())
    if kind is not None and kind.unit_id is not None:
        known["unit_id"] = setting_schema(kind.unit_id)
    known.update(declared_section(DevicePolling)["properties"])
    return keys_only(keys, **known)


def device_schema() -> dict[str, Any]:
    """A ``devices[]`` entry: the common keys, the device polling keys and the keys of
    its driver kind (``driver:``); without ``driver:`` (the kind may come from the
    profile) every kind's keys are allowed, as the loader's first pass allows them."""
    common = (*allowed_keys(Device), *allowed_keys(DevicePolling))
    branches = [{"if": {"required": ["driver"], "properties": {"driver": {"const": name}}},
                 "then": {"$ref": f"#/definitions/device-{name}"}} for name in KINDS]
    return {"type": "object", "properties": {"driver": {"enum": list(KINDS)}}, "allOf": [
        {"if": {"not": {"required": ["driver"]}},
         "then": {"$ref": "#/definitions/device-any"}}, *branches]}, {
        "device-any": _device((*common, *kind_keys())),
        **{f"device-{name}": _device((*common, *kind.keys), kind)
           for name, kind in KINDS.items()},
    }


def _link() -> dict[str, Any]:
    """A link: the TCP or serial declarations, chosen by ``type`` (any case)."""
    def link(cls: type, kind: str) -> dict[str, Any]:
        schema = declared_section(cls)
        schema["properties"] = {"type": {"enum": [kind, kind.upper(), kind.capitalize()]},
                                **schema["properties"]}
        schema["type"] = "object"
        schema["required"] = ["type", *(meta.key for name, meta in declared(cls).items()
                                        if default_of(cls, name) is MISSING)]
        return schema
    return {"type": "object", "required": ["type"], "if": {
        "properties": {"type": {"enum": ["serial", "SERIAL", "Serial"]}}},
        "then": link(SerialLink, "serial"), "else": link(TcpLink, "tcp")}


def _health() -> dict[str, Any]:
    health = declared_section(HealthConfig)
    health["properties"]["token"] = {"not": {}, "description": "not allowed: use "
                                     "token_env or token_file"}
    return health


def _mqtt() -> dict[str, Any]:
    """The settings of an MQTT uplink: the ``mqtt:`` section, or an ``uplinks:`` entry's
    MQTT keys."""
    tls = declared_section(TlsConfig)
    mqtt = declared_section(MqttConfig, {
        "tls": {"anyOf": [{"type": ["boolean", "null"]}, tls]}})
    mqtt["anyOf"] = [{"required": ["host"]}, {"required": ["brokers"]}]
    mqtt["type"] = "object"  # mqtt: needs at least host, or brokers
    address = {"type": "string", "pattern": r"^(\[[0-9A-Fa-f:.]+\]|[^\s/\[\]@:]+)(:[0-9]+)?$"}
    mqtt["properties"]["brokers"] = {
        "type": "array", "minItems": 1, "uniqueItems": True,
        "description": mqtt["properties"]["brokers"]["description"],
        "items": {"anyOf": [address, {
            "type": "object", "required": ["host"], "additionalProperties": False,
            "properties": {"host": mqtt["properties"]["host"],
                           "port": {"type": "integer", "minimum": 1, "maximum": 65535}}}]}}
    mqtt["properties"]["password"] = {"not": {}, "description": "not allowed: use "
                                      "password_env or password_file"}
    return mqtt


# The schema of an uplink kind's settings, where the declarations do not say it all.
def _hj212() -> dict[str, Any]:
    """An HJ 212 uplink's settings: its channels' items, and what it cannot do without."""
    channel = declared_section(Hj212Channel)
    channel["type"] = "object"
    channel["required"] = ["device", "channel", "code"]
    code = {"type": "object", "required": ["zh", "en", "unit", "versions"],
            "properties": {"zh": {"type": "string"}, "en": {"type": "string"},
                           "unit": {"type": "string"}, "decimals": {"type": "integer"},
                           "versions": {"type": "array", "minItems": 1,
                                        "items": {"enum": [2017, 2025]}}},
            "additionalProperties": False}
    settings = declared_section(Hj212Config, {
        "channels": {"type": "array", "minItems": 1, "items": channel},
        "codes": {"type": ["object", "null"], "additionalProperties": code}})
    settings["type"] = "object"
    settings["required"] = ["host", "port", "mn", "st", "channels"]
    return settings


def _sparkplug() -> dict[str, Any]:
    """A Sparkplug B uplink's settings: its ids, the broker as an MQTT uplink's, and the
    MQTT keys Sparkplug fixes, refused."""
    mqtt = _mqtt()
    own = declared_section(SparkplugConfig)["properties"]
    for key in ("topics", "qos", "max_samples_per_message", "max_message_bytes"):
        mqtt["properties"][key] = {"not": {}, "description": "not allowed: Sparkplug B "
                                   "fixes topics, QoS and one sample per DDATA"}
    properties = {key: own[key] for key in ("group_id", "edge_node_id")}
    properties.update(mqtt["properties"])
    properties["primary_host_id"] = own["primary_host_id"]
    return {"type": "object", "properties": properties, "additionalProperties": False,
            "required": ["group_id", "edge_node_id"], "anyOf": mqtt["anyOf"]}


_KIND_SETTINGS = {MqttConfig: _mqtt, Hj212Config: _hj212, SparkplugConfig: _sparkplug}


def _cased(word: str) -> list[str]:
    return list(dict.fromkeys((word, word.lower(), word.upper())))


def uplinks_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``uplinks:`` section and a definition per registered kind (config/
    uplink_kinds.py): ``kind`` picks the definition, absent the default kind's."""
    devices = {"type": ["array", "null"], "minItems": 1, "uniqueItems": True,
               "items": _TEXT, "description": declared(UplinkConfig)["devices"].expected()}
    definitions = {}
    branches = []
    for name, kind in UPLINK_KINDS.items():
        make = _KIND_SETTINGS.get(kind.settings_type)
        settings = make() if make else declared_section(kind.settings_type)
        settings["properties"] = {"kind": {"enum": _cased(name)}, "devices": devices,
                                  **settings["properties"]}
        definitions[f"uplink-{name}"] = settings
        chosen = {"required": ["kind"], "properties": {"kind": {"enum": _cased(name)}}}
        if name == DEFAULT_UPLINK_KIND:
            chosen = {"anyOf": [chosen, {"not": {"required": ["kind"]}}]}
        branches.append({"if": chosen, "then": {"$ref": f"#/definitions/uplink-{name}"}})
    kinds = [word for name in UPLINK_KINDS for word in _cased(name)]
    uplink = {"type": "object", "properties": {"kind": {
        "enum": kinds, "default": DEFAULT_UPLINK_KIND, "description": "the uplink's kind"}},
        "allOf": branches}
    return {"type": ["object", "null"], "additionalProperties": uplink,
            "propertyNames": {"pattern": "^[A-Za-z0-9_-]{1,32}$",
                              "not": {"const": "default"}}}, definitions


def station_schema() -> dict[str, Any]:
    """The whole schema: a station file, and under ``definitions.profile`` a profile file."""
    device, device_defs = device_schema()
    uplinks, uplink_defs = uplinks_schema()
    sections = {
        "station": declared_section(StationConfig),
        "links": {"type": "object", "additionalProperties": _link(), "minProperties": 1},
        "devices": {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/device"}},
        "polling": declared_section(PollingPolicy),
        "store": declared_section(StoreConfig),
        "mqtt": _mqtt(),
        "uplinks": uplinks,
        "health": {"anyOf": [{"type": "boolean"}, _health()]},
        "alarms": _alarms(),
    }
    profile = keys_only((*PROFILE_INFO_KEYS, *kind_keys()), **{
        **_kind_parts(), **declared_section(ProfileInfo)["properties"],
        **{key: schema for key, schema in _common().items() if key in PROFILE_INFO_KEYS}})
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": SCHEMA_ID,
        "title": "edge-agent station file",
        "description": "Generated by edge_agent/config/jsonschema.py; do not edit. "
                       "docs/configuration.md describes every setting.",
        "type": "object",
        "required": ["station", "links", "devices"],
        # the default uplink (mqtt:), or at least one named uplink
        "anyOf": [{"required": ["mqtt"]}, {"required": ["uplinks"], "properties": {
            "uplinks": {"type": "object", "minProperties": 1}}}],
        "additionalProperties": False,
        "properties": {key: sections[key] for key in TOP_KEYS},
        "definitions": {"device": device, **device_defs, **uplink_defs, "profile": profile},
    }


def render() -> str:
    """The schema as checked in: sorted keys would scatter sections, so insertion order."""
    return json.dumps(station_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the schema (or, with ``--check``, exit 1 when the checked-in copy is stale)."""
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in args:
        current = SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.exists() else ""
        if current != text:
            print(f"{SCHEMA_PATH} is stale: run python -m edge_agent.config.jsonschema")
            return 1
        return 0
    SCHEMA_PATH.parent.mkdir(parents=True, exist_ok=True)
    SCHEMA_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
