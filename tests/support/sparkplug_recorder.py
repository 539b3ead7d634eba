"""A primary host for tests: subscribes to ``spBv1.0/#`` on a real Mosquitto, decodes every
message with Eclipse Tahu's generated classes (``esio_spb_builder``, a test dependency,
independent of the agent's own ``sparkplug_b_pb2``), and keeps them in arrival order.

With ``host_id`` it behaves as a Sparkplug 3.0 primary host: its will is the offline
STATE, and on every (re)connect it subscribes first and then publishes its online STATE
(retained, QoS 1). ``set_online(False)`` publishes the offline STATE while staying
subscribed, so a test can see that nothing is sent while the host is offline; a host
made with ``online=False`` publishes no online STATE until ``set_online(True)``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as paho
from esio_spb_builder.core import sparkplug_b_pb2 as tahu
from paho.mqtt.enums import CallbackAPIVersion

_VALUE_FIELDS = ("int_value", "long_value", "float_value", "double_value", "boolean_value",
                 "string_value")


@dataclass
class SeenMetric:
    name: str  # resolved through the device's DBIRTH aliases for DDATA
    timestamp_ms: int
    value: object
    historical: bool
    is_null: bool


@dataclass
class Seen:
    """One message as the host decoded it (``kind`` ``STATE`` for a STATE marker the
    recorder itself wrote into the sequence, ``online`` then says which)."""

    kind: str
    topic: str
    device: str | None = None
    seq: int | None = None
    bd_seq: int | None = None
    metrics: list[SeenMetric] = field(default_factory=list)
    online: bool | None = None


class SparkplugRecorder:
    """Records what a host subscribed to ``spBv1.0/#`` sees."""

    def __init__(self, port: int, host_id: str | None = None, online: bool = True) -> None:
        self.port = port
        self.host_id = host_id
        self.seen: list[Seen] = []
        self.undecodable: list[str] = []
        self._aliases: dict[tuple[str | None, int], str] = {}
        self._lock = threading.Lock()
        self._online = online
        self.connected = threading.Event()
        self._client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                   client_id=f"test-host-{host_id or 'plain'}")
        self._client.on_connect = self._handle_connect
        self._client.on_subscribe = self._handle_subscribe
        self._client.on_message = self._handle_message
        self._client.on_disconnect = lambda *args: self.connected.clear()
        self._client.reconnect_delay_set(min_delay=1, max_delay=1)
        if host_id is not None:
            self._client.will_set(self.state_topic, self._state(False), qos=1, retain=True)

    @property
    def state_topic(self) -> str:
        return f"spBv1.0/STATE/{self.host_id}"

    def start(self) -> SparkplugRecorder:
        self._client.connect("127.0.0.1", self.port, keepalive=5)
        self._client.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError("the test host could not subscribe")
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def set_online(self, online: bool) -> None:
        """Publish this host's STATE (retained, QoS 1) and wait for the broker's PUBACK."""
        self._online = online
        with self._lock:
            self.seen.append(Seen("STATE", self.state_topic, online=online))
        info = self._client.publish(self.state_topic, self._state(online), qos=1, retain=True)
        info.wait_for_publish(10)

    @staticmethod
    def _state(online: bool) -> bytes:
        return json.dumps({"online": online, "timestamp": int(time.time() * 1000)}).encode()

    # -- paho callbacks ---------------------------------------------------------------
    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe("spBv1.0/#", qos=1)

    def _handle_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if self.host_id is not None and self._online:
            client.publish(self.state_topic, self._state(True), qos=1, retain=True)
        self.connected.set()

    def _handle_message(self, client, userdata, message) -> None:
        levels = message.topic.split("/")
        if levels[1] == "STATE":
            return
        verb = levels[2]
        device = levels[4] if len(levels) == 5 else None
        payload = tahu.Payload()
        try:
            payload.ParseFromString(message.payload)
        except Exception:  # noqa: BLE001 - a test records, the assertion reports
            self.undecodable.append(message.topic)
            return
        seen = Seen(verb, message.topic, device, payload.seq if payload.HasField("seq")
                    else None)
        for metric in payload.metrics:
            if verb.endswith("BIRTH") and metric.name:
                self._aliases[(device, metric.alias)] = metric.name
            name = metric.name or self._aliases.get((device, metric.alias), f"?{metric.alias}")
            kind = metric.WhichOneof("value")
            value = getattr(metric, kind) if kind in _VALUE_FIELDS else None
            if name == "bdSeq":
                seen.bd_seq = int(value) if value is not None else None
            seen.metrics.append(SeenMetric(name, metric.timestamp, value,
                                           metric.is_historical, metric.is_null))
        with self._lock:
            self.seen.append(seen)

    def messages(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def data(self, device: str) -> dict[int, object]:
        """Metric ``value`` of ``device`` by timestamp (ms), from DDATA and DBIRTH."""
        found: dict[int, object] = {}
        for seen in self.messages():
            if seen.device == device and seen.kind in ("DDATA", "DBIRTH"):
                for metric in seen.metrics:
                    if metric.name == "value" and not metric.is_null:
                        found[metric.timestamp_ms] = metric.value
        return found
