"""The one module that imports paho-mqtt: one broker session, discarded when it ends.

Each connection is a fresh paho client with a clean session, driven by our own network
thread (no paho auto-reconnect). So paho's in-memory queue is never the source of truth:
when a session ends, whatever it had in flight is forgotten here and re-sent from the
outbox by the forwarder on the next session.

One thread owns the socket. paho 2.x writes to the socket from ``publish()`` when no
``loop_start()`` thread exists, and its packet writer is not locked: publishing from the
forwarder thread while our thread runs ``loop()`` interleaves packets on a slow uplink
(seen: corrupted payloads that the broker acknowledged). So ``publish()`` here only
queues and wakes the network thread through a socket pair; that thread makes every paho
call, driving paho's documented external-loop API (``socket``, ``loop_read``,
``loop_write``, ``loop_misc``) from its own ``select``. A queued publish is therefore sent
at once, not after a polling interval (which capped a one-message window at ~40 msg/s).
"Acknowledged" means the broker's PUBACK arrived for the message's packet id, with a
success reason code under MQTT 5.

The network thread survives what a message does to it. A publish that paho refuses
before anything is sent (a topic over 65,535 bytes, a wildcard or an unencodable
character in it, a payload over MQTT's size limit) is reported through ``on_refused``
and the session goes on: the message could never be sent, so resending it would block
the queue forever (the forwarder sets it aside, forward/poison.py). Any other error in
the thread ends the session (logged with its traceback) and the forwarder reconnects.
The thread carries a heartbeat (watchdog.py) while its session is live, so if it ever
ended or hung anyway, the agent reports it dead (``Agent.dead_threads``, ``/healthz``)
and withholds the service watchdog's keep-alives.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from edge_agent.config.schema import BrokerAddress, MqttConfig, MqttProtocol
from edge_agent.watchdog import MQTT_NET_PASS_S, Heartbeat

log = logging.getLogger(__name__)

AckCallback = Callable[[str, bool, str], None]  # token, accepted, reason text
MessageCallback = Callable[[str, bytes], None]  # topic, payload (subscriptions)
# The topic filter a delivery marker unsubscribes from (``mark``): never subscribed, so
# the UNSUBSCRIBE changes nothing at the broker and publishes nothing anyone sees.
MARKER_FILTER = "edge-agent/delivery-marker"
LostCallback = Callable[[str], None]
RefusedCallback = Callable[[str, str], None]  # token, why the client refused it
NETWORK_THREAD = "mqtt-net"

# The network thread's longest sleep with nothing to do. Queued publishes and close() wake
# it at once; this only bounds how late keepalive pings (loop_misc) can be.
_IDLE_WAIT_S = 0.5


class MqttError(Exception):
    """A session could not be established or used."""


@dataclass
class _Outgoing:
    topic: str
    payload: bytes
    token: str  # "" for untracked status messages
    retain: bool
    acked: threading.Event = field(default_factory=threading.Event)
    qos: int | None = None  # None: the configuration's (1); 0 for Sparkplug data
    marker: bool = False  # an UNSUBSCRIBE whose UNSUBACK reports ``token`` (``mark``)


class MqttSession:
    """One connection to one broker node; create a new one after it is lost."""

    def __init__(self, config: MqttConfig, will_topic: str, will_payload: bytes,
                 on_ack: AckCallback, on_lost: LostCallback,
                 on_refused: RefusedCallback | None = None,
                 address: BrokerAddress | None = None,
                 logger: logging.Logger | logging.LoggerAdapter | None = None,
                 *, will_qos: int = 1, will_retain: bool = True,
                 subscriptions: tuple[str, ...] = (),
                 on_message: MessageCallback | None = None) -> None:
        """``will_qos``/``will_retain``: the last will's (Sparkplug's NDEATH is QoS 1, not
        retained). ``subscriptions``: topic filters subscribed (QoS 1) as soon as the
        broker accepts the connection, before anything queued is sent; their messages go
        to ``on_message(topic, payload)`` on the network thread.
        ``on_refused(token, reason)``: paho refused a tracked message before sending
        it (see the module docstring); without it, such a refusal ends the session.
        ``address``: the node to connect to (the forwarder's failover picks it); the
        first of ``config.addresses`` when not given. Everything else (credentials,
        TLS, client id) is the same for every node. ``logger``: names the uplink
        (forward/uplinklog.py); this module's logger when not given."""
        self._log = logger if logger is not None else log
        self._config = config
        self.address = address or config.addresses[0]
        self._on_ack = on_ack
        self._on_lost = on_lost
        self._on_refused = on_refused
        self._outgoing: SimpleQueue[_Outgoing] = SimpleQueue()
        self._pending: dict[int, _Outgoing] = {}  # network thread only
        self._markers: dict[int, _Outgoing] = {}  # UNSUBSCRIBE mid -> marker, same thread
        self._connected = threading.Event()
        self._connack_reason: str | None = None
        self._closing = threading.Event()
        self._disconnect_requested = threading.Event()
        self._lost_lock = threading.Lock()
        self._lost_reported = False
        self._subscriptions = subscriptions
        self._on_message = on_message
        self._client = self._make_client(will_topic, will_payload, will_qos, will_retain)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._loop_thread = threading.Thread(target=self._loop, name=NETWORK_THREAD,
                                             daemon=True)
        self.heartbeat = Heartbeat(NETWORK_THREAD)  # the service watchdog's (watchdog.py)

    def _make_client(self, will_topic: str, will_payload: bytes, will_qos: int,
                     will_retain: bool) -> paho.Client:
        cfg = self._config
        v5 = cfg.protocol is MqttProtocol.V5
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else True,
            reconnect_on_failure=False,
        )
        client.max_inflight_messages_set(cfg.max_inflight + 1)  # + the status message
        client.max_queued_messages_set(0)
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password.value if cfg.password else None)
        if cfg.tls is not None:
            client.tls_set(
                ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
                certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
                keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
                cert_reqs=ssl.CERT_NONE if cfg.tls.insecure_skip_verify else ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(cfg.tls.insecure_skip_verify)
        client.will_set(will_topic, will_payload, qos=will_qos, retain=will_retain)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_publish = self._handle_publish
        client.on_unsubscribe = self._handle_unsubscribe
        client.on_message = self._handle_message
        return client

    # -- lifecycle ------------------------------------------------------------------

    def connect(self, timeout_s: float, abort: threading.Event | None = None) -> None:
        """Open the connection and wait for a successful CONNACK, or raise MqttError.

        Setting ``abort`` (the agent is stopping) ends the wait early with MqttError.
        """
        cfg = self._config
        host, port = self.address.host, self.address.port
        try:
            if cfg.protocol is MqttProtocol.V5:
                self._client.connect(host, port, keepalive=cfg.keepalive_s, clean_start=True)
            else:
                self._client.connect(host, port, keepalive=cfg.keepalive_s)
        except (OSError, ValueError, ssl.SSLError) as err:
            raise MqttError(f"cannot connect to {self.address}: {err}") from err
        self._loop_thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._connected.wait(0.1):
            stopping = abort is not None and abort.is_set()
            if (stopping or self._connack_reason or self._lost_reported
                    or time.monotonic() >= deadline):
                reason = self._connack_reason or (
                    "stopping" if stopping else "connection closed" if self._lost_reported
                    else f"no CONNACK within {timeout_s:.0f} s")
                self.close()
                raise MqttError(f"broker {self.address} refused or did not answer: {reason}")

    def _loop(self) -> None:
        """The network thread: every paho call after connect() happens here."""
        try:
            while not self._closing.is_set():
                self.heartbeat.beat(MQTT_NET_PASS_S)
                try:
                    rc = self._step()
                except Exception as err:  # a bug here or in paho: end this session only
                    self._log.exception("MQTT network thread: unexpected error; ending this "
                                        "session, the forwarder reconnects")
                    self._report_lost(f"agent error in the MQTT network thread: {err!r}")
                    return
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    self._report_lost(paho.error_string(rc))
                    return
        finally:
            self._wake_r.close()

    def _step(self) -> MQTTErrorCode:
        """One pass: hand queued publishes to paho, then read, write, keep alive."""
        self._send_queued()
        if self._disconnect_requested.is_set():
            self._client.disconnect()
            self._disconnect_requested.clear()
        return self._pump()

    def _pump(self) -> MQTTErrorCode:
        """Wait for the socket, a wake-up or the idle timeout; let paho read, write and
        check its keepalive (what paho's own ``loop()`` does, plus our wake-up pipe)."""
        sock = self._client.socket()
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        tls_buffered = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
        idle_s = 0.0 if tls_buffered or not self._outgoing.empty() else _IDLE_WAIT_S
        want_write = [sock] if self._client.want_write() else []
        try:
            readable, writable, _ = select.select([sock, self._wake_r], want_write, [], idle_s)
        except (OSError, ValueError, TypeError):  # socket closed under us
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if self._wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                self._wake_r.recv(4096)
        if sock in readable or tls_buffered:
            rc = self._client.loop_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        if sock in writable:
            rc = self._client.loop_write()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        return self._client.loop_misc()

    def _wake(self) -> None:
        # BlockingIOError: a wake-up is already pending; OSError: the session is closed.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _send_queued(self) -> None:
        while True:
            try:
                item = self._outgoing.get_nowait()
            except Empty:
                return
            if item.marker:
                rc, mid = self._client.unsubscribe(MARKER_FILTER)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
                    self._report_lost(f"unsubscribe failed: {paho.error_string(rc)}")
                    return
                self._markers[mid] = item
                continue
            qos = self._config.qos if item.qos is None else item.qos
            try:
                info = self._client.publish(item.topic, item.payload, qos=qos,
                                            retain=item.retain)
            except (ValueError, TypeError) as err:  # refused before a byte was sent
                self._refused(item, str(err) or type(err).__name__)
                continue
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._report_lost(f"publish failed: {paho.error_string(info.rc)}")
                return
            if qos == 0:
                item.acked.set()  # nothing comes back for QoS 0: written is all there is
                continue
            self._pending[info.mid] = item

    def _refused(self, item: _Outgoing, reason: str) -> None:
        """paho will not send ``item`` (nothing reached the socket): the session is
        intact; the owner decides what happens to the message."""
        item.acked.set()  # nobody may wait for it
        if item.token and self._on_refused is not None:
            self._on_refused(item.token, reason)
        elif item.token:
            self._report_lost(f"publish refused: {reason}")
        else:
            self._log.error("the station status message cannot be published (%s); data goes "
                            "on without it", reason)

    @property
    def watched(self) -> bool:
        """The network thread is started and its session live: it must be alive and
        beating. (It ends by design once the session is lost or closed.)"""
        return (self._loop_thread.ident is not None and not self._lost_reported
                and not self._closing.is_set())

    @property
    def died(self) -> bool:
        """The network thread ended although its session was neither lost nor closed:
        a bug got past its safety net, and this session will never deliver again."""
        return self.watched and not self._loop_thread.is_alive()

    def _report_lost(self, reason: str) -> None:
        with self._lost_lock:
            if self._lost_reported or self._closing.is_set():
                return
            self._lost_reported = True
        self._connected.clear()
        self._on_lost(reason)

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and not self._lost_reported

    def close(self, final_topic: str | None = None, final_payload: bytes | None = None,
              timeout_s: float = 2.0) -> None:
        """End the session; with ``final_topic``, publish a last retained status first.

        If the network thread died, nothing can be published: the socket is closed
        without a DISCONNECT, so the broker publishes the last will (offline) instead.
        """
        died = self.died
        if final_topic is not None and self.connected and not died:
            item = self._queue(final_topic, final_payload or b"", "", retain=True)
            if not item.acked.wait(timeout_s):
                self._log.debug("final status publish not confirmed within %.0f s", timeout_s)
            self._disconnect_requested.set()
            self._wake()
            deadline = time.monotonic() + timeout_s
            while self._disconnect_requested.is_set() and time.monotonic() < deadline \
                    and self._loop_thread.is_alive():
                time.sleep(0.01)
        self._closing.set()
        self._wake()
        if self._loop_thread.is_alive() and threading.current_thread() is not self._loop_thread:
            self._loop_thread.join(timeout=5)
        if died:
            sock = self._client.socket()
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        elif not self._loop_thread.is_alive():
            self._client.disconnect()  # closes the socket if still open; no thread races
        self._connected.clear()
        if not self._loop_thread.is_alive():
            self._wake_w.close()
            if self._loop_thread.ident is None:  # never started: its finally never ran
                self._wake_r.close()

    # -- publishing -----------------------------------------------------------------

    def _queue(self, topic: str, payload: bytes, token: str, retain: bool) -> _Outgoing:
        if not self.connected:
            raise MqttError("not connected")
        item = _Outgoing(topic, payload, token, retain)
        self._outgoing.put(item)
        self._wake()
        return item

    def publish(self, topic: str, payload: bytes, token: str, retain: bool = False) -> None:
        """Queue a QoS 1 publish; ``on_ack(token, ...)`` fires on the broker's PUBACK."""
        self._queue(topic, payload, token, retain)

    def publish_qos0(self, topic: str, payload: bytes) -> None:
        """Queue a QoS 0 publish (Sparkplug data): nothing confirms it; ``mark`` after it
        is what proves the broker read it."""
        item = _Outgoing(topic, payload, "", False, qos=0)
        self._put(item)

    def mark(self, token: str) -> None:
        """Queue a delivery marker: an UNSUBSCRIBE (of ``MARKER_FILTER``) after what was
        queued before it; ``on_ack(token, True, ...)`` fires on its UNSUBACK. The broker
        reads a connection's packets in order, so that answer proves it read every
        publish queued before the marker on this connection (QoS 0 ones included)."""
        self._put(_Outgoing("", b"", token, False, marker=True))

    def _put(self, item: _Outgoing) -> None:
        if not self.connected:
            raise MqttError("not connected")
        self._outgoing.put(item)
        self._wake()

    def publish_status(self, topic: str, payload: bytes) -> None:
        """Retained status; its acknowledgement is consumed here, not reported."""
        self._queue(topic, payload, "", retain=True)

    # -- paho callbacks (network thread) ------------------------------------------

    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._connack_reason = str(reason_code)
            return
        for topic in self._subscriptions:  # queued before anything the owner publishes
            client.subscribe(topic, qos=1)
        self._connected.set()

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._report_lost(f"disconnected: {reason_code}")

    def _handle_publish(self, client, userdata, mid, reason_code, properties) -> None:
        item = self._pending.pop(mid, None)
        if item is None:
            return
        item.acked.set()
        if item.token:  # "" marks an untracked status message
            self._on_ack(item.token, not reason_code.is_failure, str(reason_code))


    def _handle_unsubscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        item = self._markers.pop(mid, None)
        if item is None:
            return
        item.acked.set()
        self._on_ack(item.token, True, "UNSUBACK")

    def _handle_message(self, client, userdata, message) -> None:
        if self._on_message is not None:
            self._on_message(message.topic, bytes(message.payload))


class Subscriber:
    """A plain subscriber (demo output, tests): calls ``on_message(topic, payload)``.

    Uses paho's own loop thread and reconnects by itself; with ``session_name`` it keeps a
    persistent session (QoS 1) so nothing published while it was away is missed.
    """

    def __init__(self, host: str, port: int, topic: str,
                 on_message: Callable[[str, bytes, bool], None],
                 session_name: str | None = None) -> None:
        self._topic = topic
        self._on_message = on_message
        self._subscribed = threading.Event()
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=session_name or "",
            clean_session=session_name is None,
        )
        self._client.on_connect = self._handle_connect
        self._client.on_subscribe = self._handle_subscribe
        self._client.on_message = self._handle_message
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._host, self._port = host, port

    def start(self, timeout_s: float = 10.0) -> Subscriber:
        self._client.connect(self._host, self._port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            raise MqttError(f"could not subscribe to {self._topic} on {self._host}:{self._port}")
        return self

    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            client.subscribe(self._topic, qos=1)

    def _handle_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._subscribed.set()

    def _handle_message(self, client, userdata, message) -> None:
        self._on_message(message.topic, message.payload, bool(message.retain))

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
