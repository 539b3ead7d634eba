"""Alarm settings in the station file and in profiles: read into typed rules, and every
mistake reported with its file, line and setting (docs/alarms.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.alarms.rules import InstrumentRule, LimitRule, OnDelay, RuleKind
from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config
from edge_agent.config.schema import StationConfig

HEAD = """\
station: {id: PARK-07}
links:
  rs485-1: {type: serial, port: /dev/ttyUSB0}
  io-net: {type: tcp, host: 192.168.10.40}
  txt: {type: tcp, host: 192.168.10.41, protocol: text}
mqtt: {host: 127.0.0.1}
devices:
  - id: h2s-1
    link: rs485-1
    unit_id: 1
    profile: toxic-gas-detector
"""


def load(tmp_path: Path, text: str, name: str = "station.yaml") -> StationConfig:
    path = tmp_path / name
    path.write_text(HEAD + text)
    return load_config(path, for_agent=False)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return [str(issue).replace(str(tmp_path) + "/", "") for issue in caught.value.issues]


def test_limits_with_deadband_and_on_delay_in_samples_and_time(tmp_path: Path) -> None:
    config = load(tmp_path, """\
    alarms:
      gas:
        high: {limit: 10, deadband: 1, on_delay: 2}
        high_high: 20
        rate_of_rise: {limit: 5, on_delay: 1.5m}
""")
    rules = {one.channel: one for one in config.devices[0].alarms}
    assert rules["gas"].limits == (
        LimitRule(RuleKind.HIGH, 10, 1, OnDelay(2)),
        LimitRule(RuleKind.HIGH_HIGH, 20),
        LimitRule(RuleKind.RATE_OF_RISE, 5, 0, OnDelay(1, 90.0)))
    assert config.alarms is None and config.has_alarms()


def test_the_profile_maps_the_detectors_alarm_register(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    (rules,) = config.devices[0].alarms
    assert rules.channel == "alarm_level"
    assert rules.instrument == InstrumentRule(values=((1, 1), (2, 2)), reports="gas")


def test_the_station_replaces_a_profiles_rules_per_channel(tmp_path: Path) -> None:
    config = load(tmp_path, """\
    alarms:
      alarm_level: null
      gas: {low: 0.5}
""")
    assert [(one.channel, one.limits[0].kind) for one in config.devices[0].alarms] == [
        ("gas", RuleKind.LOW)]


def test_no_alarms_anywhere_means_the_station_has_none(tmp_path: Path) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text(HEAD.replace("profile: toxic-gas-detector",
                                 "profile: generic-gas-detector"))
    assert not load_config(path, for_agent=False).has_alarms()


def test_every_mistake_in_rules_names_file_line_and_setting(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
    alarms:
      gas:
        high: {limit: 10, deadband: -1, on_delay: 2h}
        hihg: 3
      h2s: {high: 3}
      alarm_level:
        instrument: {values: {one: high, 2: hi}, channel: co}
""")
    assert found == [
        "station.yaml:14: devices[0].alarms.gas.high.deadband: expected a number >= 0, "
        "found -1",
        "station.yaml:14: devices[0].alarms.gas.high.on_delay: expected a number of "
        "consecutive samples such as 3, or a time such as 30s or 2m, found '2h'",
        "station.yaml:15: devices[0].alarms.gas.hihg: unknown setting (did you mean "
        "'high'?)",
        "station.yaml:16: devices[0].alarms.h2s: 'h2s' is not a channel of this device "
        "(known: state, gas, alarm_level)",
        "station.yaml:18: devices[0].alarms.alarm_level.instrument.values.one: expected a "
        "whole number, found 'one'",
        "station.yaml:18: devices[0].alarms.alarm_level.instrument.values.2: expected 1 or "
        "high (alarm level 1), 2 or high_high (alarm level 2), found 'hi'",
        "station.yaml:18: devices[0].alarms.alarm_level.instrument.channel: 'co' is not a "
        "channel of this device (known: state, gas, alarm_level)",
    ]


def test_alarms_written_as_a_list_is_refused_with_the_shape_expected(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
    alarms: [gas]
""")
    assert found == ["station.yaml:12: devices[0].alarms: expected channel names, each with "
                     "its alarm rules ('h2s: {high: 10}'), found a list ('- ' items)"]


def test_high_high_must_be_above_high_and_low_below_high(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
    alarms:
      gas: {high: 10, high_high: 5, low: 12}
""")
    assert found == ["station.yaml:13: devices[0].alarms.gas.high_high: the high_high "
                     "limit (5) must be above the high limit (10)"]


def test_a_rule_in_a_profile_is_reported_in_the_profiles_file(tmp_path: Path) -> None:
    (tmp_path / "my-detector.yaml").write_text("""\
profile: my-detector
interval_s: 2
channels:
  - {name: gas, address: 0}
alarms:
  gas: {high: ten}
""")
    path = tmp_path / "station.yaml"
    path.write_text(HEAD.replace("toxic-gas-detector", "./my-detector.yaml"))
    with pytest.raises(ConfigError) as caught:
        load_config(path, for_agent=False)
    assert [str(issue).replace(str(tmp_path) + "/", "") for issue in caught.value.issues] == [
        "my-detector.yaml:6: alarms.gas.high: expected a limit such as 10, or "
        "'{limit: 10, deadband: 1, on_delay: 3}', found 'ten'"]


def test_local_actions_are_read_and_checked(tmp_path: Path) -> None:
    config = load(tmp_path, """\
alarms:
  actions:
    - {name: beacon, link: io-net, unit_id: 1, coil: 0}
    - {name: siren, link: io-net, unit_id: 1, register: 7, on_value: 2, min_level: 2,
       unconfirmed: false, devices: [h2s-1]}
""")
    assert config.alarms is not None and config.alarms.communication
    beacon, siren = config.alarms.actions
    assert (beacon.coil, beacon.register, beacon.on_value, beacon.retries) == (0, None, 1, 3)
    assert (siren.register, siren.on_value, siren.devices) == (7, 2, ("h2s-1",))
    assert siren.matches("h2s-1", 2, True) and not siren.matches("h2s-1", 2, False)
    assert not siren.matches("h2s-1", 1, True) and beacon.matches("other", 1, False)


def test_mistakes_in_actions_name_file_line_and_setting(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
alarms:
  communication: maybe
  actions:
    - {name: beacon, link: io-net, unit_id: 1}
    - {name: siren, link: nowhere, unit_id: 1, coil: 1, register: 2}
    - {name: horn, link: io-net, unit_id: 1, coil: 2, devices: [h2s-9]}
    - {name: lamp, link: txt, unit_id: 1, coil: 3}
    - {name: beacon, link: io-net, unit_id: 1, coil: 4}
""")
    assert found == [
        "station.yaml:13: alarms.communication: expected true or false, found 'maybe'",
        "station.yaml:15: alarms.actions[0].coil: required setting is missing (a coil "
        "address, or register: a holding register address)",
        "station.yaml:16: alarms.actions[1].link: 'nowhere' is not defined (known: "
        "rs485-1, io-net, txt)",
        "station.yaml:16: alarms.actions[1].register: give coil or register, not both",
        "station.yaml:17: alarms.actions[2].devices: 'h2s-9' is not a device of this "
        "station (known: h2s-1)",
        "station.yaml:18: alarms.actions[3].link: 'txt' speaks text; an output needs a "
        "Modbus link",
        "station.yaml:19: alarms.actions[4].name: the name 'beacon' is already used by "
        "another output",
    ]


DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.parametrize("page", ["alarms.md", "alarms.zh.md"])
def test_the_worked_chemical_park_example_passes_check(tmp_path: Path, page: str) -> None:
    """The station file in the docs' worked example is accepted as it is written."""
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = [block.split("\n", 1)[1] for block in text.split("```yaml")[1:]]
    (example,) = [block.split("```")[0] for block in blocks if block.startswith("station:")]
    path = tmp_path / "park.yaml"
    path.write_text(example, encoding="utf-8")
    config = load_config(path, for_agent=False)
    rules = {device.id: {one.channel for one in device.alarms} for device in config.devices}
    assert rules == {"h2s-1": {"alarm_level", "gas"}, "cl2-1": {"alarm_level", "gas"},
                     "gc-1": {"benzene", "nmhc"}}
    assert config.alarms is not None
    assert [action.name for action in config.alarms.actions] == ["beacon", "siren"]
