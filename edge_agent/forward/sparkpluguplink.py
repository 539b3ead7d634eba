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
from queue import SimpleQueue

from edge_agent import __version__
from edge_agent.config.schema import BrokerAddress, SparkplugConfig, UplinkConfig
from edge_agent.forward.brokers import BrokerRotation, uplink_rotation
from edge_agent.forward.forwarder import ForwarderStats
from edge_agent.forward.mqtt import NETWORK_THREAD, MqttError, MqttSession
from edge_agent.forward.mqtt import log as mqtt_log
from edge_agent.forward.sparkplugconn import (
    BOUND_S,
    IDLE_WAIT_S,
    Carried,
    Connection,
    forget_settled,
)
from edge_agent.forward.uplinklog import uplink_log
from edge_agent.model import utc_now
from edge_agent.sparkplug.bdseq import BdSeqFile
from edge_agent.sparkplug.model import DeviceSpec, EdgeNodeSpec
from edge_agent.sparkplug.session import EdgeNodeSession
from edge_agent.sparkplug.topics import NAMESPACE, state_topic
from edge_agent.store.outbox import Outbox, OutboxError
from edge_agent.store.uplinks import UplinkDepth
from edge_agent.store.uplinkview import UplinkOutbox
from edge_agent.watchdog import Heartbeat

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT_S = 10.0
# what is acknowledged unsent (sparkplugconn.Connection._send), by reason: for status
SKIP_COUNTS = ("gaps_skipped", "alarms_skipped", "while_dead", "unreadable")


class SparkplugUplink:
    """Publishes the samples of the devices one Sparkplug uplink carries."""

    kind = "sparkplug"

    def __init__(self, station_id: str, config: UplinkConfig, outbox: Outbox,
                 state_dir: Path | None = None) -> None:
        if config.sparkplug is None:
            raise ValueError(f"uplink {config.name}: kind sparkplug without its settings")
        self.name = config.name
        self.station_id = station_id
        self._log = uplink_log(log, config.name)
        self._outbox = UplinkOutbox(outbox, config.name)
        self._grace_deadline = 0.0
        self._bdseq = BdSeqFile((state_dir or outbox.path.parent)
                                / f"sparkplug-{config.name}.bdseq")
        self._settings = config.sparkplug
        self._new_config: UplinkConfig | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._session: MqttSession | None = None
        self._last_node: BrokerAddress | None = None  # of the last session opened
        self.stats = ForwarderStats(uplink=config.name)
        self._rotation = self._new_rotation(config.sparkplug)
        self.thread = threading.Thread(target=self._run, name=f"sparkplug-{config.name}",
                                       daemon=True)
        self.heartbeat = Heartbeat(self.thread.name)
        self.carried = Carried(self._outbox, self._log, self.stats, self.heartbeat,
                               ending=self._ending, deadline=lambda: self._grace_deadline)
        self._wake = self.carried.wake

    def _ending(self) -> bool:
        return self._stopping.is_set() or self._new_config is not None

    @property
    def counts(self) -> Counter[str]:
        """What was acknowledged unsent (``gaps_skipped``, ``alarms_skipped``,
        ``while_dead``, ``unreadable``), commands ignored (``ncmd_ignored``), ``rebirths``
        and ``host_offline`` episodes, this run."""
        return self.carried.counts

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
            self._grace_deadline = time.monotonic() + self._settings.broker.shutdown_grace_s
        self._wake.set()

    def health(self) -> ForwarderStats:
        return self.stats

    def skip_counts(self) -> dict[str, int]:
        """What this uplink let go unsent, by reason (health/skips.py)."""
        counts = self.carried.counts
        return {name: counts[name] for name in SKIP_COUNTS}

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
        rotation = uplink_rotation(settings.broker, self.name)
        self.stats.nodes = tuple(str(address) for address in settings.broker.addresses)
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
            self.heartbeat.beat(BOUND_S)
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
            self.heartbeat.beat(BOUND_S)
            self._wake.wait(min(left, IDLE_WAIT_S))
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
        self.carried.events = SimpleQueue()  # nothing of an earlier session leaks in
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
        if self._rotation.log_connected(self._last_node):
            self.stats.failovers += 1
        self._last_node = address
        try:
            Connection(self.carried, session, edge, settings).run()
        finally:
            self._session = None
            self.stats.connected = False
            self.stats.in_flight = 0
            self.stats.state_since = time.time()
            session.close()
            try:
                self._outbox.release_in_flight()
                forget_settled(self.carried)
            except OutboxError as err:
                self._log.error("Sparkplug: cannot release in-flight samples: %s", err)
        return True

    # -- callbacks (the MQTT network thread) ------------------------------------------
    def _on_ack(self, token: str, accepted: bool, reason: str) -> None:
        self.carried.events.put(("ack", token, b""))
        self._wake.set()

    def _on_lost(self, reason: str) -> None:
        self.carried.events.put(("lost", reason, b""))
        self._wake.set()

    def _on_message(self, topic: str, payload: bytes) -> None:
        self.carried.events.put(("message", topic, payload))
        self._wake.set()


def make(station_id: str, config: UplinkConfig, outbox: Outbox) -> SparkplugUplink:
    """The ``KINDS`` factory (forward/uplink.py)."""
    return SparkplugUplink(station_id, config, outbox)
