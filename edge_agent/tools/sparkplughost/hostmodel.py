"""What a primary host knows of the edge nodes it hears, and the rule breaks it sees.

Pure: ``HostModel.receive(topic, payload)`` returns the events to show. Per edge node it
keeps the NBIRTH's bdSeq, the last seq, and the alias table of the node and its devices
(data messages carry aliases only, so a metric is named and typed through its birth).

Rule breaks it flags (``Event.kind == "rule"``), as a Sparkplug host would before asking
for a rebirth:
- ``seq_gap``: a message's seq is not the previous one + 1 (mod 256) on that node;
- ``no_seq``: a message other than NDEATH without seq;
- ``data_before_birth``: DBIRTH/NDATA/DDATA/DDEATH from a node with no NBIRTH seen, or
  DDATA from a device with no DBIRTH since its last death;
- ``unknown_alias``: a data metric whose alias no birth declared;
- ``bdseq_mismatch``: an NDEATH whose bdSeq is not the NBIRTH's (a death of an older
  connection: ignored, the node stays online);
- ``undecodable``: a payload (or STATE) that does not decode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_agent.sparkplug import sparkplug_b_pb2 as pb
from edge_agent.sparkplug.datatypes import datatype_name
from edge_agent.sparkplug.decode import (
    PayloadError,
    decode_payload,
    metric_properties,
    metric_value,
)
from edge_agent.sparkplug.session import BD_SEQ, SEQ_MODULUS
from edge_agent.sparkplug.state import StateError, parse_state
from edge_agent.sparkplug.topics import TopicName, Verb, parse_topic


@dataclass(frozen=True)
class Event:
    """One thing to show: a metric of a message (``name`` set), a message without
    metrics (deaths), a host STATE, or a rule break (``kind == "rule"``)."""

    kind: str  # "metric", "message", "state", "rule"
    verb: str | None = None
    node: str | None = None
    device: str | None = None
    seq: int | None = None
    name: str | None = None
    value: object = None
    datatype: str | None = None
    properties: dict[str, object] = field(default_factory=dict)
    timestamp_ms: int | None = None
    historical: bool = False
    rule: str | None = None
    detail: str | None = None


@dataclass
class _Node:
    bd_seq: int | None
    last_seq: int | None
    aliases: dict[int, tuple[str, int, str | None]] = field(default_factory=dict)
    devices: set[str] = field(default_factory=set)
    online: bool = True


class HostModel:
    """The edge nodes heard so far, keyed ``group/edge_node``."""

    def __init__(self) -> None:
        self.nodes: dict[str, _Node] = {}
        self.rule_breaks = 0

    def receive(self, topic: str, payload: bytes) -> list[Event]:
        """The events one received message makes."""
        try:
            name = parse_topic(topic)
        except ValueError as err:
            return [self._rule("undecodable", None, str(err))]
        if name.host_id is not None:
            try:
                state = parse_state(payload)
            except StateError as err:
                return [self._rule("undecodable", None, f"{topic}: {err}")]
            return [Event("state", node=name.host_id, value=state.online,
                          timestamp_ms=state.timestamp_ms)]
        try:
            message = decode_payload(topic, payload)
        except PayloadError as err:
            return [self._rule("undecodable", name.node_key, str(err))]
        assert name.verb is not None
        if name.verb in (Verb.NCMD, Verb.DCMD):
            return self._metrics(name, message, {})
        if name.verb is Verb.NBIRTH:
            return self._node_birth(name, message)
        if name.verb is Verb.NDEATH:
            return self._node_death(name, message)
        return self._node_message(name, message)

    # -- per message type -----------------------------------------------------------------

    def _node_birth(self, name: TopicName, message: pb.Payload) -> list[Event]:
        bd_seq = next((m.long_value for m in message.metrics if m.name == BD_SEQ), None)
        node = _Node(bd_seq, message.seq if message.HasField("seq") else None)
        self.nodes[name.node_key] = node
        events = [] if message.HasField("seq") else [
            self._rule("no_seq", name.node_key, "NBIRTH without seq")]
        self._learn(node, message)
        return events + self._metrics(name, message, node.aliases)

    def _node_death(self, name: TopicName, message: pb.Payload) -> list[Event]:
        node = self.nodes.get(name.node_key)
        bd_seq = next((m.long_value for m in message.metrics if m.name == BD_SEQ), None)
        event = Event("message", verb=name.verb, node=name.node_key,
                      value=bd_seq, timestamp_ms=message.timestamp, name=BD_SEQ)
        if node is None:
            return [event]
        if bd_seq != node.bd_seq:
            return [event, self._rule("bdseq_mismatch", name.node_key,
                                      f"NDEATH bdSeq {bd_seq}, NBIRTH bdSeq {node.bd_seq}: "
                                      "a death of an older connection, ignored")]
        node.online = False
        node.devices.clear()
        return [event]

    def _node_message(self, name: TopicName, message: pb.Payload) -> list[Event]:
        node = self.nodes.get(name.node_key)
        where = name.node_key + (f"/{name.device}" if name.device else "")
        if node is None or not node.online:
            return [self._rule("data_before_birth", where, f"{name.verb} before NBIRTH"),
                    *self._metrics(name, message, {})]
        events = self._check_seq(node, name, message)
        if name.verb is Verb.DBIRTH:
            self._learn(node, message)
            node.devices.add(name.device or "")
        elif name.verb is not None and name.verb.is_device and name.device not in node.devices:
            events.append(self._rule("data_before_birth", where,
                                     f"{name.verb} before the device's DBIRTH"))
        if name.verb is Verb.DDEATH:
            node.devices.discard(name.device or "")
        return events + self._metrics(name, message, node.aliases)

    def _check_seq(self, node: _Node, name: TopicName, message: pb.Payload) -> list[Event]:
        if not message.HasField("seq"):
            return [self._rule("no_seq", name.node_key, f"{name.verb} without seq")]
        events = []
        if node.last_seq is not None:
            expected = (node.last_seq + 1) % SEQ_MODULUS
            if message.seq != expected:
                events.append(self._rule("seq_gap", name.node_key,
                                         f"{name.verb}: expected seq {expected}, "
                                         f"got {message.seq}"))
        node.last_seq = message.seq
        return events

    # -- metrics ----------------------------------------------------------------------

    @staticmethod
    def _learn(node: _Node, message: pb.Payload) -> None:
        for metric in message.metrics:
            if metric.HasField("alias"):
                unit = metric_properties(metric).get("engUnit")
                node.aliases[metric.alias] = (metric.name, metric.datatype,
                                              unit if isinstance(unit, str) else None)

    def _metrics(self, name: TopicName, message: pb.Payload,
                 aliases: dict[int, tuple[str, int, str | None]]) -> list[Event]:
        seq = message.seq if message.HasField("seq") else None
        if not message.metrics:
            return [Event("message", verb=name.verb, node=name.node_key, device=name.device,
                          seq=seq, timestamp_ms=message.timestamp)]
        events = []
        for metric in message.metrics:
            metric_name, datatype = metric.name, metric.datatype
            known = aliases.get(metric.alias) if metric.HasField("alias") else None
            if not metric.HasField("datatype") or not metric_name:
                if known is None and not metric.HasField("datatype"):
                    events.append(self._rule("unknown_alias", name.node_key,
                                             f"{name.verb}: alias {metric.alias} is in no birth"))
                    continue
                if known is not None:
                    metric_name = metric_name or known[0]
                    datatype = datatype if metric.HasField("datatype") else known[1]
            properties = metric_properties(metric)
            if known is not None and known[2] and "engUnit" not in properties:
                properties["engUnit"] = known[2]  # as the birth said
            events.append(Event(
                "metric", verb=name.verb, node=name.node_key, device=name.device, seq=seq,
                name=metric_name, value=_shown(metric_value(metric, datatype), datatype),
                datatype=datatype_name(datatype), properties=properties,
                timestamp_ms=metric.timestamp if metric.HasField("timestamp") else None,
                historical=metric.is_historical))
        return events

    def _rule(self, rule: str, where: str | None, detail: str) -> Event:
        self.rule_breaks += 1
        return Event("rule", node=where, rule=rule, detail=detail)


def _shown(value: object, datatype: int) -> object:
    """A Float as the decimal it stands for (7 significant digits: 0.572, not the
    0.5720000267028809 its 32 bits widen to); other values as they are."""
    if datatype == pb.Float and isinstance(value, float):
        return float(f"{value:.7g}")
    return value
