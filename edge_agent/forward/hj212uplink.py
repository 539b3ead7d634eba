"""The HJ 212 uplink (``kind: hj212``): outbox -> 2011 real-time packets -> a platform's
9014 -> ``UplinkOutbox.ack_many``. One thread, one platform session (hj212/session.py).

Guarantees (reliability contract items 2-4, as HJ 212 allows them):

* A sample leaves this uplink's view of the outbox only when its 2011 packet is
  delivered: with ``ack: true`` the platform's 9014 with the packet's QN arrived; with
  ``ack: false`` the platform's TCP stack took every byte (session.py says why that is
  the most an unacknowledged protocol can claim). Each message holds one sample, so an
  acknowledgement is never partial.
* Not delivered (the session's retries exhausted, the connection lost, not connected):
  the claim is given back (``forget_in_flight``) and the sample is sent again later, with
  ``RF=1`` under HJ 212-2025 (``Upload(resent=True)``). A sample sent later than
  ``timeout_s × (retries + 1)`` after its acquisition (the time its first upload would
  have taken) counts as re-sent too: it missed its real-time upload, whether the outage
  was the platform's or the agent's (a restart forgets which uploads failed; the sample's
  age does not). Live samples are claimed before the backlog (claims.py), so
  newly acquired data goes first, as HJ 212-2025 §8.1.2 asks.
* Real-time interval (hj212/rtd_schedule.py): one 2011 per device per ``RtdInterval``
  (the station file's ``realtime_interval_s``, or what the platform set with CN 1062,
  kept in ``hj212-NAME.json``), the first sample at or after the interval's start; the
  others are acknowledged for this platform unsent and counted (``rtd_thinned``). A
  backlog is thinned the same way. 0: every sample. Every message, sent or not, leaves
  through ``_take``: the one hook for what else is built from the samples (statistics).
* A 2011 over 1024 characters (many channels, long codes) is split by the session into
  PNUM/PNO pieces with consecutive QNs; the sample is delivered when every piece's 9014
  (each with its own QN) arrived, else the whole sample is sent again later.
* HJ 212 has no packet for a gap in the data: gap events are acknowledged without being
  sent, logged and counted (``gaps_skipped``); the MQTT uplinks announce them. Alarm rows
  are acknowledged without being sent and counted (``alarms_skipped``): neither HJ
  212-2017 nor what was read of 2025 defines an alarm or over-limit record a monitoring
  station pushes (/work/shared/hj212/README.md A.2-A.5, B.4, B.10: ``SBxxx-RS=4`` is an
  equipment's running state in 2021, ``i12001`` has no alarm state, 3015 is a platform's
  sample-retention command deleted in 2025, data flag ``T`` means over the instrument's
  range). The platform sees the alarm's sample as ordinary 2011 data, its flag from the
  reading's quality (docs/hj212.md, "Alarms"). A sample with none of the platform's
  channels is acknowledged without a packet.
* The uplink never waits for a connection: while the session is down it does not claim,
  so other uplinks are never slowed (each has its own claims).
* Platform commands go to the responder (hj212/responder.py), which keeps what the
  platform set in ``hj212-NAME.json`` beside the outbox. History pulls are answered from
  the stored statistics (forward/hj212stats.py).
* Minute, hourly and daily statistics (2051/2061/2031) are folded from the outbox by
  their own thread (forward/hj212stats.py), also while the platform is down; this uplink
  acknowledges a sample only after it is folded (``FoldingOutbox.ack_many``, which
  ``_take`` calls), and sends closed records before its 2011 backlog
  (``_send_statistics``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from edge_agent.config.schema import BrokerAddress, UplinkConfig
from edge_agent.forward.forwarder import ForwarderStats
from edge_agent.forward.hj212stats import FoldingOutbox, StatsKeeper, statistics_cns
from edge_agent.hj212.codes import merge, shipped_table
from edge_agent.hj212.platform_state import PlatformStateFile
from edge_agent.hj212.realtime import (
    REALTIME_CN,
    DeviceMap,
    Record,
    mappings,
    realtime_record,
)
from edge_agent.hj212.responder import Intervals, Responder
from edge_agent.hj212.rtd_schedule import RealtimeSchedule
from edge_agent.hj212.session import Session
from edge_agent.hj212.session_types import Upload, session_settings
from edge_agent.hj212.statsstore import Plan
from edge_agent.payload import Message
from edge_agent.store.outbox import Outbox, OutboxError
from edge_agent.store.uplinks import UplinkDepth
from edge_agent.store.uplinkview import UplinkOutbox
from edge_agent.watchdog import Heartbeat

log = logging.getLogger(__name__)

CLAIM_MESSAGES = 16  # samples claimed per outbox transaction
LIVE_WINDOW_S = 60.0  # acquired this long before a session began: backlog (re-sent)
_IDLE_WAIT_S = 0.5
_SLACK_S = 30.0
_CP_PER_PIECE = 800  # characters of factors per split piece, leaving room for the header
SKIP_COUNTS = ("gaps_skipped", "alarms_skipped", "unmapped", "unit_mismatches",
               "unreadable", "rtd_thinned")


class Hj212Uplink:
    """Sends the samples of the devices one platform carries as 2011 packets."""

    kind = "hj212"

    def __init__(self, station_id: str, config: UplinkConfig, outbox: Outbox,
                 state_dir: Path | None = None) -> None:
        if config.hj212 is None:
            raise ValueError(f"uplink {config.name}: kind hj212 without HJ 212 settings")
        self.station_id = station_id
        self.name = config.name
        self._stats = StatsKeeper(outbox, config.name, self._statistics_plan)
        self._outbox: UplinkOutbox = FoldingOutbox(outbox, config.name, self._stats)
        self._state_path = (state_dir or outbox.path.parent) / f"hj212-{config.name}.json"
        self._config = config
        self._new_config: UplinkConfig | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._started_at = datetime.now()
        self._failed: set[str] = set()  # messages not delivered once: re-sent with RF=1
        self._failing = False  # an episode of not-delivered uploads is logged once
        self._logged: set[tuple[str, str]] = set()  # (what, key) logged once
        self.skipped: Counter[str] = Counter()
        self._schedule = RealtimeSchedule()  # which samples go as 2011 (rtd_schedule.py)
        self.stats = ForwarderStats(uplink=config.name)
        self.session = self._new_session(config)
        self.thread = threading.Thread(target=self._run, name=f"hj212-{config.name}",
                                       daemon=True)
        self.heartbeat = Heartbeat(self.thread.name)

    # -- the Uplink protocol (forward/uplink.py) --------------------------------------
    def start(self) -> None:
        self.session.start()
        self._stats.start()
        self.thread.start()

    def stop(self, grace_s: float | None = None) -> None:
        """Stop claiming; a packet being sent gets up to ``grace_s`` (default the
        session's timeout) to be answered, then the session closes."""
        self._stopping.set()
        self._wake.set()
        grace = self.session.live().timeout_s if grace_s is None else grace_s
        if self.thread.ident is not None:
            self.thread.join(timeout=grace)
        self.session.stop()
        if self.thread.ident is not None:
            self.thread.join(timeout=10)
        self._stats.stop()

    def wake(self) -> None:
        self._wake.set()

    def reconfigure(self, station_id: str, config: UplinkConfig) -> None:
        """New settings: the session is replaced between two sends (returns at once)."""
        with self._lock:
            self.station_id = station_id
            self._new_config = config
        self._wake.set()

    def health(self) -> ForwarderStats:
        """The platform in the shape status and metrics read for every uplink: ``node``
        the platform, ``published`` packets sent (re-sends included), ``acknowledged``
        samples delivered, ``resent`` samples sent again, ``connect_failures`` the
        session's timeouts plus not-delivered uploads, ``rejected`` bad packets and
        answers to no upload waiting."""
        counts = self.session.counts()
        stats = self.stats
        connected = self.session.connected
        if connected != stats.connected:
            stats.connected = connected
            stats.state_since = time.time()
            if connected:
                stats.sessions += 1
        stats.published = counts["sent"]
        stats.connect_failures = counts["timeouts"] + counts["not_delivered"]
        stats.rejected = counts["bad_packets"] + counts["unmatched_answers"]
        return stats

    def counts(self) -> dict[str, int]:
        """The session's counters and what this uplink skipped (docs/hj212.md)."""
        return {**self.session.counts(), **{name: self.skipped[name] for name in SKIP_COUNTS}}

    def skip_counts(self) -> dict[str, int]:
        """What this uplink let go unsent, by reason (health/skips.py)."""
        return {name: self.skipped[name] for name in SKIP_COUNTS}

    def depth(self, timeout_s: float = 5.0) -> UplinkDepth:
        return self._outbox.depth(timeout_s)

    def network_heartbeats(self) -> list[Heartbeat]:
        """The statistics thread's (``hj212-stats-NAME``): the uplink's other worker,
        watched while the uplink runs."""
        thread = self._stats.thread
        if self._stopping.is_set() or thread.ident is None:
            return []
        return [self._stats.heartbeat]

    def dead_network_thread(self) -> str | None:
        """``hj212-stats-NAME`` when the statistics thread ended while the uplink runs."""
        thread = self._stats.thread
        if self._stopping.is_set() or thread.ident is None or thread.is_alive():
            return None
        return thread.name

    # -- setting up -------------------------------------------------------------------
    def _new_session(self, config: UplinkConfig) -> Session:
        settings = config.hj212
        assert settings is not None  # checked by the constructor and the reader
        self._maps: dict[str, DeviceMap] = mappings(
            settings.channels, merge(shipped_table(), settings.codes))
        self._max_pieces = max_pieces(self._maps)
        self.stats.node = BrokerAddress(settings.host, settings.port)
        self.stats.nodes = (str(self.stats.node),)
        self._responder = Responder(
            settings.password.value if settings.password else "",
            PlatformStateFile(self._state_path), self._stats.history,
            intervals=Intervals(settings.realtime_interval_s, settings.minute_interval_min),
            allow_set_clock=False, started_at=self._started_at)
        return Session(session_settings(settings), self._responder)

    def _take_new_settings(self) -> None:
        with self._lock:
            config, self._new_config = self._new_config, None
        if config is None:
            return
        self.session.stop()
        self._config = config
        self.session = self._new_session(config)
        self.session.start()
        log.info("HJ 212 uplink %s: connecting to %s with the new settings", self.name,
                 self.stats.node)

    # -- the loop ---------------------------------------------------------------------
    def _bound_s(self) -> float:
        """The longest one message may take: every retry of each piece of the longest
        record this platform gets (``_max_pieces``)."""
        live = self.session.live()
        return (live.timeout_s * (live.retries + 1) * self._max_pieces + _IDLE_WAIT_S
                + _SLACK_S)

    def _run(self) -> None:
        boundary: int | None = None
        while not self._stopping.is_set():
            self.heartbeat.beat(self._bound_s())
            self._take_new_settings()
            if not self.session.connected:
                if boundary is not None:  # the session just ended
                    self._forget_settled()
                boundary = None  # the next session's backlog begins where it connects
                self.session.wait_connected(_IDLE_WAIT_S)
                continue
            try:
                if boundary is None:
                    boundary = self._outbox.backlog_boundary(time.time() - LIVE_WINDOW_S)
                if not self._send_statistics():
                    continue
                boundary, busy = self._drain(boundary)
            except OutboxError as err:
                self._once("outbox", "", "HJ 212 uplink %s: cannot read the outbox: %s; "
                           "retrying", self.name, err)
                busy = False
            except Exception:  # a bug must not end the uplink: log, pause, go on
                log.exception("HJ 212 uplink %s: unexpected error", self.name)
                busy = False
            if not busy:
                self._wake.wait(_IDLE_WAIT_S)
                self._wake.clear()

    def _forget_settled(self) -> None:
        """Keep in ``_failed`` only the ids still claimed: a message leaves it when it is
        taken (``_take``), but its claim can also go without that (its device no longer
        carried, its rows gone), and its id never comes back. Run when a session ends,
        so the set is bounded by the open claims, not by every failure ever."""
        try:
            self._failed &= self._outbox.open_claims()
        except OutboxError as err:
            log.debug("HJ 212 uplink %s: failed ids kept: %s", self.name, err)

    # -- statistics (forward/hj212stats.py) ----------------------------------------------
    def _statistics_plan(self) -> Plan:
        """What the statistics cover now: this platform's channels, the CNs the station
        file enables and the minute interval in force (the platform may set it by 1064)."""
        settings = self._config.hj212
        assert settings is not None  # checked by the constructor
        return Plan(self.name, self._maps, statistics_cns(settings.hourly, settings.daily),
                    self._responder.intervals().min_interval_min)

    def _send_statistics(self) -> bool:
        """Closed minute/hourly/daily records first; False when one was not delivered
        (then the loop pauses, as for a 2011 sample not delivered)."""
        if self._stats.send_waiting(self.session,
                                    lambda: self.heartbeat.beat(self._bound_s())):
            return True
        if not self._stopping.is_set():
            self._wake.wait(_IDLE_WAIT_S)
        return False

    def _drain(self, boundary: int) -> tuple[int, bool]:
        """Claim a batch and send it in order; (new boundary, whether there was work)."""
        claimed = self._outbox.claim_batch(boundary, CLAIM_MESSAGES, 1, 1 << 20)
        messages = list(claimed.messages)
        for index, message in enumerate(messages):
            self.heartbeat.beat(self._bound_s())
            if self._stopping.is_set() or not self._deliver(message):
                self._outbox.forget_in_flight([m.msg_id for m in messages[index:]])
                if not self._stopping.is_set():
                    self._wake.wait(_IDLE_WAIT_S)  # not delivered: do not spin
                return claimed.boundary, False
            self._take(message)
        return claimed.boundary, bool(messages)

    def _take(self, message: Message) -> None:
        """The one place a message leaves this uplink's view of the outbox, whatever
        became of it: sent as 2011, left out by the real-time interval (``rtd_thinned``),
        or not for the platform (a gap, an alarm, no mapped channel). Each message passes
        here once per run, after ``_deliver`` said it is done and before its
        acknowledgement (after a crash, one whose acknowledgement was not committed
        passes again), so whatever else is built from the samples (the statistics) hooks
        in here and sees every sample, sent or not."""
        self._outbox.ack_many([message.msg_id])
        self._failed.discard(message.msg_id)
        self.stats.acknowledged += 1
        self.stats.last_ack_at = time.time()

    def _deliver(self, message: Message) -> bool:
        """Do what this platform gets of one message; True when done with it (delivered,
        or nothing to send), False when it must be kept and sent again later."""
        if message.kind != "sample":
            self._skip_event(message)
            return True
        mapping = self._maps.get(message.device_id)
        entry = message.entries[0]
        if mapping is None:
            self.skipped["unmapped"] += 1
            return True
        try:
            record = realtime_record(entry.body, mapping)
        except (ValueError, KeyError, TypeError) as err:
            self.skipped["unreadable"] += 1
            log.error("HJ 212 uplink %s: sample %s of %s cannot be read (%s); not sent",
                      self.name, entry.entry_id, message.device_id, err)
            return True
        if record is None:
            self.skipped["unmapped"] += 1
            return True
        interval_s = self._responder.intervals().rtd_interval_s
        lane = (message.device_id, message.historical)  # live and backlog interleave
        if not self._schedule.due(lane, record.data_time, interval_s):
            self.skipped["rtd_thinned"] += 1
            return True
        if not self._send_realtime(message, record):
            return False
        self._schedule.sent(lane, record.data_time)
        return True

    def _skip_event(self, message: Message) -> None:
        """Gap and alarm rows: HJ 212 defines no record for either (module docstring;
        docs/hj212.md, "Alarms"), so they are counted and logged once, not sent."""
        what = "gaps_skipped" if message.kind == "gap" else "alarms_skipped"
        self.skipped[what] += 1
        self._once(what, "", "HJ 212 uplink %s: %s events are not sent to the platform "
                   "(HJ 212 defines no record for them; counted as %s)", self.name,
                   message.kind, what)

    def _send_realtime(self, message: Message, record: Record) -> bool:
        """Send one sample's 2011 (split into PNUM/PNO pieces by the session when it is
        over 1024 characters; delivered when every piece is); True when delivered."""
        entry = message.entries[0]
        for channel in record.mismatched:
            self.skipped["unit_mismatches"] += 1
            self._once("unit", f"{message.device_id}.{channel}", "HJ 212 uplink %s: "
                       "%s.%s: its unit cannot be converted to the platform's; sent with "
                       "Flag=D and no value", self.name, message.device_id, channel)
        live = self.session.live()
        late = time.time() - record.acquired_unix > live.timeout_s * (live.retries + 1)
        resent = message.msg_id in self._failed or message.historical or late
        result = self.session.send(Upload(REALTIME_CN, record.cp, resent=resent))
        if result.delivered:
            if resent:
                self.stats.resent += 1
            if self._failing:
                self._failing = False
                log.info("HJ 212 uplink %s: the platform takes data again", self.name)
            return True
        self._failed.add(message.msg_id)
        self.stats.last_error = result.reason
        if not self._failing:
            self._failing = True
            log.warning("HJ 212 uplink %s: sample %s of %s not delivered (%s); kept and "
                        "sent again later, marked re-sent", self.name, entry.entry_id,
                        message.device_id, result.reason)
        return False

    def _once(self, what: str, key: str, text: str, *args: object) -> None:
        if (what, key) not in self._logged:
            self._logged.add((what, key))
            log.warning(text, *args)


def max_pieces(maps: dict[str, DeviceMap]) -> int:
    """An upper bound of the packets one 2011 of these devices is split into (at least
    4): each factor ``code-Rtd=<up to 24 characters>,code-Flag=X;`` counted in full,
    about 800 characters of CP per piece once the header is repeated."""
    longest = max((sum(2 * len(code) + 40 for _, code, _, _ in device.channels)
                   for device in maps.values()), default=0)
    return max(4, 1 + longest // _CP_PER_PIECE)


def make(station_id: str, config: UplinkConfig, outbox: Outbox) -> Hj212Uplink:
    """The ``KINDS`` factory (forward/uplink.py)."""
    return Hj212Uplink(station_id, config, outbox)

