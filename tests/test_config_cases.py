"""The station-file loader, proven by a table of case folders plus focused unit tests.

Each folder in ``tests/config_cases/`` holds a ``station.yaml`` (and any files it names),
``expected.txt`` and ``expected.zh.txt`` (the same in Simplified Chinese, docs/i18n.md):
the complete output, every issue on its own line, with ``{file}`` standing for the station
file's path and ``{dir}`` for the case folder. A case named
after a mistake proves that exact mistake gets that exact message, and that no other
issue is added or lost. Files whose bytes an editor would "fix" (BOM, UTF-16, GBK, tabs)
are written by ``config_cases/make_binary_cases.py``.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
from edge_agent_drivers.modbus.settings import DataType, RegisterKind, WordOrder
from support.stationtext import one_gc

from edge_agent import i18n
from edge_agent.cli import main, ok_line, uplink_lines
from edge_agent.config.errors import ConfigError, ConfigIssue
from edge_agent.config.loader import load_config, load_station
from edge_agent.config.schema import (
    MqttProtocol,
    Parity,
    Retention,
    StationConfig,
    Synchronous,
    Topics,
)
from edge_agent.config.yamlsource import dump_yaml, parse_yaml_bytes

CASES = Path(__file__).parent / "config_cases"
CASE_ENV = {"EDGE_AGENT_MQTT_PASSWORD": "x"}
MINIMAL = one_gc("{name: benzene, address: 0}")


def _case_dirs() -> list[Path]:
    return sorted(path.parent for path in CASES.glob("*/expected.txt"))


def check_output(path: Path, env: dict[str, str]) -> str:
    """What ``edge-agent check`` reports: every issue, or the warnings and one OK line."""
    try:
        loaded = load_station(str(path), env=env)
    except ConfigError as err:
        return str(err)
    warnings = "".join(i18n._("warning: {warning}").format(warning=warning) + "\n"
                       for warning in loaded.warnings)
    return "\n".join([warnings + ok_line(path, loaded.config), *uplink_lines(loaded.config)])


def _expected(case: Path, name: str = "expected.txt") -> str:
    expected = (case / name).read_text(encoding="utf-8").rstrip("\n")
    station = case / "station.yaml"
    return expected.replace("{file}", str(station)).replace("{dir}", str(case.absolute()))


@pytest.mark.parametrize("case", _case_dirs(), ids=lambda path: path.name)
def test_config_case_reports_exactly_the_expected_issues(case: Path) -> None:
    assert check_output(case / "station.yaml", CASE_ENV) == _expected(case)


@pytest.mark.parametrize("case", _case_dirs(), ids=lambda path: path.name)
def test_config_case_reports_the_same_issues_in_chinese(case: Path) -> None:
    i18n.use("zh")
    assert check_output(case / "station.yaml", CASE_ENV) == _expected(case, "expected.zh.txt")


def _check_command(case: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """What ``edge-agent [argv] check STATION`` prints, stdout after stderr, without the
    count of problems that ends a failed check."""
    status = main([*argv, "check", str(case / "station.yaml")])
    out, err = capsys.readouterr()
    lines = err.rstrip("\n").split("\n") if err else []
    if status != 0:
        assert status == 2 and lines.pop().endswith(("nothing was started", "未启动任何内容"))
    return "\n".join([*lines, *out.rstrip("\n").split("\n")]).strip("\n")


@pytest.mark.parametrize("case", _case_dirs(), ids=lambda path: path.name)
def test_check_speaks_chinese_from_lang_and_from_the_option(
    case: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``LANG=zh_CN.UTF-8 edge-agent check`` and ``edge-agent --lang zh check`` (with an
    English LANG, which the option overrides) both print the Chinese golden output."""
    for name, value in CASE_ENV.items():
        monkeypatch.setenv(name, value)
    for variable in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(variable, raising=False)
    expected = _expected(case, "expected.zh.txt")
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    assert _check_command(case, [], capsys) == expected
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    assert _check_command(case, ["--lang", "zh"], capsys) == expected
    assert _check_command(case, [], capsys) == _expected(case)


def test_case_table_covers_at_least_25_cases() -> None:
    assert len(_case_dirs()) >= 25


def _write(tmp_path: Path, text: str, name: str = "station.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _with_mqtt(extra: str) -> str:
    """MINIMAL with more lines under ``mqtt:`` (each indented two spaces)."""
    return MINIMAL + "".join(f"  {line}\n" for line in extra.strip("\n").split("\n"))


def test_defaults_applied_to_a_minimal_file(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL), env={})
    link = config.links["plc-gw"]
    assert (link.port, link.timeout_ms, link.connect_pause_ms, link.request_gap_ms) == (
        502,
        1000,
        0,
        0,
    )
    channel = config.devices[0].settings.channels[0]
    assert channel.register is RegisterKind.HOLDING
    assert channel.data_type is DataType.UINT16
    assert channel.word_order is WordOrder.ABCD
    assert (channel.scale, channel.offset, channel.unit) == (1.0, 0.0, "")
    assert config.devices[0].driver == "modbus"
    assert config.store.path == tmp_path / "outbox.sqlite3"
    assert config.store.synchronous is Synchronous.FULL
    assert config.store.retention == Retention()
    mqtt = config.mqtt
    assert (mqtt.port, mqtt.client_id, mqtt.protocol) == (1883, "edge-agent-ST01", "3.1.1")
    assert (mqtt.username, mqtt.password, mqtt.tls, mqtt.qos) == (None, None, None, 1)
    assert mqtt.topics == Topics()
    assert config.source == tmp_path / "station.yaml"


def test_serial_link_defaults_and_parity_words(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "  plc-gw:\n    type: tcp\n    host: 192.168.1.10\n",
        "  plc-gw:\n    type: serial\n    port: /dev/ttyUSB0\n    parity: Even\n",
    )
    link = load_config(_write(tmp_path, text), env={}).links["plc-gw"]
    assert (link.port, link.baudrate, link.bytesize, link.stopbits) == ("/dev/ttyUSB0", 9600, 8, 1)
    assert link.parity is Parity.EVEN
    assert (link.timeout_ms, link.request_gap_ms) == (1000, 10)


def test_device_word_order_applies_to_channels_without_their_own(tmp_path: Path) -> None:
    text = MINIMAL.replace("    interval_s: 60\n", "    interval_s: 60\n    word_order: CDAB\n")
    text = text.replace(
        "      - {name: benzene, address: 0}\n",
        "      - {name: benzene, address: 0, type: float32}\n"
        "      - {name: toluene, address: 2, type: float32, word_order: ABCD}\n",
    )
    channels = load_config(_write(tmp_path, text), env={}).devices[0].settings.channels
    assert [c.word_order for c in channels] == [WordOrder.CDAB, WordOrder.ABCD]


def test_yaml_1_1_words_and_leading_zeros_stay_text(tmp_path: Path) -> None:
    text = MINIMAL.replace("id: ST01", "id: 0042").replace("id: gc-1", "id: off")
    text = text.replace("{name: benzene, address: 0}", "{name: no, address: 0, unit: NO}")
    config = load_config(_write(tmp_path, text), env={})
    assert config.station_id == "0042"
    assert config.devices[0].id == "off"
    channel = config.devices[0].settings.channels[0]
    assert (channel.name, channel.unit) == ("no", "NO")


def test_relative_store_path_is_next_to_the_config_without_state_directory(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, MINIMAL + "store:\n  path: data/outbox.db\n")
    assert load_config(path, env={}).store.path == tmp_path / "data" / "outbox.db"


def test_relative_store_path_is_under_state_directory_when_systemd_sets_it(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, MINIMAL + "store:\n  path: data/outbox.db\n")
    env = {"STATE_DIRECTORY": "/var/lib/edge-agent:/var/lib/other"}
    assert load_config(path, env=env).store.path == Path("/var/lib/edge-agent/data/outbox.db")
    default = load_config(_write(tmp_path, MINIMAL, "plain.yaml"), env=env).store.path
    assert default == Path("/var/lib/edge-agent/outbox.sqlite3")


def test_absolute_store_path_is_kept(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + "store:\n  path: /srv/outbox.sqlite3\n")
    env = {"STATE_DIRECTORY": "/var/lib/edge-agent"}
    assert load_config(path, env=env).store.path == Path("/srv/outbox.sqlite3")


def test_tls_and_password_files_are_under_configuration_directory(tmp_path: Path) -> None:
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (config_dir / "mqtt.pass").write_text("from-config-dir\n")
    extra = "username: st01\npassword_file: mqtt.pass\ntls:\n  ca_file: ca.pem"
    path = _write(tmp_path, _with_mqtt(extra))
    config = load_config(path, env={"CONFIGURATION_DIRECTORY": str(config_dir)})
    assert config.mqtt.tls is not None and config.mqtt.tls.ca_file == config_dir / "ca.pem"
    assert config.mqtt.password is not None
    assert config.mqtt.password.value == "from-config-dir"
    assert config.mqtt.port == 8883  # TLS without a port: the MQTT-over-TLS port


def _assert_secret_hidden(config: StationConfig, secret: str) -> None:
    assert config.mqtt.password is not None and config.mqtt.password.value == secret
    for text in (repr(config), str(config), repr(config.mqtt), str(config.mqtt.password)):
        assert secret not in text


def test_password_from_env_is_read_and_never_printed(tmp_path: Path) -> None:
    path = _write(tmp_path, _with_mqtt("username: st01\npassword_env: BROKER_PW"))
    config = load_config(path, env={"BROKER_PW": "pa55-w0rd-from-env"})
    _assert_secret_hidden(config, "pa55-w0rd-from-env")


def test_password_from_file_loses_one_trailing_newline_and_is_never_printed(
    tmp_path: Path,
) -> None:
    (tmp_path / "pw.txt").write_bytes(b"pa55 w0rd \r\n")
    path = _write(tmp_path, _with_mqtt("username: st01\npassword_file: pw.txt"))
    _assert_secret_hidden(load_config(path, env={}), "pa55 w0rd ")


def test_plain_password_is_rejected_without_repeating_it(tmp_path: Path) -> None:
    path = _write(tmp_path, _with_mqtt("username: st01\npassword: hunter2-secret"))
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert "password_env" in str(caught.value)
    assert "hunter2-secret" not in str(caught.value)


def test_mqtt_protocol_5_written_as_number_or_text(tmp_path: Path) -> None:
    for written in ("5", "5.0", '"5"'):
        path = _write(tmp_path, _with_mqtt(f"protocol: {written}"))
        assert load_config(path, env={}).mqtt.protocol is MqttProtocol.V5


def test_a_directory_instead_of_a_file_is_an_issue_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, env={})
    assert str(caught.value) == f"{tmp_path}: this is a directory, not a configuration file"


def test_issue_text_omits_unknown_line_and_empty_path() -> None:
    assert str(ConfigIssue("s.yaml", 3, "mqtt.port", "bad")) == "s.yaml:3: mqtt.port: bad"
    assert str(ConfigIssue("s.yaml", None, "mqtt", "missing")) == "s.yaml: mqtt: missing"
    assert str(ConfigIssue("s.yaml", 7, "", "tab")) == "s.yaml:7: tab"


def test_config_error_lists_issues_by_line_and_survives_pickling() -> None:
    issues = [
        ConfigIssue("s.yaml", 9, "b", "later"),
        ConfigIssue("s.yaml", None, "a", "no line"),
        ConfigIssue("s.yaml", 2, "c", "earlier"),
    ]
    err = ConfigError(issues)
    assert str(err) == "s.yaml: a: no line\ns.yaml:2: c: earlier\ns.yaml:9: b: later"
    assert str(pickle.loads(pickle.dumps(err))) == str(err)


def test_dump_yaml_output_reads_back_the_same(tmp_path: Path) -> None:
    data = {"id": "0042", "flag": "no", "order": WordOrder.CDAB, "path": tmp_path, "n": (1, 2.5)}
    text = dump_yaml(data)
    root = parse_yaml_bytes(text.encode(), "dumped").root
    assert root is not None
    values = {entry.key: entry.value for entry in root.entries}
    assert [values[key].value for key in ("id", "flag", "order", "path")] == [
        "0042",
        "no",
        "CDAB",
        str(tmp_path),
    ]
    assert list(values) == ["id", "flag", "order", "path", "n"]  # order kept, not sorted


ODD_VALUES = ("", "true", "[1, 2]", "{a: 1}", "-1", "1e400", "*x")
_SETTING = re.compile(r"^(\s*(?:- )?[\w-]+:)(?!\S)")
EVERY_SECTION = """\
station:
  id: ST01
links:
  gc-net: {type: tcp, host: 192.168.1.10, port: 502, timeout_ms: 1000}
  rs485-1:
    type: serial
    port: /dev/ttyUSB0
    parity: E
devices:
  - id: gc-1
    link: gc-net
    unit_id: 1
    interval_s: 60
    word_order: CDAB
    channels:
      - {name: benzene, address: 0, type: float32, unit: mg/m3}
  - id: h2s-1
    link: rs485-1
    unit_id: 2
    interval_s: 5
    channels:
      - name: h2s
        address: 0
        register: input
        type: int16
        scale: 0.1
polling:
  retries: 1
  backoff_max_s: 60
store:
  path: outbox.sqlite3
  retention:
    max_bytes: 2GiB
    max_age_s: 30d
mqtt:
  host: broker.local
  tls: true
  username: st01
  password_env: EDGE_AGENT_MQTT_PASSWORD
  topics:
    data: park/{station}/{device}/data
  reconnect_max_s: 60
health:
  host: 127.0.0.1
  port: 9108
"""


@pytest.mark.sweep
def test_any_single_line_edit_gives_issues_never_a_traceback(tmp_path: Path) -> None:
    """Delete each line, or give each setting an odd value: a config or a ConfigError only."""
    lines = EVERY_SECTION.split("\n")
    variants = [lines[:i] + lines[i + 1 :] for i in range(len(lines))]
    for i, line in enumerate(lines):
        if found := _SETTING.match(line):
            variants += [lines[:i] + [f"{found[1]} {odd}"] + lines[i + 1 :] for odd in ODD_VALUES]
    path = tmp_path / "station.yaml"
    load_config(_write(tmp_path, EVERY_SECTION), env=CASE_ENV)  # the unedited text is valid
    for variant in variants:
        path.write_text("\n".join(variant), encoding="utf-8")
        try:
            load_config(path, env=CASE_ENV)
        except ConfigError as err:
            assert err.issues and all(issue.message for issue in err.issues)
