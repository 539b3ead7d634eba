"""Review findings on the Sparkplug uplink, with real parts: the uplink's own thread and
session, a real Mosquitto on a free port, a real outbox file, a primary host
(tests/support/sparkplug_recorder.py) and a hostile publisher (plain paho).

A STATE payload of deeply nested JSON made ``json.loads`` raise RecursionError, which
``parse_state`` did not turn into a StateError: the connection ended with an
"unexpected error", and since STATE is retained, every reconnect read it again. The
uplink never stayed connected long enough to birth once the real host came online on
that connection: it had to reconnect first. Now it is logged and ignored like any
unreadable STATE, and the same connection births when the host says online."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support.sparkplug_recorder import SparkplugRecorder
from support.uplinks_station import FAST_MQTT
from support.waiting import wait_until

from edge_agent.config.loader import load_config
from edge_agent.config.schema import Retention, UplinkConfig
from edge_agent.forward.sparkpluguplink import SparkplugUplink
from edge_agent.model import Quality, Reading, Sample
from edge_agent.sparkplug.state import StateError, parse_state
from edge_agent.store.outbox import Outbox
from edge_agent.tools.sim.broker import Mosquitto

pytestmark = pytest.mark.real_parts

HOST = "scada-1"
UNLIMITED = Retention(max_rows=None, max_bytes=None, max_age_s=None)
NESTED_STATE = b"[" * 100_000  # deeper than the JSON decoder's recursion limit


def sparkplug_config(tmp_path: Path, port: int) -> UplinkConfig:
    fast = "".join(f"    {key}: {value}\n" for key, value in FAST_MQTT.items())
    text = f"""\
station:
  id: ST01
links:
  gw: {{type: tcp, host: 127.0.0.1}}
devices:
  - id: gc-1
    link: gw
    unit_id: 1
    interval_s: 60
    channels:
      - {{name: benzene, address: 0, type: float32, unit: mg/m3}}
uplinks:
  scada:
    kind: sparkplug
    group_id: chem-park
    edge_node_id: ST01
    primary_host_id: {HOST}
    host: 127.0.0.1
    port: {port}
{fast}"""
    path = tmp_path / "station.yaml"
    path.write_text(text, encoding="utf-8")
    [uplink] = load_config(path, env={}, for_agent=False).uplinks
    return uplink


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as running:
        yield running


def publish_retained(port: int, topic: str, payload: bytes) -> None:
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id="hostile-host")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_deeply_nested_state_json_is_a_state_error():
    with pytest.raises(StateError, match="nested too deeply"):
        parse_state(NESTED_STATE)


def test_retained_nested_state_is_ignored_and_the_same_connection_births(tmp_path, broker):
    publish_retained(broker.port, f"spBv1.0/STATE/{HOST}", NESTED_STATE)
    outbox = Outbox(tmp_path / "outbox.sqlite3", UNLIMITED)
    outbox.set_uplinks({"scada": ["gc-1"]})
    uplink = SparkplugUplink("ST01", sparkplug_config(tmp_path, broker.port), outbox,
                             state_dir=tmp_path)
    uplink.start()
    host = None
    try:
        wait_until(lambda: uplink.stats.connected, 30, "the uplink connected (subscribed)")
        host = SparkplugRecorder(broker.port, HOST).start()  # retained online STATE
        wait_until(lambda: any(s.kind == "NBIRTH" for s in host.messages()), 30,
                   "the NBIRTH after the host's online STATE")
        assert uplink.stats.sessions == 1  # no reconnect: the garbage did not end it
    finally:
        uplink.stop(grace_s=1)
        if host is not None:
            host.stop()
        outbox.close()


def test_stopping_while_waiting_for_the_primary_host_does_not_log_a_lost_connection(
        tmp_path, broker, caplog):
    """Never born (the host never said online): a stop ends the connection on purpose.
    It was logged as 'broker connection lost (None)' and set last_error to None."""
    outbox = Outbox(tmp_path / "outbox.sqlite3", UNLIMITED)
    outbox.set_uplinks({"scada": ["gc-1"]})
    uplink = SparkplugUplink("ST01", sparkplug_config(tmp_path, broker.port), outbox,
                             state_dir=tmp_path)
    uplink.start()
    try:
        wait_until(lambda: uplink.stats.connected, 30, "the uplink connected (subscribed)")
        uplink.stats.last_error = "earlier"
    finally:
        uplink.stop(grace_s=1)
        outbox.close()
    assert not uplink.thread.is_alive()
    assert not [r for r in caplog.records if "connection lost" in r.getMessage()]
    assert uplink.stats.last_error == "earlier"


def plain_config(tmp_path: Path, port: int) -> UplinkConfig:
    """The same uplink without a primary host: it births at once."""
    text = (tmp_path / "station.yaml")
    sparkplug_config(tmp_path, port)
    text.write_text(text.read_text("utf-8").replace(f"    primary_host_id: {HOST}\n", ""),
                    encoding="utf-8")
    [uplink] = load_config(text, env={}, for_agent=False).uplinks
    return uplink


def benzene(host: SparkplugRecorder) -> list[object]:
    """Every value of gc-1's ``benzene`` metric the host received (DBIRTH and DDATA)."""
    return [metric.value for seen in host.messages() if seen.device == "gc-1"
            for metric in seen.metrics if metric.name == "benzene"]


def test_a_sample_whose_analysis_time_is_before_1970_is_skipped_not_a_reconnect_loop(
        tmp_path, broker):
    """A GC's time registers reading 1900 (or a negative UNIX time): the DateTime
    property is an unsigned ms count, so encoding raised ValueError past the uplink's
    guard; the connection ended, the claim came back, and it failed again forever,
    holding up every later sample. It is now counted unreadable and acknowledged."""
    host = SparkplugRecorder(broker.port).start()
    outbox = Outbox(tmp_path / "outbox.sqlite3", UNLIMITED)
    outbox.set_uplinks({"scada": ["gc-1"]})
    for value, instrument in ((1.0, datetime(1900, 1, 1, tzinfo=UTC)), (2.0, None)):
        at = datetime.now(UTC)
        outbox.append(Sample("gc-1", at, (Reading("gc-1", "benzene", value, "mg/m3",
                                                  Quality.GOOD, at),),
                             instrument_time=instrument))
    uplink = SparkplugUplink("ST01", plain_config(tmp_path, broker.port), outbox,
                             state_dir=tmp_path)
    uplink.start()
    try:
        wait_until(lambda: outbox.depth().samples == 0, 30, "both samples to leave the outbox")
        wait_until(lambda: 2.0 in benzene(host), 30, "the second sample at the host")
        assert 1.0 not in benzene(host)
        assert uplink.counts["unreadable"] == 1
        assert uplink.stats.sessions == 1
    finally:
        uplink.stop(grace_s=1)
        host.stop()
        outbox.close()
