"""``kind: hj212`` uplinks in the station file: the defaults (HJ 212-2017 Table 1's 10 s × 3
for 4G), the SM4 key from the secrets, eight platforms on one station, the errors the
golden cases do not show (a code of the other version, a key or password of the wrong
shape, never echoed), and ``edge-agent run`` refusing such a station before it opens
anything while ``check`` accepts it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.stationtext import HEAD_FLOW, one_gc

from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config
from edge_agent.hj212.packet import Version
from edge_agent.hj212.session_types import session_settings
from edge_agent.hj212.sm4 import key_from_text

STATION = one_gc("{name: benzene, address: 0, type: float32}",
                 "{name: toluene, address: 2, type: float32}", head=HEAD_FLOW, tail="""\
store:
  path: outbox.db
mqtt:
  host: broker.local
uplinks:
""")
PLATFORM = """\
  {name}:
    kind: hj212
    host: 10.0.0.{number}
    port: 9001
    mn: 010000A8900016F000169DC{number}
    st: "31"
    password_env: HJ212_PW
"""
CHANNELS = """\
    channels:
      - {device: gc-1, channel: benzene, code: a25002}
"""
ENV = {"HJ212_PW": "123456", "HJ212_KEY": "30" * 16}


def _file(tmp_path: Path, uplinks: str) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(STATION + uplinks, encoding="utf-8")
    return path


def _platform(extra: str = "sm4_key_env: HJ212_KEY\n", name: str = "city",
              number: int = 1) -> str:
    text = PLATFORM.format(name=name, number=number)
    text += "".join(f"    {line}\n" for line in extra.splitlines())
    return text + CHANNELS


def _messages(tmp_path: Path, uplinks: str, env: dict[str, str] = ENV) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(_file(tmp_path, uplinks), env=env)
    return [f"{issue.path}: {issue.message}" for issue in caught.value.issues]


def test_defaults_follow_the_standard_table_for_4g_and_2025(tmp_path: Path) -> None:
    config = load_config(_file(tmp_path, _platform()), env=ENV)
    [uplink] = config.uplinks
    settings = uplink.hj212
    assert uplink.kind == "hj212" and settings is not None
    assert (settings.timeout_s, settings.retries, settings.version, settings.ack) == \
        (10, 3, 2025, True)
    assert (settings.realtime_interval_s, settings.minute_interval_min, settings.hourly,
            settings.daily, settings.heartbeat_s, settings.crc) == \
        (0, 10, True, True, 60, "hj212")
    assert settings.encrypt and settings.sm4_key is not None
    assert key_from_text(settings.sm4_key.value) == b"0" * 16
    assert settings.password is not None and settings.password.value == "123456"
    assert [(c.device, c.channel, c.code, c.unit) for c in settings.channels] == \
        [("gc-1", "benzene", "a25002", None)]


def test_eight_platforms_on_one_station(tmp_path: Path) -> None:
    uplinks = "".join(_platform(name=f"p{n}", number=n) for n in range(1, 9))
    config = load_config(_file(tmp_path, uplinks), env=ENV)
    assert [uplink.hj212.host for uplink in config.uplinks if uplink.hj212] == \
        [f"10.0.0.{n}" for n in range(1, 9)]


def test_a_station_code_of_the_other_version_is_refused(tmp_path: Path) -> None:
    uplinks = _platform("""\
sm4_key_env: HJ212_KEY
codes:
  x90001: {zh: 旧苯, en: old benzene, unit: mg/m3, versions: [2017]}
""").replace("code: a25002", "code: x90001")
    assert _messages(tmp_path, uplinks) == [
        "uplinks.city.channels[0].code: x90001 (old benzene) is not an HJ 212-2025 code"]


def test_a_key_of_the_wrong_shape_is_refused_without_repeating_it(tmp_path: Path) -> None:
    env = {**ENV, "HJ212_KEY": "secret-key-1234"}
    [message] = _messages(tmp_path, _platform(), env)
    assert message == ("uplinks.city.sm4_key_env: the SM4 key must be 32 hex digits or 16 "
                       "characters (it is 15 characters)")
    assert "secret-key" not in message


def test_a_32_character_key_that_is_not_hex_is_told_so_not_its_length(tmp_path: Path) -> None:
    """It said "(it is 32 characters)", which reads as if 32 were wrong."""
    env = {**ENV, "HJ212_KEY": "0123456789abcdef0123456789abcdeg"}
    [message] = _messages(tmp_path, _platform(), env)
    assert message == ("uplinks.city.sm4_key_env: the SM4 key must be 32 hex digits or 16 "
                       "characters: it is 32 characters, but not all of them are hex digits "
                       "(0-9, A-F)")


def test_a_password_wider_than_the_pw_field_is_refused_without_repeating_it(
        tmp_path: Path) -> None:
    [message] = _messages(tmp_path, _platform(), {**ENV, "HJ212_PW": "Password-9"})
    assert message.startswith("uplinks.city.password_env: the password must be 1 to 6")
    assert "Password-9" not in message


def test_encrypt_false_needs_no_key_and_2017_none_at_all(tmp_path: Path) -> None:
    uplinks = _platform("encrypt: false\n") + _platform(
        "version: 2017\nheartbeat_s: 0\n", name="park", number=2).replace(
            "010000A8900016F000169DC2", "LD130133000015")
    config = load_config(_file(tmp_path, uplinks), env={"HJ212_PW": "1"})
    assert [(u.hj212.encrypt, u.hj212.sm4_key) for u in config.uplinks if u.hj212] == \
        [(False, None), (False, None)]


def test_a_channel_of_a_device_the_uplink_does_not_carry_is_refused(tmp_path: Path) -> None:
    uplinks = _platform().replace("    kind: hj212\n", "    kind: hj212\n    devices: []\n")
    messages = _messages(tmp_path, uplinks)
    assert any(message.startswith("uplinks.city.devices: the list is empty")
               for message in messages)


@pytest.mark.real_parts
def test_check_lists_an_hj212_uplink(tmp_path: Path) -> None:
    path = _file(tmp_path, _platform())
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **ENV}
    checked = subprocess.run([sys.executable, "-m", "edge_agent", "check", str(path)],
                             capture_output=True, text=True, env=env, timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert "uplink city (hj212): 10.0.0.1:9001 (HJ 212-2025, MN " in checked.stdout


def test_the_station_files_settings_become_the_sessions(tmp_path: Path) -> None:
    extra = "sm4_key_env: HJ212_KEY\ntimeout_s: 20\nack: false\n"
    config = load_config(_file(tmp_path, _platform(extra)), env=ENV)
    settings = session_settings(config.uplinks[0].hj212)
    assert (settings.host, settings.port, settings.mn, settings.st, settings.pw) == \
        ("10.0.0.1", 9001, "010000A8900016F000169DC1", "31", "123456")
    assert (settings.version, settings.ack, settings.timeout_s, settings.retries,
            settings.heartbeat_s, settings.sm4_key) == \
        (Version.HJ212_2025, False, 20, 3, 60, b"0" * 16)
