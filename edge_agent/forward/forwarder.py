"""The forwarder: outbox -> MQTT (QoS 1) -> PUBACK -> outbox.ack_many. One thread.

Guarantees (reliability contract items 2-4):

* A row is deleted only after the broker acknowledged the message carrying it. Nothing
  published but unacknowledged is counted as delivered: when a session ends (broker gone,
  keepalive expired on a black-holed link, which paho notices 2 x ``keepalive_s`` after
  the last byte from the broker, a rejected PUBACK), its in-flight messages are
  released and re-sent, with the same message id and bytes, on the next session. The
  one exception is a poison message (below): removed unacknowledged, and announced.
* At most ``mqtt.max_inflight`` messages are unacknowledged at any time.
* Live and historical lanes: rows acquired more than ``mqtt.live_window_s`` before the
  current session began (the backlog left by an outage or a restart) are sent marked
  ``historical: true``; newer rows are live and are claimed first, so live data keeps
  flowing while the backlog drains. Past the limit (samples arrive faster than the broker
  takes them), live rows that fall more than ``live_window_s`` behind move to the
  historical lane at the next claim instead of queuing in front of new ones; the episode
  is logged once when it begins and once when it ends, and counted (forward/overload.py).
  Within each lane, messages of a device go out in acquisition order; across lanes a
  consumer orders by ``seq``. The flag is fixed when a message is claimed: one re-sent
  after a disconnect keeps ``historical: false`` however late it arrives (docs/payload.md).
* Claims: each fill of the window claims all its free places in one outbox transaction
  (store/claims.py), so a drain costs one commit per window, not one per message.
* Message size: a backlog message holds at most ``max_samples_per_message`` samples of one
  device, and stops adding samples before ``max_message_bytes`` would be exceeded (a
  single sample larger than that still goes alone).
* Poison: a message that can never be delivered does not block the others. One the MQTT
  client refuses (a topic MQTT cannot carry) is set aside at once; one the broker rejects
  (MQTT 5 reason code >= 0x80) ends the session and is re-sent with backoff, and is set
  aside at its fifth rejection. Setting aside removes its rows and announces its samples
  as a gap event with the reason ``unpublishable`` (forward/poison.py).
* Reconnects back off exponentially with jitter (tenacity) from ``reconnect_min_s`` to
  ``reconnect_max_s``. A broken connection is logged once; the reconnection once.
* Failover: with several ``mqtt.brokers``, a failed connect or a lost session moves to
  the next node at once; the backoff comes after a full round (forward/brokers.py). What
  was in flight on the old node is released and re-sent on the new one with the same ids
  and bytes, as after any disconnect; a node change is logged once, with its reason.
* One forwarder per uplink (issue 12): each has its own thread, session, broker rotation
  and backoff, in-flight window, lanes and status topic, and claims only rows of the
  devices its uplink carries, through its own view of the outbox (store/uplinkview.py),
  so one uplink down or black-holed never slows another. A row leaves the outbox when
  every uplink carrying it has acknowledged it (store/claims.py).
* New settings (``reconfigure``, a reload): claiming stops, in-flight messages get
  ``shutdown_grace_s`` to be acknowledged, the session ends cleanly (offline status), and
  the next session uses the new settings. What was still in flight is released and
  re-sent on it with the same ids, like after a disconnect; it is never counted as
  delivered.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue

from edge_agent import __version__
from edge_agent.config.schema import BrokerAddress, MqttConfig, UplinkConfig
from edge_agent.forward.brokers import BrokerRotation, uplink_rotation
from edge_agent.forward.mqtt import NETWORK_THREAD, MqttError, MqttSession
from edge_agent.forward.mqtt import log as mqtt_log
from edge_agent.forward.overload import Overload
from edge_agent.forward.poison import Poison
from edge_agent.forward.poison import log as poison_log
from edge_agent.forward.uplinklog import uplink_log
from edge_agent.health.histogram import Histogram
from edge_agent.model import iso_utc, utc_now
from edge_agent.payload import Message, encode_message, envelope_overhead_bytes
from edge_agent.store.outbox import Outbox, OutboxError
from edge_agent.store.schema import DEFAULT_UPLINK
from edge_agent.store.uplinks import UplinkDepth
from edge_agent.store.uplinkview import UplinkOutbox
from edge_agent.watchdog import Heartbeat, forwarder_connect_bound_s, forwarder_session_bound_s

log = logging.getLogger(__name__)

_IDLE_WAIT_S = 0.5
_STABLE_SESSION_S = 10.0


def _connect_timeout_s(keepalive_s: int) -> float:
    """How long to wait for CONNACK: long enough for TLS over a slow 4G link, short enough
    that a black-holed uplink is reported within seconds, never above the keepalive."""
    return float(max(5, min(keepalive_s, 15)))


@dataclass
class ForwarderStats:
    """Counters for status output, metrics and tests (written by the forwarder thread).

    ``state_since`` (unix s): when ``connected`` last changed, or the forwarder started.
    ``ack_latency``: seconds from handing a message to the MQTT session to its PUBACK.
    ``unpublishable_*``: messages set aside as poison in this run, and the samples they
    held (forward/poison.py). ``node``: the broker node of the live session, or the one
    being tried; ``nodes``: every configured address; ``failovers``: sessions opened on
    another node than the session before. ``overloaded``: live samples are falling
    behind the live window; ``overload_moved``: samples moved to the historical lane for
    it, this run (forward/overload.py). ``uplink``: the uplink's name; ``resent``:
    messages published again (same id) after a session ended with them unacknowledged;
    ``gaps_announced``: gap events this uplink's broker acknowledged, this run.
    """

    uplink: str = DEFAULT_UPLINK
    resent: int = 0
    gaps_announced: int = 0

    connected: bool = False
    sessions: int = 0
    connect_failures: int = 0
    published: int = 0
    acknowledged: int = 0
    rejected: int = 0
    in_flight: int = 0
    unpublishable_messages: int = 0
    unpublishable_samples: int = 0
    overloaded: bool = False
    overload_moved: int = 0
    state_since: float = field(default_factory=time.time)
    last_error: str | None = None
    last_ack_at: float | None = None  # unix s of the last PUBACK that removed rows
    ack_latency: Histogram = field(default_factory=Histogram)
    node: BrokerAddress | None = None
    nodes: tuple[str, ...] = ()
    failovers: int = 0


class Forwarder:
    """Publishes the outbox to the broker until stopped."""

    kind = "mqtt"

    def __init__(self, station_id: str, config: MqttConfig, outbox: Outbox,
                 uplink: str = DEFAULT_UPLINK) -> None:
        """``uplink``: the name of the uplink this forwarder serves (its claims)."""
        self.station_id = station_id
        self.config = config
        self.name = uplink
        self._log = uplink_log(log, uplink)  # lines name the uplink (uplinklog.py)
        self._outbox = UplinkOutbox(outbox, uplink)
        self._gap_ids: set[str] = set()  # gap messages in flight (``gaps_announced``)
        # (message id, "acked" | "rejected" | "refused", reason, monotonic time)
        self._acks: SimpleQueue[tuple[str, str, str, float]] = SimpleQueue()
        self._sent_at: dict[str, float] = {}  # msg id -> monotonic time handed to paho
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._drain_deadline: float | None = None
        self._in_flight: set[str] = set()
        self._lost_reason: str | None = None
        self._boundary = 0  # the session's backlog boundary (a row id), see _pump
        self.overload = Overload(config.live_window_s, self._log)
        self._new_settings: tuple[str, MqttConfig] | None = None  # from reconfigure()
        self._settings_lock = threading.Lock()
        self._interrupt = threading.Event()  # ends a reconnect pause: stop, new settings
        self._outbox_failing = False
        self.stats = ForwarderStats(uplink=uplink)
        self._rotation = self._new_rotation(config)
        self._last_node: BrokerAddress | None = None  # of the last session opened
        self.poison = Poison(self._outbox, self.stats, uplink_log(poison_log, uplink))
        self._session: MqttSession | None = None  # the live one, for the watchdog
        self.status_topic = config.topics.status.format(station=station_id)
        thread = "forwarder" if uplink == DEFAULT_UPLINK else f"forwarder-{uplink}"
        self.thread = threading.Thread(target=self._run, name=thread, daemon=True)
        self.heartbeat = Heartbeat(self.thread.name)  # the service watchdog's (watchdog.py)

    # -- public -----------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        """New rows were committed: look at the outbox now instead of at the next tick."""
        self._wake.set()

    def stop(self, grace_s: float | None = None) -> None:
        """Stop claiming, give in-flight messages ``grace_s`` to be acknowledged, disconnect."""
        grace = self.config.shutdown_grace_s if grace_s is None else grace_s
        self._drain_deadline = time.monotonic() + grace
        self._stopping.set()
        self._wake.set()
        self._interrupt.set()
        if self.thread.ident is not None:
            self.thread.join(timeout=grace + 10)

    def reconfigure(self, station_id: str, config: MqttConfig | UplinkConfig) -> None:
        """Reconnect with new settings (a reload); returns at once. See the module
        docstring for what happens to in-flight messages. An ``UplinkConfig`` (the Uplink
        protocol, forward/uplink.py) gives its ``mqtt`` settings."""
        if isinstance(config, UplinkConfig):
            if config.mqtt is None:
                raise ValueError(f"uplink {config.name}: kind mqtt without MQTT settings")
            config = config.mqtt
        with self._settings_lock:
            self._new_settings = (station_id, config)
            self._drain_deadline = time.monotonic() + self.config.shutdown_grace_s
        self._wake.set()
        self._interrupt.set()

    def health(self) -> ForwarderStats:
        """The counters status and metrics read (the Uplink protocol, forward/uplink.py)."""
        return self.stats

    def depth(self, timeout_s: float = 5.0) -> UplinkDepth:
        """This uplink's backlog, oldest waiting sample and in flight (may raise
        OutboxError, like ``Outbox.depth``)."""
        return self._outbox.depth(timeout_s)

    def network_heartbeats(self) -> list[Heartbeat]:
        """The live session's network thread heartbeat, if a session is live: it must
        be alive and beating (watchdog.py); a lost session's thread ends by design."""
        session = self._session
        return [session.heartbeat] if session is not None and session.watched else []

    def dead_network_thread(self) -> str | None:
        """``mqtt-net`` when the live session's network thread has ended unexpectedly:
        nothing would be delivered again, and only a restart cures it."""
        session = self._session
        return NETWORK_THREAD if session is not None and session.died else None

    # -- session loop -----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.heartbeat.beat(forwarder_connect_bound_s(self.config))
            self._take_new_settings()
            session = self._try_connect()
            if session is None:
                self._pause(self._rotation.moved(failed=True))
                continue
            started = time.monotonic()
            self._session = session
            try:
                self._pump(session)
            except Exception:  # a bug must not end forwarding: drop the session, go on
                self._log.exception("unexpected error while forwarding; reconnecting")
                self._lost_reason = "agent error"
            lost = self._lost_reason
            self._end_session(session)
            if self._stopping.is_set() or (lost is None and self._new_settings is not None):
                continue  # a stop, or new settings: a new rotation starts at the first node
            # A session that ended quickly (rejected publish, broker kicking us out) counts
            # as a failure, so reconnects back off instead of storming the broker.
            short = time.monotonic() - started < _STABLE_SESSION_S
            self._rotation.log_leaving(lost or "session ended")
            self._pause(self._rotation.moved(failed=short))

    def _new_rotation(self, config: MqttConfig) -> BrokerRotation:
        """A rotation over ``config``'s nodes, starting at the first (start, reload)."""
        rotation = uplink_rotation(config, self.name)
        self.stats.nodes = tuple(str(address) for address in config.addresses)
        self.stats.node = rotation.current
        return rotation

    def _pause(self, delay_s: float) -> None:
        """Back off before reconnecting; a stop or new settings end the pause at once."""
        self._interrupt.clear()
        if self._stopping.is_set() or self._new_settings is not None:
            return
        self._interrupt.wait(delay_s)

    def _take_new_settings(self) -> bool:
        """Switch to the settings ``reconfigure`` left, if any (between sessions only)."""
        with self._settings_lock:
            settings, self._new_settings = self._new_settings, None
        if settings is None:
            return False
        self.station_id, self.config = settings
        self._rotation = self._new_rotation(self.config)
        self.overload.window_s = self.config.live_window_s
        self.status_topic = self.config.topics.status.format(station=self.station_id)
        self._log.info("forwarder: connecting to broker %s with the new settings",
                       self._rotation.current)
        return True

    def _try_connect(self) -> MqttSession | None:
        """A session with the rotation's current node, or None (logged, counted)."""
        self._lost_reason = None
        session = None
        rotation = self._rotation
        node = rotation.current
        self.stats.node = node
        try:
            session = MqttSession(self.config, self.status_topic, self._status(False),
                                  self._on_ack, self._on_lost, self._on_refused, address=node,
                                  logger=uplink_log(mqtt_log, self.name))
            session.connect(timeout_s=_connect_timeout_s(self.config.keepalive_s),
                            abort=self._stopping)
            session.publish_status(self.status_topic, self._status(True))
        except (MqttError, OSError, ValueError) as err:  # ValueError: paho's TLS setup
            if session is not None:
                session.close()
            self.stats.connect_failures += 1
            self.stats.last_error = str(err)
            self._rotation.log_connect_failure(err)
            return None
        self.stats.sessions += 1
        self.stats.connected = True
        self.stats.state_since = time.time()
        if self._rotation.log_connected(self._last_node):
            self.stats.failovers += 1
        self._last_node = node
        return session

    def _on_lost(self, reason: str) -> None:
        self._lost_reason = reason
        self._wake.set()

    def _on_ack(self, msg_id: str, accepted: bool, reason: str) -> None:
        self._acks.put((msg_id, "acked" if accepted else "rejected", reason,
                        time.monotonic()))
        self._wake.set()

    def _on_refused(self, msg_id: str, reason: str) -> None:
        self._acks.put((msg_id, "refused", reason, time.monotonic()))
        self._wake.set()

    def _pump(self, session: MqttSession) -> None:
        self._boundary = self._outbox.backlog_boundary(time.time() - self.config.live_window_s)
        while self._lost_reason is None:
            self.heartbeat.beat(forwarder_session_bound_s(self.config))
            acked = self._process_acks(session)
            if self._stopping.is_set() or self._new_settings is not None:
                self._acknowledge(acked)
                if not self._in_flight or time.monotonic() >= (self._drain_deadline or 0):
                    return
            else:
                self._fill_window(session, acked)
            self._wake.wait(_IDLE_WAIT_S)
            self._wake.clear()
        self.stats.last_error = self._lost_reason
        self._log.warning("broker connection lost (%s); %d unacknowledged messages will be sent "
                          "again", self._lost_reason, len(self._in_flight))

    def _fill_window(self, session: MqttSession, acked: list[str]) -> None:
        """Delete what was ``acked`` and claim the whole free part of the window, in one
        outbox transaction; publish the claims. Live rows older than ``live_window_s``
        move to the historical lane first."""
        free = self.config.max_inflight - len(self._in_flight.difference(acked))
        if free <= 0 or self._lost_reason is not None:
            self._acknowledge(acked)
            return
        try:
            claimed = self._outbox.claim_batch(
                self._boundary, free, self.config.max_samples_per_message,
                self._max_body_bytes(), live_cutoff=time.time() - self.config.live_window_s,
                acked=acked)
        except OutboxError as err:
            self._acknowledged(acked, err)
            self._outbox_trouble(err)
            return
        self._acknowledged(acked)
        if self._outbox_failing:
            self._outbox_failing = False
            self._log.info("reading the outbox again")
        self._boundary = claimed.boundary
        self.stats.resent += claimed.resent
        self.overload.observe(claimed.moved, time.monotonic())
        self.stats.overloaded = self.overload.active
        self.stats.overload_moved = self.overload.moved_total
        for index, message in enumerate(claimed.messages):
            if not self._publish(session, message):
                # Not handed to the session: offered again by the next claim, same id.
                self._outbox.forget_in_flight([m.msg_id for m in claimed.messages[index:]
                                               if m.msg_id not in self._in_flight])
                return

    def _outbox_trouble(self, err: OutboxError) -> None:
        """Log a failing outbox once per episode (a full disk fails every claim)."""
        if not self._outbox_failing:
            self._outbox_failing = True
            self._log.error("cannot read the outbox: %s; retrying, samples stay where they "
                            "are", err)

    def _max_body_bytes(self) -> int:
        overhead = envelope_overhead_bytes(self.station_id, "x" * 64)
        return max(1, self.config.max_message_bytes - overhead)

    def _publish(self, session: MqttSession, message: Message) -> bool:
        """Hand ``message`` to the session; False: stop filling the window for now."""
        topics = self.config.topics
        template = {"sample": topics.data, "alarm": topics.alarm}.get(message.kind, topics.gap)
        try:
            topic = template.format(station=self.station_id, device=message.device_id)
            payload = encode_message(message, self.station_id)
        except ValueError as err:  # cannot even be encoded: poison, like a refusal
            return self.poison.refused(message.msg_id, str(err))
        self._in_flight.add(message.msg_id)
        self._sent_at[message.msg_id] = time.monotonic()
        if message.kind == "gap":
            self._gap_ids.add(message.msg_id)
        try:
            session.publish(topic, payload, message.msg_id)
        except MqttError as err:
            self._on_lost(str(err))
            return False
        self.stats.published += 1
        self.stats.in_flight = len(self._in_flight)
        return True

    def _process_acks(self, session: MqttSession) -> list[str]:
        """Handle what the broker answered; returns the accepted message ids, to be
        deleted from the outbox by the caller."""
        accepted_ids: list[str] = []
        while True:
            try:
                msg_id, outcome, reason, acked_at = self._acks.get_nowait()
            except Empty:
                break
            sent_at = self._sent_at.pop(msg_id, None)  # None: sent in an earlier session
            if outcome == "acked" and sent_at is not None:
                self.stats.ack_latency.observe(acked_at - sent_at)
            if outcome == "acked":  # even from an earlier session: the broker has it
                accepted_ids.append(msg_id)
                if msg_id in self._gap_ids:
                    self.stats.gaps_announced += 1
                self.poison.delivered(msg_id)
            elif outcome == "refused":
                self.poison.refused(msg_id, reason)
                self._settled(msg_id)
            else:
                self.stats.rejected += 1
                if self.poison.rejected(msg_id, reason):
                    self._settled(msg_id)
                else:
                    self._on_lost(f"publish rejected: {reason}")
        return accepted_ids

    def _settled(self, msg_id: str) -> None:
        """``msg_id`` needs no acknowledgement any more (set aside, or to be offered
        again by the outbox): it leaves the window."""
        self._in_flight.discard(msg_id)
        self.stats.in_flight = len(self._in_flight)

    def _acknowledge(self, msg_ids: list[str]) -> None:
        """Delete acknowledged messages from the outbox on their own (no claim with them)."""
        if not msg_ids:
            return
        try:
            self._outbox.ack_many(msg_ids)
        except OutboxError as err:
            self._acknowledged(msg_ids, err)
            return
        self._acknowledged(msg_ids)

    def _acknowledged(self, msg_ids: list[str], error: OutboxError | None = None) -> None:
        """The outbox deleted ``msg_ids`` (or failed to: ``error``); they leave the window."""
        if error is None and msg_ids:
            self.stats.acknowledged += len(msg_ids)
            self.stats.last_ack_at = time.time()
        elif msg_ids:
            # Rows stay and will be re-sent with the same ids (a duplicate, not a loss);
            # forgetting them here keeps the window from filling with acked messages.
            self._log.error("cannot remove acknowledged messages from the outbox: %s", error)
        self._in_flight.difference_update(msg_ids)
        self._gap_ids.difference_update(msg_ids)
        self.stats.in_flight = len(self._in_flight)

    def _end_session(self, session: MqttSession) -> None:
        ending = self._stopping.is_set() or self._new_settings is not None
        graceful = ending and self._lost_reason is None
        if graceful and not self._stopping.is_set():
            self._log.info("ending the broker session for new settings; %d unacknowledged "
                           "messages will be sent again", len(self._in_flight))
        if graceful:
            session.close(self.status_topic, self._status(False))
        else:
            session.close()
        self._session = None
        self.stats.connected = False
        self.stats.state_since = time.time()
        self._in_flight.clear()
        self._gap_ids.clear()
        self._sent_at.clear()
        self.stats.in_flight = 0
        try:
            self._outbox.release_in_flight()
        except OutboxError as err:
            self._log.error("outbox unavailable while releasing in-flight messages: %s", err)

    def _status(self, online: bool) -> bytes:
        body = {"v": 1, "type": "status", "station": self.station_id,
                "state": "online" if online else "offline", "agent": f"edge-agent {__version__}"}
        if online:
            body["since"] = iso_utc(utc_now())
        return json.dumps(body, separators=(",", ":")).encode()
