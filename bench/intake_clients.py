"""The clients of the broker-intake bench: N publishers playing stations, one counting
subscriber playing the platform, and the shared-subscription probe.

A publisher publishes QoS 1 messages of the agent's size on the agent's topic shape and
keeps at most ``window`` unacknowledged, as the agent's forwarder does with
``mqtt.max_inflight``: it sends the next message when a PUBACK frees a place, so it goes
as fast as the broker acknowledges. Every send and every acknowledgement happens on the
client's own network thread (paho's ``loop_start``), so no lock is needed around the
in-flight table. PUBACK latency is the time from ``publish()`` to paho's ``on_publish``.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

SHARED_GROUP = "platform"


def payload_of(size: int) -> bytes:
    """A JSON document of exactly ``size`` bytes (the broker never reads it)."""
    head, tail = b'{"v":1,"pad":"', b'"}'
    return head + b"x" * max(0, size - len(head) - len(tail)) + tail


def topic_of(index: int) -> str:
    """The agent's default data topic for a detector of station ``index``."""
    return f"edge/st{index:04d}/det-1/data"


def _client(client_id: str) -> paho.Client:
    return paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                       clean_session=True, protocol=paho.MQTTv311)


class Publisher:
    """One simulated station: QoS 1, at most ``window`` messages waiting for PUBACK."""

    def __init__(self, index: int, port: int, payload: bytes, window: int) -> None:
        self.topic, self.payload, self.window = topic_of(index), payload, window
        self.connected = threading.Event()
        self.running = True
        self.counting = False
        self._sent: dict[int, float] = {}
        self.acks: list[tuple[float, float]] = []  # (acknowledged at, latency s), counted
        self.client = _client(f"station-{index:04d}-{uuid.uuid4().hex[:6]}")
        self.client.max_inflight_messages_set(window)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.connect_async("127.0.0.1", port, keepalive=60)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.set()
        for _ in range(self.window - len(self._sent)):
            self._send()

    def _send(self) -> None:
        if self.running:
            info = self.client.publish(self.topic, self.payload, qos=1)
            self._sent[info.mid] = time.monotonic()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        now = time.monotonic()
        sent = self._sent.pop(mid, None)
        if sent is not None and self.counting:
            self.acks.append((now, now - sent))
        self._send()

    def stop(self) -> None:
        self.running = False
        self.client.disconnect()
        self.client.loop_stop()


class Subscriber:
    """The platform: ``edge/#`` (or a shared form of it) at QoS 1, counting messages."""

    def __init__(self, port: int, topic: str = "edge/#", counting: bool = False) -> None:
        self.received = 0
        self.counting = counting
        self._subscribed = threading.Event()
        self.granted: list[int] = []
        self.client = _client(f"platform-{uuid.uuid4().hex[:6]}")
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=60)
        self.client.loop_start()
        if not self._subscribed.wait(30):
            raise RuntimeError(f"no SUBACK for {topic} on port {port}")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self.granted = [code.value for code in reason_codes]
        self._subscribed.set()

    def _on_message(self, client, userdata, message) -> None:
        if self.counting:
            self.received += 1

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass(frozen=True)
class SharedProbe:
    """What two members of one ``$share`` group received of ``sent`` messages."""

    sent: int
    received: tuple[int, int]
    granted: tuple[int, ...]

    @property
    def verdict(self) -> str:
        if all(n > 0 for n in self.received) and sum(self.received) == self.sent:
            return "supported: each message to one member of the group"
        if sum(self.received) == 0:
            return "not supported: the group received nothing"
        return "not as specified"

    def text(self) -> str:
        return (f"{self.verdict} (MQTT 3.1.1 subscribers, SUBACK codes "
                f"{list(self.granted)}, received {self.received[0]} + {self.received[1]} "
                f"of {self.sent})")


def probe_shared(publish_port: int, subscribe_ports: tuple[int, int],
                 messages: int = 20, quiet_s: float = 2.0) -> SharedProbe:
    """Two subscribers on ``$share/platform/edge/#``, ``messages`` QoS 1 publishes; waits
    until all arrived or nothing more came for ``quiet_s`` (a broker that does not
    support it delivers nothing, and only the quiet period can say so)."""
    members = [Subscriber(port, f"$share/{SHARED_GROUP}/edge/#", counting=True)
               for port in subscribe_ports]
    publisher = _client(f"probe-{uuid.uuid4().hex[:6]}")
    publisher.connect("127.0.0.1", publish_port, keepalive=60)
    publisher.loop_start()
    try:
        infos = [publisher.publish(topic_of(9999), payload_of(200), qos=1)
                 for _ in range(messages)]
        for info in infos:
            info.wait_for_publish(30)
        _wait_quiet(members, messages, quiet_s)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        for member in members:
            member.stop()
    return SharedProbe(messages, (members[0].received, members[1].received),
                       tuple(code for m in members for code in m.granted))


def _publishers_main(conn, indices: list[int], ports: list[int], payload_bytes: int,
                     window: int) -> None:
    """A child process running the publishers ``indices``: connects them, says "ready",
    counts between "start" and "stop", then sends back (station, acks)."""
    payload = payload_of(payload_bytes)
    publishers = [Publisher(i, ports[i % len(ports)], payload, window) for i in indices]
    try:
        ok = all(p.connected.wait(60) for p in publishers)
        conn.send("ready" if ok else "could not connect")
        conn.recv()  # start
        for p in publishers:
            p.counting = True
        conn.recv()  # stop
        for p in publishers:
            p.counting = False
        conn.send([(p.topic, p.acks) for p in publishers])
    finally:
        for p in publishers:
            p.stop()
        conn.close()


def _subscriber_main(conn, port: int) -> None:
    subscriber = Subscriber(port)
    try:
        conn.send("ready")
        conn.recv()
        subscriber.counting = True
        conn.recv()
        subscriber.counting = False
        conn.send(subscriber.received)
    finally:
        subscriber.stop()
        conn.close()


class Load:
    """Publishers spread over ``processes`` child processes and the subscriber in one of
    its own: one Python process holds one core at most (the GIL), and the subscriber
    must not slow the stations down by sharing theirs."""

    def __init__(self, stations: int, ports: list[int], subscribe_port: int | None,
                 payload_bytes: int, window: int, processes: int = 2) -> None:
        """``subscribe_port`` None: no subscriber (what the broker takes in when no
        queue or subscription has to receive the messages)."""
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # no paho threads inherited
        self._links = []
        self._children = []
        groups = [list(range(k, stations, processes)) for k in range(min(processes, stations))]
        self._subscribed = subscribe_port is not None
        targets = [(_subscriber_main, (subscribe_port,))] if self._subscribed else []
        targets += [(_publishers_main, (group, ports, payload_bytes, window))
                    for group in groups]
        for target, args in targets:
            parent, child = context.Pipe()
            process = context.Process(target=target, args=(child, *args), daemon=True)
            process.start()
            child.close()
            self._links.append(parent)
            self._children.append(process)
        for link in self._links:
            answer = link.recv()
            if answer != "ready":
                self.stop()
                raise RuntimeError(f"load process: {answer}")

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._children if p.pid is not None]

    def start(self) -> None:
        for link in self._links:
            link.send("start")

    def stop_counting(self) -> None:
        for link in self._links:
            link.send("stop")

    def results(self) -> tuple[int | None, list[tuple[str, list[tuple[float, float]]]]]:
        """After ``stop_counting``: (messages the subscriber got, None without one; per
        station its acks)."""
        publishers = self._links[1:] if self._subscribed else self._links
        received = self._links[0].recv() if self._subscribed else None
        stations = [item for link in publishers for item in link.recv()]
        return received, stations

    def stop(self) -> None:
        for link in self._links:
            link.close()
        for process in self._children:
            process.join(30)
            if process.is_alive():
                process.kill()
                process.join()


def _wait_quiet(subscribers: list[Subscriber], expected: int, quiet_s: float) -> None:
    """Until ``expected`` messages arrived in all, or none came for ``quiet_s``."""
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() - quiet_since < quiet_s:
        total = sum(s.received for s in subscribers)
        if total >= expected:
            return
        if total != last:
            last, quiet_since = total, time.monotonic()
        time.sleep(0.05)


def probe_retained(publish_port: int, other_port: int, quiet_s: float = 2.0) -> str:
    """Where a retained station status reaches a new subscriber: published through one
    node, subscribed afterwards by its exact topic on the same node and on another
    node, and by the wildcard ``edge/+/status`` on the same node."""
    topic = "edge/st9999/status"
    publisher = _client(f"probe-{uuid.uuid4().hex[:6]}")
    publisher.connect("127.0.0.1", publish_port, keepalive=60)
    publisher.loop_start()
    try:
        publisher.publish(topic, b'{"state": "online"}', qos=1, retain=True).wait_for_publish(30)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
    cases = {"exact topic, same node": (publish_port, topic),
             "exact topic, other node": (other_port, topic),
             "edge/+/status, same node": (publish_port, "edge/+/status")}
    if other_port == publish_port:  # one broker: there is no other node
        del cases["exact topic, other node"]
    found = {}
    for name, (port, subscribed) in cases.items():
        subscriber = Subscriber(port, subscribed, counting=True)
        try:
            _wait_quiet([subscriber], 1, quiet_s)
        finally:
            subscriber.stop()
        found[name] = "got it" if subscriber.received else "nothing"
    return "; ".join(f"{name}: {what}" for name, what in found.items())
