"""One MQTT connection of the Sparkplug uplink (forward/sparkpluguplink.py): births,
claims turned into DDATA, delivery markers, NCMD rebirths, the primary host's STATE.

``Connection.run`` drives one ``MqttSession`` from the uplink's thread until the session
is lost, the primary host goes offline (``leave``: NDEATH, reconnect) or the uplink
stops or takes new settings (``Carried.ending``; then NDEATH). The delivery rule it
implements is the uplink module's docstring; the claims it keeps:

* ``uncovered``: claims whose Sparkplug messages are queued, after the marker in flight;
* ``covered``: claims the marker in flight (``marker``) proves when its UNSUBACK comes;
  one marker at a time, so a window of ``max_inflight`` claims is at most two markers
  of latency behind the broker.

Whatever is neither proven nor settled when the connection ends is released by the
uplink (``release_in_flight``) and re-sent, as historical, on a later connection.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from logging import Logger, LoggerAdapter
from queue import Empty, SimpleQueue

from edge_agent.config.schema import SparkplugConfig
from edge_agent.forward.forwarder import ForwarderStats
from edge_agent.forward.mqtt import MqttError, MqttSession
from edge_agent.model import Sample, utc_now
from edge_agent.payload import Message as StoredMessage
from edge_agent.sparkplug.bodies import BodyError, sample_from_body
from edge_agent.sparkplug.commands import CommandError, decode_node_command
from edge_agent.sparkplug.liveness import DeviceLiveness
from edge_agent.sparkplug.session import EdgeNodeSession
from edge_agent.sparkplug.session import Message as SpMessage
from edge_agent.sparkplug.state import PrimaryHostWatch, StateError, parse_state
from edge_agent.sparkplug.topics import NAMESPACE, Verb, node_topic
from edge_agent.store.outbox import OutboxError
from edge_agent.store.uplinkview import UplinkOutbox
from edge_agent.watchdog import Heartbeat

IDLE_WAIT_S = 0.5
BOUND_S = 60.0  # the longest one pass of the loop may take (the watchdog's bound)
_NDEATH_WAIT_S = 2.0
# ("ack", token, b""), ("lost", reason, b"") or ("message", topic, payload)
Event = tuple[str, str, bytes]


@dataclass
class Carried:
    """What the uplink keeps across its connections, and how a connection reaches it.

    ``last``: each device's newest live sample (the births' values); ``sent_once``:
    claims sent and not proven, re-sent as historical; ``ending``: the uplink is stopping
    or has new settings; ``deadline``: monotonic time until which a stop waits for
    markers."""

    outbox: UplinkOutbox
    log: Logger | LoggerAdapter
    stats: ForwarderStats
    heartbeat: Heartbeat
    ending: Callable[[], bool]
    deadline: Callable[[], float]
    wake: threading.Event = field(default_factory=threading.Event)
    events: SimpleQueue[Event] = field(default_factory=SimpleQueue)
    last: dict[str, Sample] = field(default_factory=dict)
    sent_once: set[str] = field(default_factory=set)
    liveness: DeviceLiveness = field(default_factory=DeviceLiveness)
    counts: Counter[str] = field(default_factory=Counter)
    outbox_failing: bool = False  # an episode of failing claims is logged once


def forget_settled(carried: Carried) -> None:
    """Keep in ``sent_once`` only the ids still claimed (after ``release_in_flight``):
    an id leaves it when a marker proves it, but a claim can also go without being
    proven (its device no longer carried, its rows gone), and its id never comes back.
    Bounded so by the uplink's open claims, not by every message it ever sent."""
    carried.sent_once &= carried.outbox.open_claims()


class Connection:
    """One connection's work: births, claims, DDATA, markers, commands, STATE."""

    def __init__(self, carried: Carried, session: MqttSession, edge: EdgeNodeSession,
                 settings: SparkplugConfig) -> None:
        self.carried = carried
        self.session = session
        self.edge = edge
        self.settings = settings
        self.host = PrimaryHostWatch() if settings.primary_host_id else None
        self.lost: str | None = None
        self.leave = False  # the primary host went offline: NDEATH, reconnect
        self.marker: str | None = None  # token of the marker in flight
        self.covered: list[str] = []  # claims the marker in flight proves
        self.uncovered: list[str] = []  # claims sent after it
        self.markers = 0
        self.ncmd_topic = node_topic(Verb.NCMD, settings.group_id, settings.edge_node_id)
        self.boundary = 0
        self.sending_since: float | None = None  # unix s of this connection's births

    @property
    def sending(self) -> bool:
        return self.edge.born and (self.host is None or self.host.online)

    def run(self) -> None:
        c = self.carried
        if self.host is None:
            self._births()
        while self.lost is None and not self.leave:
            c.heartbeat.beat(BOUND_S)
            self._events()
            if c.ending():
                if not (self.covered or self.uncovered) or time.monotonic() >= c.deadline():
                    break
            elif self.sending and self.lost is None and not self.leave:
                self._fill()
            if self.marker is None and self.uncovered and self.lost is None:
                self._mark()
            c.wake.wait(IDLE_WAIT_S)
            c.wake.clear()
        if self.lost is None:
            if self.edge.born:  # never born (waiting for the host): no death to announce
                self._ndeath()
        else:
            c.stats.last_error = self.lost
            c.log.warning("Sparkplug: broker connection lost (%s); %d samples not proven "
                          "will be sent again as historical", self.lost,
                          len(self.covered) + len(self.uncovered))

    # -- events -------------------------------------------------------------------------
    def _events(self) -> None:
        while True:
            try:
                what, text, payload = self.carried.events.get_nowait()
            except Empty:
                return
            if what == "lost":
                self.lost = text
            elif what == "ack" and text == self.marker:
                self._proven()
            elif what == "message":
                self._message(text, payload)

    def _message(self, topic: str, payload: bytes) -> None:
        c = self.carried
        if topic == self.ncmd_topic:
            try:
                command = decode_node_command(payload)  # Rebirth has no alias: by name
            except CommandError as err:
                c.counts["ncmd_ignored"] += 1
                c.log.warning("Sparkplug: an NCMD that does not decode (%s); ignored", err)
                return
            if command.rebirth and self.edge.born:
                c.counts["rebirths"] += 1
                c.log.info("Sparkplug: rebirth requested by a host")
                self._births()
            if command.ignored:
                c.counts["ncmd_ignored"] += len(command.ignored)
            return
        if self.host is None or not topic.startswith(f"{NAMESPACE}/STATE/"):
            c.counts["ncmd_ignored"] += 1  # a DCMD: devices take no commands
            return
        try:
            state = parse_state(payload)
        except StateError as err:
            c.log.warning("Sparkplug: STATE of %s does not read (%s); ignored",
                          self.settings.primary_host_id, err)
            return
        if not self.host.update(state):
            return
        if self.host.online and not self.edge.born:
            c.log.info("Sparkplug: primary host %s online; births",
                       self.settings.primary_host_id)
            self._births()
        elif not self.host.online and self.edge.born:
            c.counts["host_offline"] += 1
            c.log.warning("Sparkplug: primary host %s offline; NDEATH, reconnecting, "
                          "samples kept", self.settings.primary_host_id)
            self.covered, self.uncovered, self.marker = [], [], None  # nothing proven now
            self.leave = True

    # -- sending ------------------------------------------------------------------------
    def _publish(self, message: SpMessage) -> None:
        self.session.publish_qos0(message.topic, message.payload)
        self.carried.stats.published += 1

    def _births(self) -> None:
        now = utc_now()
        if self.sending_since is None:  # what was acquired before is backlog: historical
            self.sending_since = now.timestamp()
            self.boundary = self.carried.outbox.backlog_boundary(self.sending_since)
        for message in self.edge.births(now, self.carried.last):
            self._publish(message)
        for device in self.edge.node.devices:  # dead ones are announced so at once
            if self.carried.liveness.dead(device.device_id):
                self._publish(self.edge.device_death(device.device_id, now))

    def _fill(self) -> None:
        c = self.carried
        free = self.settings.broker.max_inflight - len(self.covered) - len(self.uncovered)
        if free <= 0:
            return
        try:
            claimed = c.outbox.claim_batch(self.boundary, free, 1, 1 << 24)
        except OutboxError as err:
            c.stats.last_error = str(err)
            if not c.outbox_failing:  # a full disk fails every claim: logged once
                c.outbox_failing = True
                c.log.error("Sparkplug: cannot read the outbox: %s; retrying, samples stay "
                            "where they are", err)
            return
        if c.outbox_failing:
            c.outbox_failing = False
            c.log.info("Sparkplug: reading the outbox again")
        self.boundary = claimed.boundary
        for message in claimed.messages:
            try:
                self._send(message)
            except MqttError as err:
                self.lost = str(err)
                c.outbox.forget_in_flight([message.msg_id])
                return
            self.uncovered.append(message.msg_id)
        c.stats.in_flight = len(self.covered) + len(self.uncovered)

    def _send(self, message: StoredMessage) -> None:
        """The Sparkplug messages of one claimed outbox message (maybe none)."""
        c = self.carried
        if message.kind != "sample":
            c.counts["gaps_skipped" if message.kind == "gap" else "alarms_skipped"] += 1
            return
        try:
            sample = sample_from_body(message.device_id, message.entries[0].body)
            self.edge.node.device(message.device_id)
        except (BodyError, KeyError) as err:
            c.counts["unreadable"] += 1
            c.log.error("Sparkplug: message %s of %s cannot be read (%s); removed "
                        "unsent, counted as unreadable", message.msg_id, message.device_id, err)
            return
        device, now = message.device_id, utc_now()
        historical = (message.historical or message.msg_id in c.sent_once
                      or sample.acquired_at.timestamp() < (self.sending_since or 0.0))
        if message.msg_id in c.sent_once:
            c.stats.resent += 1
        c.sent_once.add(message.msg_id)
        c.liveness.observe(sample)
        dead = c.liveness.dead(device)
        if not self.edge.device_born(device):
            if dead:
                c.counts["while_dead"] += 1
                return
            if not historical:
                c.last[device] = sample
                self._publish(self.edge.device_birth(device, now, sample))
                return
            self._publish(self.edge.device_birth(device, now))
        data = self.edge.device_data(sample, now, historical=historical)
        if data is not None:
            self._publish(data)
        if not historical:
            c.last[device] = sample
        if dead:
            self._publish(self.edge.device_death(device, now))

    def _mark(self) -> None:
        self.markers += 1
        self.marker = f"marker-{self.markers}"
        self.covered, self.uncovered = self.uncovered, []
        try:
            self.session.mark(self.marker)
        except MqttError as err:
            self.lost = str(err)

    def _proven(self) -> None:
        """The marker's UNSUBACK: the DDATA before it were read by the broker."""
        c = self.carried
        ids, self.covered, self.marker = self.covered, [], None
        if self.host is not None and not self.host.online:
            return  # the host was not there: released at the session's end, re-sent
        try:
            c.outbox.ack_many(ids)
        except OutboxError as err:
            c.log.error("Sparkplug: cannot remove delivered samples: %s", err)
            return
        c.sent_once.difference_update(ids)
        c.stats.acknowledged += len(ids)
        c.stats.last_ack_at = time.time()
        c.stats.in_flight = len(self.uncovered)

    def _ndeath(self) -> None:
        """A clean end: the NDEATH (QoS 1, the will's bytes) before disconnecting."""
        will = self.edge.will(utc_now())
        try:
            self.session.publish(will.topic, will.payload, "ndeath")
        except MqttError:
            return
        deadline = time.monotonic() + _NDEATH_WAIT_S
        while time.monotonic() < deadline:
            try:
                what, text, _payload = self.carried.events.get(timeout=0.1)
            except Empty:
                continue
            if what == "lost" or (what == "ack" and text == "ndeath"):
                return
            if what == "ack" and text == self.marker:
                self._proven()


