"""The shipped example configurations load, and the reference file tells the truth.

Every ``*.yaml`` under ``config/`` is found by glob, so a new example is covered the day
it is added. ``config/reference.yaml`` must show the real defaults and mention every
setting the loader knows, so it cannot drift from the code in either direction.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from edge_agent_drivers.modbus import config_acquisition as validate_acquisition
from edge_agent_drivers.modbus import config_channels as validate_channels
from edge_agent_drivers.modbus import config_quality as validate_quality

from edge_agent.config import (
    loader,
    validate_devices,
    validate_health,
    validate_links,
    validate_mqtt,
    validate_uplinks,
)
from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config
from edge_agent.config.schema import HealthConfig, MqttConfig, PollingPolicy, Retention, Topics

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
# hj212-voc-station.example.yaml's HJ 212 platforms take their PW and SM4 key from these
EXAMPLE_ENV = {"EDGE_AGENT_MQTT_PASSWORD": "x", "CITY_HJ212_PW": "123456",
               "CITY_HJ212_SM4": "30" * 16, "PARK_HJ212_PW": "654321"}
# Station files; simulate*.yaml are `edge-agent simulate` files, loaded by
# tests/test_simulate_models.py.
EXAMPLES = sorted(p for p in CONFIG_DIR.rglob("*.yaml") if not p.name.startswith("simulate"))
REFERENCE = CONFIG_DIR / "reference.yaml"


def test_examples_exist() -> None:
    assert REFERENCE in EXAMPLES
    assert CONFIG_DIR / "station.example.yaml" in EXAMPLES
    assert CONFIG_DIR / "hj212-voc-station.example.yaml" in EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_example_config_loads(path: Path) -> None:
    try:
        config = load_config(path, env=EXAMPLE_ENV)
    except ConfigError as err:  # show the issues themselves, not a bare traceback
        pytest.fail(f"{path.name} does not load:\n{err}")
    assert config.devices and config.links


def test_station_example_password_comes_from_the_documented_variable() -> None:
    config = load_config(CONFIG_DIR / "station.example.yaml", env=EXAMPLE_ENV)
    assert config.mqtt.password is not None and config.mqtt.password.value == "x"
    with pytest.raises(ConfigError, match="EDGE_AGENT_MQTT_PASSWORD"):
        load_config(CONFIG_DIR / "station.example.yaml", env={})


def test_reference_shows_the_real_defaults() -> None:
    config = load_config(REFERENCE, env={})
    assert config.polling == PollingPolicy()
    assert config.store.retention == Retention()
    assert config.store.path == CONFIG_DIR / "outbox.sqlite3"
    expected = MqttConfig(host="broker.local", client_id="edge-agent-ST01", topics=Topics())
    assert config.mqtt == expected
    assert config.health == HealthConfig()


ALL_KEYS = {
    "top": loader.TOP_KEYS,
    "polling": loader.POLLING_KEYS,
    "store": loader.STORE_KEYS,
    "retention": loader.RETENTION_KEYS,
    "tcp link": validate_links.TCP_KEYS,
    "serial link": validate_links.SERIAL_KEYS,
    "device": validate_devices.device_keys(),
    "channel": validate_channels.CHANNEL_KEYS,
    "quality rule": validate_quality.RULE_KEYS,
    "read limits": validate_acquisition.READ_KEYS,
    "forbidden zone": validate_acquisition.ZONE_KEYS,
    "trigger": validate_acquisition.TRIGGER_KEYS,
    "clock": validate_acquisition.CLOCK_KEYS,
    "mqtt": validate_mqtt.MQTT_KEYS,
    "tls": validate_mqtt.TLS_KEYS,
    "topics": validate_mqtt.TOPIC_KEYS,
    "uplink": validate_uplinks.COMMON_KEYS,
    "health": validate_health.HEALTH_KEYS,
}


@pytest.mark.parametrize("section", ALL_KEYS, ids=str)
def test_reference_mentions_every_setting_the_loader_knows(section: str) -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    for key in ALL_KEYS[section]:
        assert re.search(rf"^[ #]*(- )?{key}:", text, re.MULTILINE), f"{section}: {key}"
