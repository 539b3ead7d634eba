"""Broker failover without a broker: the order nodes are tried in, when the agent waits,
and how ``mqtt.brokers`` is read (forward/brokers.py, config/validate_brokers.py)."""

from __future__ import annotations

from pathlib import Path

from edge_agent.config.loader import load_config, load_station
from edge_agent.config.schema import BrokerAddress
from edge_agent.config.validate_brokers import parse_address
from edge_agent.forward.brokers import BrokerRotation
from edge_agent.retry import Backoff

A, B, C = (BrokerAddress(f"node-{n}", 1883) for n in "abc")
BACKOFF = Backoff(1.0, 8.0, jitter_s=0)  # 1, 2, 4, 8 s: exact without jitter


def test_failed_connects_walk_the_list_and_back_off_only_after_a_full_round() -> None:
    rotation = BrokerRotation((A, B, C), BACKOFF)
    tried, pauses = [], []
    for _ in range(9):
        tried.append(rotation.current)
        pauses.append(rotation.moved(failed=True))
    assert tried == [A, B, C] * 3
    assert pauses == [0, 0, 1.0, 0, 0, 2.0, 0, 0, 4.0]


def test_a_stable_session_that_ends_moves_on_at_once_and_resets_the_backoff() -> None:
    rotation = BrokerRotation((A, B, C), BACKOFF)
    for _ in range(3):
        rotation.moved(failed=True)  # a whole round failed: backoff 1 s was due
    assert rotation.current == A  # A accepts and runs stably, then is stopped
    assert rotation.moved(failed=False) == 0.0
    assert (rotation.current, rotation.failures) == (B, 0)


def test_the_node_that_just_failed_is_tried_again_last() -> None:
    rotation = BrokerRotation((A, B, C), BACKOFF)
    rotation.moved(failed=True)  # A refused
    assert rotation.current == B  # B works for a long while, then goes away
    rotation.moved(failed=False)
    assert [rotation.current, rotation.next] == [C, A]


def test_one_address_backs_off_after_every_failure_like_a_single_broker() -> None:
    rotation = BrokerRotation((A,), BACKOFF)
    assert [rotation.moved(failed=True) for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert rotation.moved(failed=False) == 0.0  # a long session lost: reconnect at once
    assert rotation.current == A


def test_short_sessions_count_as_failures_so_a_kicking_broker_is_not_stormed() -> None:
    rotation = BrokerRotation((A, B), BACKOFF)
    assert [rotation.moved(failed=True), rotation.moved(failed=True)] == [0.0, 1.0]


def test_addresses_are_read_from_words_and_mappings(tmp_path: Path) -> None:
    station = Path(__file__).parent / "config_cases" / "mqtt_brokers_valid" / "station.yaml"
    config = load_config(station, env={})
    assert config.mqtt.addresses == (
        BrokerAddress("rabbit-1.platform.local", 1883),
        BrokerAddress("rabbit-2.platform.local", 1884),
        BrokerAddress("fd00::7", 1883),
        BrokerAddress("10.0.0.8", 1883),
        BrokerAddress("fd00::9", 2883),
        BrokerAddress("rabbit-4.platform.local", 8883))
    assert (config.mqtt.host, config.mqtt.port) == ("rabbit-1.platform.local", 1883)
    assert [str(a) for a in config.mqtt.addresses[1:3]] == [
        "rabbit-2.platform.local:1884", "[fd00::7]:1883"]


def test_host_and_port_alone_still_give_one_address() -> None:
    station = Path(__file__).parent.parent / "config" / "reference.yaml"
    config = load_config(station, env={})
    assert config.mqtt.brokers == ()
    assert config.mqtt.addresses == (BrokerAddress("broker.local", 1883),)


def test_an_address_without_port_takes_the_tls_port_when_tls_is_on(tmp_path: Path) -> None:
    text = (Path(__file__).parent / "config_cases" / "mqtt_brokers_valid"
            / "station.yaml").read_text()
    head = text.split("mqtt:")[0]
    path = tmp_path / "station.yaml"
    path.write_text(head + "mqtt:\n  tls: true\n  brokers: [node-a, 'node-b:1883']\n")
    loaded = load_station(str(path), env={})
    assert loaded.config.mqtt.addresses == (BrokerAddress("node-a", 8883),
                                            BrokerAddress("node-b", 1883))
    assert [str(w).split(": ", 1)[1] for w in loaded.warnings] == [
        "mqtt.brokers[1]: node-b:1883: port 1883 is MQTT's plain (unencrypted) port, "
        "but tls is on; brokers usually take TLS on 8883"]


def test_parse_address_forms() -> None:
    assert parse_address("[::1]:1999", 1883) == (BrokerAddress("::1", 1999), None)
    assert parse_address("[::1]", 1883) == (BrokerAddress("::1", 1883), None)
    assert parse_address(" node:0 ", 1883)[1] == "expected a port 1..65535 after ':', " \
        "found '0' in 'node:0'"
    assert parse_address("node:", 1883)[1] is not None
    assert parse_address("user@node:1883", 1883)[1] == \
        "expected a host name or IP address, found 'user@node'"
