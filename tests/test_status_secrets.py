"""`status` and `export` read a station file whose secrets this shell does not have, and
say in the technician's language why no agent answered.

A technician runs `edge-agent status` in a shell without the service's secrets file
loaded. For the MQTT password that always worked; for an HJ 212 platform the stand-in
value was judged by the PW and SM4 key formats, and `status` refused the worked VOC
station with "the password must be 1 to 6 letters or digits" and "the SM4 key must be
32 hex digits or 16 characters (it is 32 characters)", both untrue of the real secrets.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent import i18n
from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config
from edge_agent.config.schema import HealthConfig
from edge_agent.tools.ops.common import AgentUnreachable, ask_agent, load_station
from edge_agent.tools.sim.broker import free_port

VOC_STATION = Path(__file__).resolve().parent.parent / "config" / \
    "hj212-voc-station.example.yaml"
SECRETS = ("CITY_HJ212_PW", "CITY_HJ212_SM4", "PARK_HJ212_PW")


@pytest.fixture
def shell_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("shell_without_secrets")
def test_status_reads_an_hj212_station_without_its_secrets_in_the_shell(
        capsys: pytest.CaptureFixture[str]) -> None:
    config = load_station(VOC_STATION)
    assert capsys.readouterr().err == ""
    assert config is not None
    assert sorted(u.name for u in config.uplinks if u.kind == "hj212") == \
        ["city-hj212", "park-2017"]


@pytest.mark.usefixtures("shell_without_secrets")
def test_the_agent_still_needs_the_hj212_secrets() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(VOC_STATION)
    assert [issue.path for issue in caught.value.issues] == [
        "uplinks.city-hj212.password_env", "uplinks.city-hj212.sm4_key_env",
        "uplinks.park-2017.password_env"]
    assert "is not set" in caught.value.issues[0].message


@pytest.mark.usefixtures("shell_without_secrets")
def test_status_still_judges_a_secret_the_shell_does_have(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CITY_HJ212_PW", "Password-9")
    assert load_station(VOC_STATION) is None
    err = capsys.readouterr().err
    assert "uplinks.city-hj212.password_env: the password must be 1 to 6" in err
    assert "1 problem found" in err


def test_why_no_agent_answered_is_said_in_chinese_with_lang_zh() -> None:
    """`status --lang zh` said its first line in Chinese up to the reason, and the reason
    in English; a demo's station file (health.port 0) showed that on every run."""
    i18n.use("zh")
    with pytest.raises(AgentUnreachable) as caught:
        ask_agent(HealthConfig(port=0))
    assert str(caught.value) == "health.port 为 0（任意空闲端口），因此找不到运行中的采集代理的端点"
    port = free_port()  # nothing listens there
    with pytest.raises(AgentUnreachable) as caught:
        ask_agent(HealthConfig(port=port))
    assert str(caught.value).startswith(f"http://127.0.0.1:{port}/status 没有任何应答（")
