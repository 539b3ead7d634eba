"""Settings declared once on their dataclass field (edge_agent/config/declare.py): the
section readers take keys, defaults and ranges from the declarations, so a default or a
range changed on the field changes what the loader accepts and says."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

import pytest
from edge_agent_drivers.modbus.config_acquisition import (
    CLOCK_KEYS,
    READ_KEYS,
    TRIGGER_KEYS,
    ZONE_KEYS,
)
from edge_agent_drivers.modbus.config_channels import CHANNEL_KEYS
from edge_agent_drivers.modbus.settings import (
    AddressRange,
    Channel,
    InstrumentClock,
    ModbusSettings,
    ReadLimits,
    Trigger,
)
from edge_agent_drivers.serialtext.config_record import CHANNEL_KEYS as TEXT_CHANNEL_KEYS
from edge_agent_drivers.serialtext.config_record import STATUS_KEYS, TIME_KEYS
from edge_agent_drivers.serialtext.config_text import TEXT_KEYS, read_text_settings
from edge_agent_drivers.serialtext.protocol.settings import (
    Checksum,
    Framing,
    FramingKind,
    RecordFormat,
    StatusField,
    TextChannel,
    TextMode,
    TextSettings,
    TimeField,
)

from edge_agent.config.declare import (
    allowed_keys,
    declared,
    default_of,
    filled,
    read_declared,
    setting,
)
from edge_agent.config.fields import Checker, Section
from edge_agent.config.jsonschema import declared_sections, station_schema
from edge_agent.config.schema import (
    Device,
    DevicePolling,
    HealthConfig,
    MqttConfig,
    PollingPolicy,
    Retention,
    SerialLink,
    SparkplugConfig,
    StationConfig,
    StoreConfig,
    TcpLink,
    TlsConfig,
    Topics,
    UplinkConfig,
)
from edge_agent.config.validate_devices import COMMON_KEYS
from edge_agent.config.yamlsource import parse_yaml_bytes

# Fields a declared class keeps without a key of their own: the station's sections are
# the file's top-level keys (the loader's TOP_KEYS), a link's name is its key under
# links:, a device's settings and polling are read by its kind and from its keys, a
# text block's address is the device's unit_id, a channel's enron follows from the
# device's enron: and the address.
UNDECLARED = {StationConfig: {"links", "devices", "store", "mqtt", "polling", "source",
                              "health", "uplinks", "alarms"},
              TcpLink: {"name"}, SerialLink: {"name"}, UplinkConfig: {"name"},
              Device: {"settings", "polling"},
              TextSettings: {"address"}, Channel: {"enron"},
              # the carried devices as Sparkplug devices, built by the reader, not a setting
              SparkplugConfig: {"node_devices"}}
DECLARED = declared_sections()


@dataclass(frozen=True)
class Pump:
    """A made-up section, to show a declaration drives the reader."""

    speed: int = setting("integer", 7, range=(1, 9))
    mode: str = setting("choice", "auto", choices={"auto": "auto", "hand": "hand"})
    label: str = setting("text", "p1", hint="a short name")


def _section(text: str) -> tuple[Checker, Section]:
    ck = Checker("pump.yaml")
    document = parse_yaml_bytes(text.encode(), "pump.yaml")
    return ck, Section(ck, document.root, "pump", 1, allowed_keys(Pump))


def test_a_declared_default_is_used_when_the_key_is_absent() -> None:
    ck, sec = _section("label: x\n")
    assert read_declared(sec, Pump, "speed") == 7
    assert read_declared(sec, Pump, "mode") == "auto"
    assert ck.issues == []


def test_the_declared_range_and_choices_are_checked_and_said() -> None:
    ck, sec = _section("speed: 12\nmode: Manual\nlabel: true\n")
    for name in ("speed", "mode", "label"):
        assert read_declared(sec, Pump, name) is None
    messages = [issue.message for issue in ck.issues]
    assert messages[0] == "expected an integer 1..9, found 12"
    assert messages[1].startswith("expected auto or hand, found 'Manual'")
    assert messages[2].startswith("expected a short name, found true")


def test_an_undeclared_key_is_refused_with_the_declared_ones_listed() -> None:
    ck, _ = _section("colour: red\n")
    assert "known settings here: speed, mode, label" in ck.issues[0].message


def test_filled_puts_the_declared_default_where_a_value_was_wrong() -> None:
    assert Pump(**filled(Pump, {"speed": None, "mode": "hand", "label": None})) == \
        Pump(mode="hand")


@pytest.mark.parametrize("cls", DECLARED, ids=lambda cls: cls.__name__)
def test_every_field_of_a_declared_section_is_declared(cls: type) -> None:
    settings = [item.name for item in fields(cls) if item.name not in UNDECLARED.get(cls, ())]
    assert list(declared(cls)) == settings


def test_the_walk_from_the_schemas_roots_reaches_every_declared_section() -> None:
    assert {StoreConfig, Retention, PollingPolicy, HealthConfig, MqttConfig, TlsConfig,
            Topics, TcpLink, SerialLink, DevicePolling, Framing, Checksum, ReadLimits,
            AddressRange, Trigger, InstrumentClock, TextChannel, TimeField, StatusField,
            ModbusSettings, RecordFormat, TextSettings, Channel, Device} <= set(DECLARED)


@pytest.mark.parametrize("cls", DECLARED, ids=lambda cls: cls.__name__)
def test_the_json_schema_knows_every_key_of_every_declared_section(cls: type) -> None:
    text = json.dumps(station_schema())
    for key in allowed_keys(cls):
        assert f'"{key}":' in text, f"{cls.__name__}.{key}"


def test_the_secret_is_written_as_either_of_two_keys() -> None:
    keys = allowed_keys(MqttConfig)
    assert keys[keys.index("username") + 1:keys.index("tls")] == ("password_env",
                                                                  "password_file")


def test_defaults_come_from_the_dataclass() -> None:
    assert default_of(MqttConfig, "max_message_bytes") == MqttConfig(host="h").max_message_bytes
    assert default_of(StoreConfig, "retention") == Retention()


def test_the_station_section_and_a_devices_common_keys_are_declared() -> None:
    assert allowed_keys(StationConfig) == ("id",)
    assert COMMON_KEYS == allowed_keys(Device) == (
        "id", "link", "unit_id", "interval_s", "driver", "profile", "alarms")
    assert default_of(Device, "driver") == "modbus"
    assert [name for name in declared(Device)] == [
        item.name for item in fields(Device) if item.name not in ("settings", "polling")]


def test_a_choice_known_only_at_run_time_is_given_to_the_reader() -> None:
    ck, sec = _section("mode: snmp\n")
    assert read_declared(sec, Pump, "mode", choices={"snmp": "snmp"}) == "snmp"
    assert ck.issues == []


def test_a_channels_keys_are_its_declared_fields_and_two_more() -> None:
    assert set(CHANNEL_KEYS) - set(allowed_keys(Channel)) == {"number", "enabled"}
    assert [name for name in declared(Channel)] == [
        item.name for item in fields(Channel) if item.name != "enron"]  # enron: the device's
    assert declared(Channel)["data_type"].key == "type"
    assert default_of(Channel, "length") == 1


def test_read_trigger_and_clock_keys_come_from_their_declarations() -> None:
    assert READ_KEYS == ("max_registers", "max_bits", "max_gap", "forbidden")
    assert ZONE_KEYS == ("register", "first", "last")
    assert TRIGGER_KEYS == ("kind", "channel", "clear_flag")
    assert CLOCK_KEYS == ("format", "channels", "utc_offset")  # utc_offset_min, in minutes
    assert default_of(ReadLimits, "max_registers") == ReadLimits().max_registers == 125


def test_a_text_records_keys_come_from_their_declarations() -> None:
    assert TEXT_CHANNEL_KEYS == ("name", "field", "group", "scale", "offset", "unit",
                                 "valid_range", "sentinels")  # at: written as field or group
    assert TIME_KEYS == ("field", "group", "format", "utc_offset")
    assert STATUS_KEYS == ("field", "group", "values", "otherwise", "channels")


def test_a_modbus_devices_keys_are_its_settings_and_the_channel_defaults() -> None:
    from edge_agent_drivers.modbus.reader import MODBUS_KEYS
    assert MODBUS_KEYS == allowed_keys(ModbusSettings) == (
        "channels", "word_order", "enron", "read", "trigger", "clock", "stream_channel")
    assert default_of(ModbusSettings, "word_order") == default_of(Channel, "word_order")


def test_a_text_blocks_keys_are_its_declared_settings_with_the_records_inline() -> None:
    assert TEXT_KEYS == allowed_keys(TextSettings) == (
        "mode", "request", "frame_request", "framing", "checksum", "accept", "delimiter",
        "pattern", "field_count", "time", "status", "channels", "example")
    assert declared(TextSettings)["record"].keys == allowed_keys(RecordFormat)
    assert "address" not in declared(TextSettings)  # the device's unit_id, not written here


def _text_block(text: str) -> tuple[Checker, Section]:
    ck = Checker("text.yaml")
    document = parse_yaml_bytes(text.encode(), "text.yaml")
    return ck, Section(ck, document.root, "text", 1, TEXT_KEYS)


def test_a_text_block_takes_defaults_and_ranges_from_its_declarations() -> None:
    ck, block = _text_block("request: RD<CR>\ndelimiter: ','\n"
                            "channels: [{name: a, field: 1}]\nexample: 'x,1<CR>'\n")
    settings = read_text_settings(block, None)
    assert ck.issues == []
    assert settings is not None
    assert settings.mode is default_of(TextSettings, "mode") is TextMode.REQUEST
    assert settings.frame_request is default_of(TextSettings, "frame_request") is False
    assert settings.example == b"x,1\r"
    ck, block = _text_block("mode: listen\nrequest: RD\nfield_count: 1001\n"
                            "channels: [{name: a, field: 1}]\n")
    assert read_text_settings(block, None) is None
    messages = [issue.message for issue in ck.issues]
    assert messages[0].startswith("expected request or stream, found 'listen'")
    assert "expected an integer 1..1000, found 1001" in messages


def test_an_stx_etx_frames_markers_are_its_types_own() -> None:
    assert FramingKind.STX_ETX.markers == (b"\x02", b"\x03")
    assert FramingKind.LINE.markers == (default_of(Framing, "start"), default_of(Framing, "end"))
    ck, block = _text_block("request: RD\nframing: stx-etx\ndelimiter: ','\n"
                            "channels: [{name: a, field: 1}]\n")
    settings = read_text_settings(block, None)
    assert settings is not None and (settings.framing.start, settings.framing.end) == \
        FramingKind.STX_ETX.markers


def test_a_profile_may_write_its_own_settings_and_the_layered_device_settings() -> None:
    from edge_agent.config.declare import layered_keys
    from edge_agent.config.profiles import PROFILE_INFO_KEYS, ProfileInfo
    assert layered_keys(Device) == ("interval_s", "driver", "alarms")
    assert PROFILE_INFO_KEYS == (*allowed_keys(ProfileInfo), "interval_s", "driver",
                                 "alarms") == (
        "profile", "description", "manufacturer", "model", "interval_s", "driver", "alarms")


def test_per_kind_and_per_item_settings_are_declared_where_the_reader_and_schema_look() -> None:
    from edge_agent_drivers.modbus import config_channels
    from edge_agent_drivers.modbus.config_quality import RULE_KEYS
    from edge_agent_drivers.modbus.reader import UNIT_ID
    from edge_agent_drivers.modbus.settings import QualityRule, RegisterKind
    from edge_agent_drivers.registry import KINDS
    from edge_agent_drivers.serialtext.config_text import ADDRESS

    definitions = station_schema()["definitions"]
    assert KINDS["modbus"].unit_id is UNIT_ID and KINDS["serial-text"].unit_id is ADDRESS
    assert definitions["device-modbus"]["properties"]["unit_id"]["maximum"] == UNIT_ID.hi == 255
    assert definitions["device-serial-text"]["properties"]["unit_id"]["maximum"] == 65535
    channel = definitions["device-modbus"]["properties"]["channels"]["items"]["properties"]
    assert channel["number"]["maximum"] == config_channels.NUMBER.hi == 400001 + 65535
    assert channel["enabled"]["default"] is True
    assert RULE_KEYS == allowed_keys(QualityRule) == ("quality", "reason", "channels")
    assert default_of(AddressRange, "register") is RegisterKind.HOLDING
    ck = Checker("zone.yaml")
    zone = Section(ck, parse_yaml_bytes(b"first: 3\n", "zone.yaml").root, "z", 1, ZONE_KEYS)
    assert read_declared(zone, AddressRange, "register") is RegisterKind.HOLDING
