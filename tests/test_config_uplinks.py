"""The ``uplinks:`` section (issue 12 item 1): named MQTT uplinks beside ``mqtt:``.

Each named uplink is read exactly as ``mqtt:`` is (same defaults, ranges and messages, the
setting named ``uplinks.NAME.KEY``), plus what only the set of uplinks shows. The golden
cases (tests/config_cases/uplinks_*) hold the complete output of whole files; these tests
prove one rule each, on the typed result or on the file:line:setting of one issue.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from support.stationtext import one_gc

from edge_agent.cli import main
from edge_agent.config.errors import ConfigError, ConfigIssue
from edge_agent.config.jsonschema import SCHEMA_PATH
from edge_agent.config.loader import load_config, load_station
from edge_agent.config.schema import DEFAULT_UPLINK_NAME, MqttProtocol, Topics
from edge_agent.config.uplink_kinds import UPLINK_KINDS
from edge_agent.config.validate_uplinks import KIND_CHOICES

STATION = one_gc("{name: benzene, address: 0}", tail="""\
  - id: h2s-1
    link: plc-gw
    unit_id: 2
    interval_s: 5
    channels:
      - {name: h2s, address: 0}
""")
MQTT = "mqtt:\n  host: mqtt.city.example\n"
ENV = {"PROV_PASSWORD": "s3cret"}
AT = len((STATION + MQTT).splitlines())  # line k of the uplinks text is AT + k


def _file(tmp_path: Path, uplinks: str, mqtt: str = MQTT) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(STATION + mqtt + uplinks, encoding="utf-8")
    return path


def _issues(tmp_path: Path, uplinks: str, mqtt: str = MQTT) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as err:
        load_config(_file(tmp_path, uplinks, mqtt), env=ENV)
    return err.value.issues


def _one(tmp_path: Path, uplinks: str, mqtt: str = MQTT) -> tuple[int | None, str, str]:
    issues = _issues(tmp_path, uplinks, mqtt)
    assert len(issues) == 1, [str(issue) for issue in issues]
    return issues[0].line, issues[0].path, issues[0].message


def _line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(
        path.read_text(encoding="utf-8").splitlines(), 1) if text in line)


# --- valid forms ----------------------------------------------------------------------

def test_a_named_uplink_takes_every_mqtt_setting_with_the_same_defaults(tmp_path: Path) -> None:
    config = load_config(_file(tmp_path, """\
uplinks:
  provincial:
    devices: [gc-1]
    host: broker.prov.example
    tls: true
    protocol: "5"
    username: st01
    password_env: PROV_PASSWORD
    topics: {data: "prov/{station}/{device}"}
"""), env=ENV)
    default, provincial = config.every_uplink()
    assert default.name == DEFAULT_UPLINK_NAME and default.mqtt == config.mqtt
    assert (provincial.name, provincial.kind, provincial.devices) == ("provincial", "mqtt",
                                                                      ("gc-1",))
    mqtt = provincial.mqtt
    assert mqtt is not None
    assert (mqtt.host, mqtt.port, mqtt.protocol) == ("broker.prov.example", 8883,
                                                     MqttProtocol.V5)
    assert mqtt.password is not None and mqtt.password.value == "s3cret"
    assert mqtt.topics == Topics(data="prov/{station}/{device}")
    assert (mqtt.keepalive_s, mqtt.max_inflight, mqtt.live_window_s) == (30, 20, 30.0)
    assert provincial.carries("gc-1") and not provincial.carries("h2s-1")


def test_a_named_uplinks_default_client_id_names_the_station_and_the_uplink(
        tmp_path: Path) -> None:
    config = load_config(_file(tmp_path, "uplinks:\n  cloud_2:\n    host: a.example\n"),
                         env=ENV)
    assert [uplink.mqtt.client_id for uplink in config.every_uplink() if uplink.mqtt] == [
        "edge-agent-ST01", "edge-agent-ST01-cloud_2"]


def test_mqtt_may_be_left_out_when_uplinks_names_one(tmp_path: Path) -> None:
    config = load_config(_file(tmp_path, "uplinks:\n  provincial:\n    host: a.example\n",
                               mqtt=""), env=ENV)
    assert config.mqtt is None
    assert [uplink.name for uplink in config.every_uplink()] == ["provincial"]


@pytest.mark.parametrize("written", ["", "uplinks:\n", "uplinks: {}\n", "uplinks: null\n"])
def test_an_empty_or_absent_uplinks_section_leaves_the_one_default_uplink(
        tmp_path: Path, written: str) -> None:
    config = load_config(_file(tmp_path, written), env=ENV)
    assert config.uplinks == ()
    assert [uplink.name for uplink in config.every_uplink()] == [DEFAULT_UPLINK_NAME]


def test_kind_is_read_case_insensitively_and_devices_null_means_every_device(
        tmp_path: Path) -> None:
    config = load_config(_file(tmp_path, """\
uplinks:
  cloud:
    kind: MQTT
    devices: null
    host: a.example
"""), env=ENV)
    assert (config.uplinks[0].kind, config.uplinks[0].devices) == ("mqtt", None)


def test_a_name_of_32_characters_is_accepted_and_33_refused(tmp_path: Path) -> None:
    ok = "a" * 32
    assert load_config(_file(tmp_path, f"uplinks:\n  {ok}:\n    host: a.example\n"),
                       env=ENV).uplinks[0].name == ok
    line, path, message = _one(tmp_path, f"uplinks:\n  {ok}b:\n    host: a.example\n")
    assert (line, path) == (AT + 2, f"uplinks.{ok}b")
    assert "1 to 32" in message


def test_a_password_file_is_read_per_uplink(tmp_path: Path) -> None:
    (tmp_path / "prov.pw").write_text("from-file\n", encoding="utf-8")
    config = load_config(_file(tmp_path, """\
uplinks:
  provincial:
    host: a.example
    tls: true
    username: st01
    password_file: prov.pw
"""), env=ENV)
    mqtt = config.uplinks[0].mqtt
    assert mqtt is not None and mqtt.password is not None
    assert mqtt.password.value == "from-file"


# --- errors, each at its file, line and setting ---------------------------------------

def test_neither_mqtt_nor_an_uplink_is_one_error_saying_to_add_one(tmp_path: Path) -> None:
    line, path, message = _one(tmp_path, "uplinks: {}\n", mqtt="")
    assert (line, path) == (None, "mqtt")
    assert "or an uplinks: section naming at least one uplink" in message


def test_an_unknown_device_is_named_with_the_known_ones_and_the_close_one(
        tmp_path: Path) -> None:
    path = _file(tmp_path, "uplinks:\n  p:\n    devices: [gc-1, h2s1]\n    host: a.example\n")
    issue, = _issues(tmp_path, "uplinks:\n  p:\n    devices: [gc-1, h2s1]\n    host: a.example\n")
    assert str(issue) == (f"{path}:{AT + 3}: uplinks.p.devices[1]: there is no device 'h2s1' under "
                          "devices: (known: gc-1, h2s-1) (did you mean 'h2s-1'?)")


def test_a_device_listed_twice_is_an_error_at_the_second(tmp_path: Path) -> None:
    line, path, message = _one(tmp_path, """\
uplinks:
  p:
    devices:
      - gc-1
      - h2s-1
      - gc-1
    host: a.example
""")
    assert (line, path) == (AT + 6, "uplinks.p.devices[2]")
    assert message.startswith("'gc-1' is listed twice (also devices[0])")


def test_a_device_with_its_own_error_is_not_also_called_unknown(tmp_path: Path) -> None:
    text = STATION.replace("    unit_id: 2\n", "    unit_id: 999\n") + MQTT + \
        "uplinks:\n  p:\n    devices: [h2s-1]\n    host: a.example\n"
    (tmp_path / "station.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "station.yaml", env=ENV)
    assert [issue.path for issue in err.value.issues] == ["devices[1].unit_id"]


def test_an_uplink_called_default_is_refused(tmp_path: Path) -> None:
    line, path, message = _one(tmp_path, "uplinks:\n  default:\n    host: a.example\n")
    assert (line, path) == (AT + 2, "uplinks.default")
    assert "taken by the mqtt: section" in message


def test_a_name_given_twice_is_refused_by_the_yaml_reader(tmp_path: Path) -> None:
    line, path, message = _one(tmp_path, """\
uplinks:
  p:
    host: a.example
  p:
    host: b.example
""")
    assert (line, path) == (AT + 4, "uplinks.p")
    assert message == f"duplicate key 'p' (first at line {AT + 2}); keep only one"


def test_every_mqtt_message_names_the_uplinks_setting(tmp_path: Path) -> None:
    issues = _issues(tmp_path, """\
uplinks:
  provincial:
    host: a.example
    port: 99999
    qos: 0
    keepalive_s: 1
    password: secret
""")
    assert [(issue.line, issue.path) for issue in issues] == [
        (AT + 4, "uplinks.provincial.port"), (AT + 5, "uplinks.provincial.qos"),
        (AT + 6, "uplinks.provincial.keepalive_s"), (AT + 7, "uplinks.provincial.password")]
    assert issues[0].message == "expected an integer 1..65535, found 99999"
    assert issues[1].message.startswith("only QoS 1 is supported, found 0")


def test_an_uplinks_topic_templates_are_checked_as_mqtts_are(tmp_path: Path) -> None:
    """The status topic is one per station: {device} in it is refused, named per uplink."""
    line, path, message = _one(tmp_path, """\
uplinks:
  p:
    host: a.example
    topics:
      status: "p/{station}/{device}"
""")
    assert (line, path) == (AT + 5, "uplinks.p.topics.status")
    assert "cannot use {device}" in message


def test_an_unknown_kind_lists_the_registered_kinds(tmp_path: Path) -> None:
    line, path, message = _one(tmp_path, "uplinks:\n  p:\n    kind: amqp\n    host: a\n")
    assert (line, path, message) == (AT + 3, "uplinks.p.kind",
                                     "expected mqtt, hj212 or sparkplug, found 'amqp'")


def test_one_client_id_twice_on_one_broker_is_an_error(tmp_path: Path) -> None:
    line, path, message = _one(tmp_path, """\
uplinks:
  p:
    brokers: [other.example:1883, MQTT.City.Example:1883]
    client_id: edge-agent-ST01
""")
    assert (line, path) == (AT + 4, "uplinks.p.client_id")
    assert message.startswith("the mqtt: section (the default uplink) connects to "
                              "MQTT.City.Example:1883 with the same client id")


def test_one_client_id_on_two_different_brokers_is_fine(tmp_path: Path) -> None:
    config = load_config(_file(tmp_path, """\
uplinks:
  p:
    host: mqtt.city.example
    port: 1884
    client_id: edge-agent-ST01
"""), env=ENV)
    assert config.uplinks[0].mqtt is not None


@pytest.mark.parametrize(("written", "expected"), [
    ("    devices: gc-1\n", "expected a list of device ids"),
    ("    devices: []\n", "the list is empty"),
    ("    devices: [true]\n", "expected a device id such as gc-1, found true"),
])
def test_devices_must_be_a_list_of_ids(tmp_path: Path, written: str, expected: str) -> None:
    line, path, message = _one(tmp_path, "uplinks:\n  p:\n    host: a.example\n" + written)
    assert path.startswith("uplinks.p.devices") and line == AT + 4
    assert message.startswith(expected)


def test_an_uplinks_section_that_is_a_list_is_refused(tmp_path: Path) -> None:
    line, path, message = _one(tmp_path, "uplinks:\n  - host: a.example\n")
    assert (line, path) == (AT + 2, "uplinks")
    assert message.startswith("expected 'key: value' settings")


# --- warnings -------------------------------------------------------------------------

def _warnings(tmp_path: Path, uplinks: str) -> list[str]:
    loaded = load_station(_file(tmp_path, uplinks), env=ENV)
    return [f"{warning.line}: {warning.path}: {warning.message}" for warning in loaded.warnings]


def test_the_same_broker_and_topics_for_shared_devices_is_a_warning(tmp_path: Path) -> None:
    warnings = _warnings(tmp_path, "uplinks:\n  copy:\n    host: mqtt.city.example\n")
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{AT + 2}: uplinks.copy.topics: the mqtt: section (the default "
                                  "uplink) sends to the same broker")
    assert "arrives there twice" in warnings[0]


def test_the_same_broker_and_topics_for_other_devices_is_no_warning(tmp_path: Path) -> None:
    assert _warnings(tmp_path, """\
uplinks:
  a:
    devices: [gc-1]
    host: hub.example
  b:
    devices: [h2s-1]
    host: hub.example
""") == []


def test_tls_off_and_a_clear_password_are_warned_per_uplink(tmp_path: Path) -> None:
    warnings = _warnings(tmp_path, """\
uplinks:
  insecure:
    host: a.example
    tls: {insecure_skip_verify: true}
  plain:
    host: b.example
    username: st01
    password_env: PROV_PASSWORD
""")
    assert [warning.split(": ")[1] for warning in warnings] == [
        "uplinks.insecure.tls.insecure_skip_verify", "uplinks.plain.password_env"]
    assert "unencrypted to b.example" in warnings[1]


# --- the kind registry, the schema, check ----------------------------------------------

def test_the_kinds_an_uplink_may_name_are_the_registered_ones() -> None:
    assert {name: name for name in UPLINK_KINDS} == KIND_CHOICES
    assert all(hasattr(kind, "read") and kind.field for kind in UPLINK_KINDS.values())


def _schema_problems(uplinks: object, with_mqtt: bool = True) -> list[str]:
    data = yaml.safe_load(STATION + (MQTT if with_mqtt else ""))
    data["uplinks"] = uplinks
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    return [error.message for error in validator.iter_errors(data)]


def test_the_json_schema_checks_uplinks_as_the_loader_does() -> None:
    assert _schema_problems({"p": {"devices": ["gc-1"], "host": "a", "tls": True}}) == []
    assert _schema_problems({"p": {"host": "a"}}, with_mqtt=False) == []
    assert _schema_problems({"p": {"host": "a", "port": 99999}})
    assert _schema_problems({"p": {"host": "a", "colour": "red"}})
    assert _schema_problems({"p": {"kind": "amqp", "host": "a"}})
    assert _schema_problems({"p": {"kind": "hj212", "host": "a"}})  # no port, mn, channels
    assert _schema_problems({"default": {"host": "a"}})
    assert _schema_problems({"p q": {"host": "a"}})
    assert _schema_problems({"p": {"port": 1883}})  # neither host nor brokers
    assert _schema_problems({}, with_mqtt=False)  # no uplink at all


def test_check_prints_one_line_per_uplink(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(tmp_path, """\
uplinks:
  provincial:
    devices: [gc-1, h2s-1]
    brokers: [node-1.example, node-2.example:1884]
""")
    assert main(["check", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "  uplink default (mqtt): mqtt.city.example:1883; every device",
        "  uplink provincial (mqtt): node-1.example:1883, node-2.example:1884; "
        "devices gc-1, h2s-1"]


def test_check_prints_no_uplink_lines_for_a_file_with_only_mqtt(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(_file(tmp_path, ""))]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_the_worked_example_in_the_docs_loads(tmp_path: Path) -> None:
    """docs/configuration.md's "Several uplinks" example, below this file's devices."""
    docs = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text(
        encoding="utf-8")
    section = docs.split("## Several uplinks", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "cloud-password.txt").write_text("pw\n", encoding="utf-8")
    path = tmp_path / "station.yaml"
    path.write_text(STATION + example, encoding="utf-8")
    loaded = load_station(path, env={"PROVINCIAL_MQTT_PASSWORD": "pw"})
    assert loaded.warnings == ()
    assert [(uplink.name, uplink.devices) for uplink in loaded.config.every_uplink()] == [
        ("default", None), ("provincial", ("gc-1", "h2s-1")), ("operator-cloud", None)]


def test_only_the_first_20_unknown_ids_get_a_suggestion(tmp_path: Path) -> None:
    """A suggestion compares the id with every device (20 ms with 1000 of them): a file
    of thousands of unknown ids must not take minutes to check."""
    ids = ", ".join(f"gc-{n}x" for n in range(30))
    issues = _issues(tmp_path, f"uplinks:\n  a:\n    devices: [{ids}]\n    host: a.example\n"
                               f"  b:\n    devices: [{ids}]\n    host: b.example\n")
    assert len(issues) == 60
    assert sum("did you mean" in issue.message for issue in issues) == 20


def test_more_than_64_uplinks_are_refused(tmp_path: Path) -> None:
    many = "".join(f"  u{n}:\n    host: h{n}.example\n" for n in range(65))
    line, path, message = _one(tmp_path, "uplinks:\n" + many)
    assert (line, path) == (AT + 1, "uplinks")
    assert message.startswith("65 uplinks is more than the 64 allowed")
