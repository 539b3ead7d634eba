"""The Sparkplug B uplink (``kind: sparkplug``): the station as a Sparkplug 3.0 edge node
(docs/sparkplug.md). One thread, one MQTT session at a time (forward/mqtt.py), the
payloads and the seq/bdSeq/alias rules of sparkplug/session.py.

What "delivered" means here (reliability contract items 2-4 under Sparkplug's rules).
Sparkplug publishes DDATA at QoS 0, which no PUBACK confirms, so:

* After the DDATA of a claim the uplink queues a *delivery marker* on the same
  connection: an UNSUBSCRIBE of a filter it never subscribed (nothing is published,
  nobody sees it). The broker reads one connection's packets in order, so its UNSUBACK
  proves it read every DDATA before the marker. Only then do those samples leave this
  uplink's view of the outbox (``ack_many``). A DDATA the broker read reaches the hosts
  subscribed at that moment; that is all an MQTT publisher can know.
* With ``primary_host_id``: nothing is born or sent before that host's STATE says
  online (tck-id-message-flow-edge-node-birth-publish-phid-wait), and a marker counts
  only if the host stayed online from the DDATA to the UNSUBACK, as far as the STATE
  messages received tell. When the host goes offline the edge node publishes its
  NDEATH, disconnects and connects again (the next broker of ``brokers``), then waits
  for the host's online STATE and births again; samples not proven are re-sent.
* Not proven (connection lost, agent killed, host offline): the claim goes back to the
  outbox and the samples are sent again on a later connection as historical DDATA
  (``is_historical``), as is every sample acquired before the connection's births (the
  backlog of an outage, a restart or the host's absence), so live views are not
  rewound; samples acquired since go first (the outbox's live lane). A host
  may see a sample twice (a marker lost with the connection); it de-duplicates by
  device and metric timestamp.
* Gap and alarm events have no Sparkplug message: acknowledged unsent and counted. The
  failed polls of a device after its DDEATH are acknowledged unsent (the DDEATH says the
  device is down; sparkplug/liveness.py).
* One uplink's outage never slows another: own thread, own claims, own backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from pathlib import Path
from queue import Empty, SimpleQueue

from edge_agent import __version__
from edge_agent.config.schema import SparkplugConfig, UplinkConfig
from edge_agent.forward.brokers import BrokerRotation
from edge_agent.forward.brokers import log as brokers_log
from edge_agent.forward.forwarder import ForwarderStats
from edge_agent.forward.mqtt import NETWORK_THREAD, MqttError, MqttSession
from edge_agent.forward.mqtt import log as mqtt_log
from edge_agent.forward.uplinklog import uplink_log
from edge_agent.model import Sample, utc_now
from edge_agent.payload import Message as StoredMessage
from edge_agent.retry import Backoff
from edge_agent.sparkplug.bdseq import BdSeqFile
from edge_agent.sparkplug.bodies import BodyError, sample_from_body
from edge_agent.sparkplug.commands import CommandError, decode_node_command
from edge_agent.sparkplug.liveness import DeviceLiveness
from edge_agent.sparkplug.model import DeviceSpec, EdgeNodeSpec
from edge_agent.sparkplug.session import REBIRTH, EdgeNodeSession
from edge_agent.sparkplug.session import Message as SpMessage
from edge_agent.sparkplug.state import PrimaryHostWatch, StateError, parse_state
from edge_agent.sparkplug.topics import NAMESPACE, Verb, node_topic, state_topic
from edge_agent.store.outbox import Outbox, OutboxError
from edge_agent.store.uplinks import UplinkDepth
from edge_agent.store.uplinkview import UplinkOutbox
from edge_agent.watchdog import Heartbeat

log = logging.getLogger(__name__)

_IDLE_WAIT_S = 0.5
_CONNECT_TIMEOUT_S = 10.0
_NDEATH_WAIT_S = 2.0
_BOUND_S = 60.0  # the longest one pass of the loop may take (the watchdog's bound)
COUNTS = ("gaps_skipped", "alarms_skipped", "while_dead", "unreadable", "ncmd_ignored",
          "rebirths", "host_offline")


class SparkplugUplink:
    """Publishes the samples of the devices one Sparkplug uplink carries."""

    def __init__(self, station_id: str, config: UplinkConfig, outbox: Outbox,
                 state_dir: Path | None = None) -> None:
        if config.sparkplug is None:
            raise ValueError(f"uplink {config.name}: kind sparkplug without its settings")
        self.name = config.name
        self.station_id = station_id
        self._log = uplink_log(log, config.name)
        self._outbox = UplinkOutbox(outbox, config.name)
        self._bdseq = BdSeqFile((state_dir or outbox.path.parent)
                                / f"sparkplug-{config.name}.bdseq")
        self._settings = config.sparkplug
        self._new_config: UplinkConfig | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._events: SimpleQueue[tuple[str, str, bytes]] = SimpleQueue()
        self._session: MqttSession | None = None
        self._last: dict[str, Sample] = {}  # newest live sample per device (births)
        self._sent_once: set[str] = set()  # claims sent unproven: re-sent historical
        self.liveness = DeviceLiveness()
        self.counts: Counter[str] = Counter()
        self.stats = ForwarderStats(uplink=config.name)
        self._rotation = self._new_rotation(config.sparkplug)
        self.thread = threading.Thread(target=self._run, name=f"sparkplug-{config.name}",
                                       daemon=True)
        self.heartbeat = Heartbeat(self.thread.name)

    # -- the Uplink protocol (forward/uplink.py) --------------------------------------
    def start(self) -> None:
        self.thread.start()

    def stop(self, grace_s: float | None = None) -> None:
        """Stop claiming; what is sent but not proven gets ``grace_s`` (default the
        broker's ``shutdown_grace_s``) for its marker; then NDEATH and disconnect."""
        grace = self._settings.broker.shutdown_grace_s if grace_s is None else grace_s
        self._grace_deadline = time.monotonic() + grace
        self._stopping.set()
        self._wake.set()
        if self.thread.ident is not None:
            self.thread.join(timeout=grace + 10)

    def wake(self) -> None:
        self._wake.set()

    def reconfigure(self, station_id: str, config: UplinkConfig) -> None:
        """New settings: the session ends (NDEATH) and the next one uses them."""
        with self._lock:
            self.station_id = station_id
            self._new_config = config
        self._wake.set()

    def health(self) -> ForwarderStats:
        return self.stats

    def depth(self, timeout_s: float = 5.0) -> UplinkDepth:
        return self._outbox.depth(timeout_s)

    def network_heartbeats(self) -> list[Heartbeat]:
        session = self._session
        return [session.heartbeat] if session is not None and session.watched else []

    def dead_network_thread(self) -> str | None:
        session = self._session
        return NETWORK_THREAD if session is not None and session.died else None

    # -- settings -----------------------------------------------------------------------
    def _new_rotation(self, settings: SparkplugConfig) -> BrokerRotation:
        broker = settings.broker
        rotation = BrokerRotation(broker.addresses,
                                  Backoff(broker.reconnect_min_s, broker.reconnect_max_s),
                                  uplink_log(brokers_log, self.name))
        self.stats.nodes = tuple(str(address) for address in broker.addresses)
        self.stats.node = rotation.current
        return rotation

    def _take_new_settings(self) -> None:
        with self._lock:
            config, self._new_config = self._new_config, None
        if config is None or config.sparkplug is None:
            return
        self._settings = config.sparkplug
        self._rotation = self._new_rotation(config.sparkplug)
        self._log.info("Sparkplug: connecting to %s with the new settings",
                       self._rotation.current)

    def _node(self) -> EdgeNodeSpec:
        settings = self._settings
        devices = tuple(d for d in settings.node_devices if isinstance(d, DeviceSpec))
        return EdgeNodeSpec(settings.group_id, settings.edge_node_id,
                            f"edge-agent {__version__}", devices,
                            (("Station", self.station_id),))

    # -- sessions -----------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            self.heartbeat.beat(_BOUND_S)
            self._take_new_settings()
            started = time.monotonic()
            try:
                ended_well = self._one_session()
            except Exception:  # a bug must not end the uplink: log, back off, go on
                self._log.exception("Sparkplug: unexpected error; reconnecting")
                ended_well = False
            if self._stopping.is_set():
                break
            if self._new_config is not None:
                continue
            short = time.monotonic() - started < 10.0
            self._pause(self._rotation.moved(failed=short or not ended_well))

    def _pause(self, delay_s: float) -> None:
        end = time.monotonic() + delay_s
        while not self._stopping.is_set() and self._new_config is None:
            left = end - time.monotonic()
            if left <= 0:
                return
            self.heartbeat.beat(_BOUND_S)
            self._wake.wait(min(left, _IDLE_WAIT_S))
            self._wake.clear()

    def _one_session(self) -> bool:
        """Connect, birth, send until the session ends; False when it never got going."""
        settings = self._settings
        node = self._node()
        bd_seq = self._bdseq.next_for_connect()
        edge = EdgeNodeSession(node, bd_seq)
        will = edge.will(utc_now())
        group, edge_id = settings.group_id, settings.edge_node_id
        topics = [f"{NAMESPACE}/{group}/NCMD/{edge_id}", f"{NAMESPACE}/{group}/DCMD/{edge_id}/+"]
        if settings.primary_host_id:
            topics.append(state_topic(settings.primary_host_id))
        self._events = SimpleQueue()
        address = self._rotation.current
        self.stats.node = address
        session = MqttSession(settings.broker, will.topic, will.payload, self._on_ack,
                              self._on_lost, address=address,
                              logger=uplink_log(mqtt_log, self.name), will_qos=1,
                              will_retain=False, subscriptions=tuple(topics),
                              on_message=self._on_message)
        try:
            session.connect(_CONNECT_TIMEOUT_S, abort=self._stopping)
        except (MqttError, OSError, ValueError) as err:
            if isinstance(err.__cause__, OSError):  # refused before CONNECT was sent
                self._bdseq.give_back(bd_seq)
            self.stats.connect_failures += 1
            self.stats.last_error = str(err)
            self._rotation.log_connect_failure(err)
            return False
        self._session = session
        self.stats.sessions += 1
        self.stats.connected = True
        self.stats.state_since = time.time()
        self._rotation.log_connected(None)
        try:
            _Pump(self, session, edge, settings).run()
        finally:
            self._session = None
            self.stats.connected = False
            self.stats.in_flight = 0
            self.stats.state_since = time.time()
            session.close()
            try:
                self._outbox.release_in_flight()
            except OutboxError as err:
                self._log.error("Sparkplug: cannot release in-flight samples: %s", err)
        return True

    # -- callbacks (the MQTT network thread) ------------------------------------------
    def _on_ack(self, token: str, accepted: bool, reason: str) -> None:
        self._events.put(("ack", token, b""))
        self._wake.set()

    def _on_lost(self, reason: str) -> None:
        self._events.put(("lost", reason, b""))
        self._wake.set()

    def _on_message(self, topic: str, payload: bytes) -> None:
        self._events.put(("message", topic, payload))
        self._wake.set()


class _Pump:
    """One connection's work: births, claims, DDATA, markers, commands, STATE."""

    def __init__(self, up: SparkplugUplink, session: MqttSession, edge: EdgeNodeSession,
                 settings: SparkplugConfig) -> None:
        self.up = up
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
        up = self.up
        if self.host is None:
            self._births()
        while self.lost is None and not self.leave:
            up.heartbeat.beat(_BOUND_S)
            self._events()
            if up._stopping.is_set() or up._new_config is not None:
                if not (self.covered or self.uncovered) or time.monotonic() >= getattr(
                        up, "_grace_deadline", 0):
                    break
            elif self.sending and self.lost is None and not self.leave:
                self._fill()
            if self.marker is None and self.uncovered and self.lost is None:
                self._mark()
            up._wake.wait(_IDLE_WAIT_S)
            up._wake.clear()
        if self.lost is None:
            self._ndeath()
        else:
            up.stats.last_error = self.lost
            up._log.warning("Sparkplug: broker connection lost (%s); %d samples not proven "
                            "will be sent again as historical", self.lost,
                            len(self.covered) + len(self.uncovered))

    # -- events -------------------------------------------------------------------------
    def _events(self) -> None:
        while True:
            try:
                what, text, payload = self.up._events.get_nowait()
            except Empty:
                return
            if what == "lost":
                self.lost = text
            elif what == "ack" and text == self.marker:
                self._proven()
            elif what == "message":
                self._message(text, payload)

    def _message(self, topic: str, payload: bytes) -> None:
        up = self.up
        if topic == self.ncmd_topic:
            try:
                command = decode_node_command(payload, self.edge.alias_of(None, REBIRTH))
            except CommandError as err:
                up.counts["ncmd_ignored"] += 1
                up._log.warning("Sparkplug: an NCMD that does not decode (%s); ignored", err)
                return
            if command.rebirth and self.edge.born:
                up.counts["rebirths"] += 1
                up._log.info("Sparkplug: rebirth requested by a host")
                self._births()
            if command.ignored:
                up.counts["ncmd_ignored"] += len(command.ignored)
            return
        if self.host is None or not topic.startswith(f"{NAMESPACE}/STATE/"):
            up.counts["ncmd_ignored"] += 1  # a DCMD: devices take no commands
            return
        try:
            state = parse_state(payload)
        except StateError as err:
            up._log.warning("Sparkplug: STATE of %s does not read (%s); ignored",
                            self.settings.primary_host_id, err)
            return
        if not self.host.update(state):
            return
        if self.host.online and not self.edge.born:
            up._log.info("Sparkplug: primary host %s online; births",
                         self.settings.primary_host_id)
            self._births()
        elif not self.host.online and self.edge.born:
            up.counts["host_offline"] += 1
            up._log.warning("Sparkplug: primary host %s offline; NDEATH, reconnecting, "
                            "samples kept", self.settings.primary_host_id)
            self.covered, self.uncovered, self.marker = [], [], None  # nothing proven now
            self.leave = True

    # -- sending ------------------------------------------------------------------------
    def _publish(self, message: SpMessage) -> None:
        self.session.publish_qos0(message.topic, message.payload)
        self.up.stats.published += 1

    def _births(self) -> None:
        now = utc_now()
        if self.sending_since is None:  # what was acquired before is backlog: historical
            self.sending_since = now.timestamp()
            self.boundary = self.up._outbox.backlog_boundary(self.sending_since)
        for message in self.edge.births(now, self.up._last):
            self._publish(message)
        for device in self.edge.node.devices:  # dead ones are announced so at once
            if self.up.liveness.dead(device.device_id):
                self._publish(self.edge.device_death(device.device_id, now))

    def _fill(self) -> None:
        up = self.up
        free = self.settings.broker.max_inflight - len(self.covered) - len(self.uncovered)
        if free <= 0:
            return
        try:
            claimed = up._outbox.claim_batch(self.boundary, free, 1, 1 << 24)
        except OutboxError as err:
            up.stats.last_error = str(err)
            return
        self.boundary = claimed.boundary
        for message in claimed.messages:
            try:
                self._send(message)
            except MqttError as err:
                self.lost = str(err)
                up._outbox.forget_in_flight([message.msg_id])
                return
            self.uncovered.append(message.msg_id)
        up.stats.in_flight = len(self.covered) + len(self.uncovered)

    def _send(self, message: StoredMessage) -> None:
        """The Sparkplug messages of one claimed outbox message (maybe none)."""
        up = self.up
        if message.kind != "sample":
            up.counts["gaps_skipped" if message.kind == "gap" else "alarms_skipped"] += 1
            return
        try:
            sample = sample_from_body(message.device_id, message.entries[0].body)
            self.edge.node.device(message.device_id)
        except (BodyError, KeyError) as err:
            up.counts["unreadable"] += 1
            up._log.error("Sparkplug: message %s of %s cannot be read (%s); removed "
                          "unsent, counted as unreadable", message.msg_id, message.device_id, err)
            return
        device, now = message.device_id, utc_now()
        historical = (message.historical or message.msg_id in up._sent_once
                      or sample.acquired_at.timestamp() < (self.sending_since or 0.0))
        if message.msg_id in up._sent_once:
            up.stats.resent += 1
        up._sent_once.add(message.msg_id)
        up.liveness.observe(sample)
        dead = up.liveness.dead(device)
        if not self.edge.device_born(device):
            if dead:
                up.counts["while_dead"] += 1
                return
            if not historical:
                up._last[device] = sample
                self._publish(self.edge.device_birth(device, now, sample))
                return
            self._publish(self.edge.device_birth(device, now))
        data = self.edge.device_data(sample, now, historical=historical)
        if data is not None:
            self._publish(data)
        if not historical:
            up._last[device] = sample
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
        up = self.up
        ids, self.covered, self.marker = self.covered, [], None
        if self.host is not None and not self.host.online:
            return  # the host was not there: released at the session's end, re-sent
        try:
            up._outbox.ack_many(ids)
        except OutboxError as err:
            up._log.error("Sparkplug: cannot remove delivered samples: %s", err)
            return
        up._sent_once.difference_update(ids)
        up.stats.acknowledged += len(ids)
        up.stats.last_ack_at = time.time()
        up.stats.in_flight = len(self.uncovered)

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
                what, text, _payload = self.up._events.get(timeout=0.1)
            except Empty:
                continue
            if what == "lost" or (what == "ack" and text == "ndeath"):
                return
            if what == "ack" and text == self.marker:
                self._proven()


def make(station_id: str, config: UplinkConfig, outbox: Outbox) -> SparkplugUplink:
    """The ``KINDS`` factory (forward/uplink.py)."""
    return SparkplugUplink(station_id, config, outbox)
