"""One MQTT connection of a Sparkplug edge node, as a pure state machine.

The uplink (forward/sparkpluguplink.py, forward/sparkplugconn.py) owns the MQTT client;
this object owns what Sparkplug asks the edge node to remember during one connection,
and turns the agent's samples into messages:

- ``bdSeq``: given at construction (bdseq.py numbers connections across restarts); the
  NDEATH will (``will``) and every NBIRTH of this connection carry the same value
  (tck-id-topics-nbirth-bdseq-matching, ...-rebirth-action-3).
- ``seq``: 0 on NBIRTH, then +1 modulo 256 on every message but NDEATH
  (tck-id-payloads-sequence-num-*). Each message is numbered when it is built, so the
  uplink must send messages in the order it asked for them.
- aliases: every metric of the node and its devices gets a number unique within the node
  (tck-id-payloads-alias-uniqueness), fixed by the order of the model, so it is the same
  after a rebirth or a reconnect. Births carry name and alias; DDATA the alias only.
- births: nothing is sent for a device before its DBIRTH, and no DBIRTH before the
  NBIRTH (tck-id-payloads-dbirth-order, ...-ddata-order): asking is a SessionOrderError,
  a bug in the caller, never a message a host would reject.
- report by exception: a live DDATA carries the metrics whose value, quality, reason or
  analysis time changed since this connection last sent them; a historical DDATA (backlog)
  carries every reading, flagged ``is_historical``, and changes nothing remembered.

No clock and no I/O here: callers pass ``now``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from edge_agent.model import Quality, Reading, Sample
from edge_agent.sparkplug import sparkplug_b_pb2 as pb
from edge_agent.sparkplug.datatypes import ValueTypeError, set_value
from edge_agent.sparkplug.metrics import Property, add_metric, add_properties, new_payload
from edge_agent.sparkplug.model import ChannelSpec, EdgeNodeSpec
from edge_agent.sparkplug.quality import (
    AGENT_QUALITY_KEY,
    QUALITY_KEY,
    REASON_KEY,
    quality_code,
)
from edge_agent.sparkplug.topics import Verb, node_topic

log = logging.getLogger(__name__)

BD_SEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
AGENT_VERSION = "Properties/Agent Version"
ENG_UNIT_KEY = "engUnit"
ANALYSIS_TIME_KEY = "analysisTime"
STREAM_KEY = "stream"
NOT_READ_YET = "not_read_yet"
TYPE_MISMATCH = "type_mismatch"
SEQ_MODULUS = 256


class SessionOrderError(RuntimeError):
    """A message asked for out of Sparkplug's order (data before a birth, a death of a
    device never born): a bug in the uplink."""


@dataclass(frozen=True)
class Message:
    """One MQTT publish: Sparkplug says QoS 0 and no retain for all but NDEATH (QoS 1)."""

    verb: Verb
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    seq: int | None = None


@dataclass
class SessionCounters:
    """What the session dropped or changed, for the uplink's metrics and log."""

    unknown_channels: int = 0  # readings of a channel not in the device's birth
    type_mismatches: int = 0  # values that did not fit their datatype: sent as null


@dataclass(frozen=True)
class _Sent:
    value: object
    quality: Quality
    reason: str | None
    analysis_ms: int | None


@dataclass
class _Metric:
    alias: int
    channel: ChannelSpec


@dataclass
class EdgeNodeSession:
    """The Sparkplug state of one connection of edge node ``node`` numbered ``bd_seq``."""

    node: EdgeNodeSpec
    bd_seq: int
    counters: SessionCounters = field(default_factory=SessionCounters)

    def __post_init__(self) -> None:
        if not 0 <= self.bd_seq < SEQ_MODULUS:
            raise ValueError(f"bdSeq {self.bd_seq} is outside 0..255")
        self._node_metrics = [BD_SEQ, REBIRTH, AGENT_VERSION,
                              *(f"Properties/{key}" for key, _ in self.node.properties)]
        self._node_aliases = {name: alias for alias, name in enumerate(self._node_metrics)}
        next_alias = len(self._node_metrics)
        self._device_metrics: dict[str, dict[str, _Metric]] = {}
        for device in self.node.devices:
            metrics = {}
            for channel in device.channels:
                metrics[channel.name] = _Metric(next_alias, channel)
                next_alias += 1
            self._device_metrics[device.device_id] = metrics
        self._seq: int | None = None  # None: no NBIRTH yet on this connection
        self._born: set[str] = set()
        # what this connection last sent per (device, channel), and that reading's time
        self._sent: dict[tuple[str, str], _Sent] = {}
        self._sent_at: dict[tuple[str, str], datetime] = {}

    # -- the edge node ------------------------------------------------------------------

    @property
    def born(self) -> bool:
        """True once NBIRTH was built on this connection."""
        return self._seq is not None

    def device_born(self, device_id: str) -> bool:
        return device_id in self._born

    def will(self, now: datetime) -> Message:
        """The NDEATH to register as the MQTT will at CONNECT, and to publish before a
        clean disconnect: bdSeq, no seq, QoS 1, not retained
        (tck-id-payloads-ndeath-will-message-qos/-retain, ...-ndeath-bdseq)."""
        payload = new_payload(now, None)
        metric = payload.metrics.add()
        metric.name = BD_SEQ
        metric.datatype = pb.Int64
        metric.timestamp = payload.timestamp
        metric.long_value = self.bd_seq
        return Message(Verb.NDEATH, self._topic(Verb.NDEATH), payload.SerializeToString(),
                       qos=1)

    def births(self, now: datetime,
               last_samples: Mapping[str, Sample] | None = None) -> list[Message]:
        """NBIRTH, then one DBIRTH per device: on connecting, and again on a rebirth
        request (same bdSeq, seq from 0). ``last_samples`` gives each device's newest
        sample for the births' values; without one a device is born with the values this
        connection last sent (a rebirth), else null (see ``device_birth``)."""
        self._seq = None
        self._born.clear()
        messages = [self._node_birth(now)]
        for device in self.node.devices:
            sample = (last_samples or {}).get(device.device_id)
            messages.append(self.device_birth(device.device_id, now, sample))
        return messages

    def _node_birth(self, now: datetime) -> Message:
        self._seq = 0
        payload = new_payload(now, 0)
        values: dict[str, tuple[int, object]] = {
            BD_SEQ: (pb.Int64, self.bd_seq),
            REBIRTH: (pb.Boolean, False),
            AGENT_VERSION: (pb.String, self.node.agent_version),
        }
        for key, value in self.node.properties:
            values[f"Properties/{key}"] = (pb.String, value)
        for name in self._node_metrics:
            datatype, value = values[name]
            # Node Control/Rebirth goes by name only: a host addresses it by name, and an
            # alias on it is forbidden (tck-id-operational-behavior-data-commands-rebirth-
            # name-aliases); its number stays reserved, so every other alias is unchanged.
            alias = None if name == REBIRTH else self._node_aliases[name]
            add_metric(payload, name=name, alias=alias, datatype=datatype, timestamp=now,
                       value=value, birth=True)
        return self._message(Verb.NBIRTH, payload)

    # -- devices --------------------------------------------------------------------------

    def device_birth(self, device_id: str, now: datetime,
                     sample: Sample | None = None) -> Message:
        """A DBIRTH with every channel of the device as a metric: its datatype, unit,
        quality and reason, and the value of ``sample`` (else the last one this connection
        sent, else null with reason ``not_read_yet``). Also when a dead device returns."""
        self._require_node_birth(Verb.DBIRTH)
        metrics = self._metrics_of(device_id)
        readings = {reading.channel: reading for reading in sample.readings} if sample else {}
        payload = new_payload(now, self._next_seq())
        for name, metric in metrics.items():
            reading = readings.get(name)
            remembered = self._sent.get((device_id, name))
            if reading is not None:
                value, quality, reason = reading.value, reading.quality, reading.reason
                stamp = reading.acquired_at
            elif remembered is not None:
                value, quality, reason = remembered.value, remembered.quality, remembered.reason
                stamp = self._sent_at.get((device_id, name), now)
            else:
                value, quality, reason, stamp = None, Quality.BAD, NOT_READ_YET, now
            value, quality, reason = self._fitting(metric, value, quality, reason)
            added = add_metric(payload, name=name, alias=metric.alias,
                               datatype=metric.channel.datatype, timestamp=stamp, value=value,
                               birth=True)
            props: list[Property] = [(ENG_UNIT_KEY, pb.String, metric.channel.unit)]
            props += _quality_properties(quality, reason)
            analysis = sample.instrument_time if sample is not None and reading else None
            props += _sample_properties(sample if reading else None, analysis)
            add_properties(added, props)
            self._sent[(device_id, name)] = _Sent(value, quality, reason, _ms(analysis))
            self._sent_at[(device_id, name)] = stamp
        self._born.add(device_id)
        return self._message(Verb.DBIRTH, payload, device_id)

    def device_death(self, device_id: str, now: datetime) -> Message:
        """A DDEATH: the device went down (its link is lost); send ``device_birth`` when
        it is back. Its metrics' last values are forgotten with it."""
        self._require_born(device_id, Verb.DDEATH)
        self._born.discard(device_id)
        for name in self._metrics_of(device_id):
            self._sent.pop((device_id, name), None)
            self._sent_at.pop((device_id, name), None)
        return self._message(Verb.DDEATH, new_payload(now, self._next_seq()), device_id)

    def device_data(self, sample: Sample, now: datetime,
                    historical: bool = False) -> Message | None:
        """A DDATA for one sample of a born device; None when a live sample changed
        nothing (report by exception). Readings of channels the birth did not declare
        are counted (``counters.unknown_channels``) and left out: a host could not
        resolve them."""
        device_id = sample.device_id
        self._require_born(device_id, Verb.DDATA)
        metrics = self._metrics_of(device_id)
        analysis = sample.instrument_time
        chosen: list[tuple[_Metric, Reading, object, Quality, str | None, bool]] = []
        for reading in sample.readings:
            metric = metrics.get(reading.channel)
            if metric is None:
                self.counters.unknown_channels += 1
                continue
            value, quality, reason = self._fitting(metric, reading.value, reading.quality,
                                                   reading.reason)
            before = self._sent.get((device_id, reading.channel))
            now_sent = _Sent(value, quality, reason, _ms(analysis))
            if not historical and before == now_sent:
                continue
            quality_changed = historical or before is None or (
                before.quality, before.reason) != (quality, reason)
            chosen.append((metric, reading, value, quality, reason, quality_changed))
            if not historical:
                self._sent[(device_id, reading.channel)] = now_sent
                self._sent_at[(device_id, reading.channel)] = reading.acquired_at
        if not chosen:
            return None
        payload = new_payload(now, self._next_seq())
        for metric, reading, value, quality, reason, quality_changed in chosen:
            added = add_metric(payload, name=metric.channel.name, alias=metric.alias,
                               datatype=metric.channel.datatype, timestamp=reading.acquired_at,
                               value=value, birth=False, historical=historical)
            props = _quality_properties(quality, reason) if quality_changed else []
            props += _sample_properties(sample, analysis)
            if props:
                add_properties(added, props)
        return self._message(Verb.DDATA, payload, device_id)

    # -- helpers ----------------------------------------------------------------------

    def alias_of(self, device_id: str | None, name: str) -> int:
        """The alias of a node metric (``device_id`` None) or of a device's channel
        (``Node Control/Rebirth``'s is reserved and never sent)."""
        if device_id is None:
            return self._node_aliases[name]
        return self._metrics_of(device_id)[name].alias

    def _fitting(self, metric: _Metric, value: object, quality: Quality,
                 reason: str | None) -> tuple[object, Quality, str | None]:
        """The value as sent: one that does not fit the datatype becomes null, BAD."""
        try:
            set_value(pb.Payload.Metric(), metric.channel.datatype, value)
        except ValueTypeError as err:
            self.counters.type_mismatches += 1
            log.warning("Sparkplug: channel %s: %s; sent as null", metric.channel.name, err)
            return None, Quality.BAD, TYPE_MISMATCH
        return value, quality, reason

    def _metrics_of(self, device_id: str) -> dict[str, _Metric]:
        try:
            return self._device_metrics[device_id]
        except KeyError:
            raise KeyError(f"edge node {self.node.edge_node} has no device "
                           f"{device_id!r}") from None

    def _require_node_birth(self, verb: Verb) -> None:
        if self._seq is None:
            raise SessionOrderError(f"{verb} before NBIRTH on this connection")

    def _require_born(self, device_id: str, verb: Verb) -> None:
        self._require_node_birth(verb)
        self._metrics_of(device_id)
        if device_id not in self._born:
            raise SessionOrderError(f"{verb} for device {device_id} before its DBIRTH")

    def _next_seq(self) -> int:
        assert self._seq is not None
        self._seq = (self._seq + 1) % SEQ_MODULUS
        return self._seq

    def _topic(self, verb: Verb, device_id: str | None = None) -> str:
        return node_topic(verb, self.node.group, self.node.edge_node, device_id)

    def _message(self, verb: Verb, payload: pb.Payload, device_id: str | None = None) -> Message:
        return Message(verb, self._topic(verb, device_id), payload.SerializeToString(),
                       seq=payload.seq)


def _quality_properties(quality: Quality, reason: str | None) -> list[Property]:
    return [(QUALITY_KEY, pb.Int32, quality_code(quality)),
            (AGENT_QUALITY_KEY, pb.String, quality.value),
            (REASON_KEY, pb.String, reason)]


def _sample_properties(sample: Sample | None, analysis: datetime | None) -> list[Property]:
    """The GC's analysis time (DateTime) and stream, where the sample has them."""
    props: list[Property] = []
    if analysis is not None:
        props.append((ANALYSIS_TIME_KEY, pb.DateTime, analysis))
    stream = sample.extra.get("stream") if sample is not None else None
    if stream is not None:
        props.append((STREAM_KEY, pb.String, str(stream)))
    return props


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)
