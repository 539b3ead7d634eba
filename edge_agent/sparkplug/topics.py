"""The Sparkplug 3.0 topic namespace: building and parsing topic names.

``spBv1.0/{group}/{verb}/{edge_node}[/{device}]`` for edge node and device messages,
``spBv1.0/STATE/{host_id}`` for a primary host's state. Ids are checked when a topic is
built: an id holding ``/``, ``+`` or ``#`` would address another node or be a filter, so
it is refused with the field it came from, never sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

NAMESPACE = "spBv1.0"
STATE_WORD = "STATE"
FORBIDDEN_IN_IDS = ("/", "+", "#")


class Verb(StrEnum):
    """The message types (the third topic level)."""

    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    NDATA = "NDATA"
    DDATA = "DDATA"
    NCMD = "NCMD"
    DCMD = "DCMD"

    @property
    def is_device(self) -> bool:
        """True for the verbs whose topic names a device (a fifth level)."""
        return self.value.startswith("D")


class SparkplugIdError(ValueError):
    """An id that cannot be a topic level; the message names the field and the id."""


def check_id(field: str, value: str) -> str:
    """``value`` if it can be a Sparkplug id (group, edge node, device, host id).

    The specification forbids the MQTT separators and wildcards in ids
    (tck-id-topic-structure-namespace-valid-*-id); an empty id would make an empty level.
    """
    if not value:
        raise SparkplugIdError(f"{field}: an empty id; expected text without / + #")
    bad = [ch for ch in FORBIDDEN_IN_IDS if ch in value]
    if bad:
        raise SparkplugIdError(
            f"{field}: {value!r} contains {' '.join(bad)}; expected text without / + #")
    return value


def node_topic(verb: Verb, group: str, edge_node: str, device: str | None = None) -> str:
    """The topic of an edge node message, or of a device message when ``device`` is given."""
    if verb.is_device != (device is not None):
        raise ValueError(f"{verb} {'needs' if verb.is_device else 'takes no'} device id")
    levels = [NAMESPACE, check_id("group id", group), verb.value,
              check_id("edge node id", edge_node)]
    if device is not None:
        levels.append(check_id("device id", device))
    return "/".join(levels)


def state_topic(host_id: str) -> str:
    """The retained STATE topic of a primary host application (Sparkplug 3.0 form)."""
    return f"{NAMESPACE}/{STATE_WORD}/{check_id('host id', host_id)}"


@dataclass(frozen=True)
class TopicName:
    """A parsed Sparkplug topic: a node/device message (``verb`` set) or a STATE
    (``host_id`` set)."""

    group: str | None = None
    verb: Verb | None = None
    edge_node: str | None = None
    device: str | None = None
    host_id: str | None = None

    @property
    def node_key(self) -> str:
        """``group/edge_node``: how the host simulator names an edge node."""
        return f"{self.group}/{self.edge_node}"


def parse_topic(topic: str) -> TopicName:
    """The parts of a Sparkplug topic; ValueError saying what is wrong otherwise."""
    levels = topic.split("/")
    if levels[0] != NAMESPACE:
        raise ValueError(f"{topic!r}: not in the {NAMESPACE} namespace")
    if len(levels) == 3 and levels[1] == STATE_WORD and levels[2]:
        return TopicName(host_id=levels[2])
    if len(levels) not in (4, 5) or not all(levels):
        raise ValueError(f"{topic!r}: expected {NAMESPACE}/group/VERB/edge_node[/device]")
    try:
        verb = Verb(levels[2])
    except ValueError:
        raise ValueError(f"{topic!r}: {levels[2]!r} is not a Sparkplug message type") from None
    if verb.is_device != (len(levels) == 5):
        raise ValueError(f"{topic!r}: {verb} {'needs' if verb.is_device else 'takes no'} "
                         "device level")
    return TopicName(group=levels[1], verb=verb, edge_node=levels[3],
                     device=levels[4] if len(levels) == 5 else None)
