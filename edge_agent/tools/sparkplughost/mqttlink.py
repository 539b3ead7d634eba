"""The host simulator's MQTT connection: the second module that imports paho (the agent's
is forward/mqtt.py; tests/test_packaging.py names both).

A separate module because a primary host needs what the agent's session does not: a
retained STATE with a retained will, a subscription to the whole namespace, and
publishing commands. paho's own loop thread runs it; callbacks arrive on that thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.sparkplug.topics import NAMESPACE, state_topic


class HostLinkError(Exception):
    """The broker could not be reached, or refused the host."""


class HostLink:
    """A clean MQTT 3.1.1 session with the host's offline STATE as its will (QoS 1,
    retained: tck-id-payloads-state-will-message-qos/-retain)."""

    def __init__(self, host: str, port: int, host_id: str, will_payload: bytes,
                 on_message: Callable[[str, bytes, bool], None],
                 username: str | None = None, password: str | None = None) -> None:
        self._host, self._port, self.host_id = host, port, host_id
        self._on_message = on_message
        self._subscribed = threading.Event()
        self._refused: str | None = None
        self._client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                   client_id=f"sparkplug-host-{host_id}", clean_session=True)
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.will_set(state_topic(host_id), will_payload, qos=1, retain=True)
        self._client.on_connect = self._handle_connect
        self._client.on_subscribe = self._handle_subscribe
        self._client.on_message = self._handle_message

    def start(self, timeout_s: float) -> None:
        """Connect, subscribe to ``spBv1.0/#`` (which holds the host's own STATE topic,
        tck-id-payloads-state-subscribe) and return once the broker granted it."""
        try:
            self._client.connect(self._host, self._port, keepalive=30)
        except OSError as err:
            raise HostLinkError(f"cannot connect to {self._host}:{self._port}: {err}") from err
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self._client.loop_stop()
            raise HostLinkError(self._refused or f"no subscription on {self._host}:"
                                f"{self._port} within {timeout_s:g} s")

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False,
                timeout_s: float = 10.0) -> bool:
        """Publish and wait until it left (QoS 0) or was acknowledged (QoS 1)."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout_s)
        return info.is_published()

    def publish_soon(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        """Queue a publish without waiting: the one way to publish from a callback
        (waiting there for the acknowledgement would block the thread that reads it)."""
        self._client.publish(topic, payload, qos=qos, retain=retain)

    def close(self, final_topic: str, final_payload: bytes) -> None:
        """Publish the offline STATE (retained, QoS 1), then disconnect cleanly."""
        try:
            self.publish(final_topic, final_payload, qos=1, retain=True)
        finally:
            self._client.disconnect()
            self._client.loop_stop()

    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = f"the broker refused the connection: {reason_code}"
            return
        client.subscribe(f"{NAMESPACE}/#", qos=1)

    def _handle_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._subscribed.set()

    def _handle_message(self, client, userdata, message) -> None:
        self._on_message(message.topic, message.payload, bool(message.retain))
