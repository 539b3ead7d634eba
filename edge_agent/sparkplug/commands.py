"""NCMD decoding: what a host asks of the edge node.

The one node command the agent acts on is ``Node Control/Rebirth`` = true
(tck-id-operational-behavior-data-commands-rebirth-*): the uplink then publishes its
births again (same bdSeq, seq from 0). A host may name the metric or give its NBIRTH
alias. Anything else in an NCMD is reported back as ignored, and an NCMD that does not
decode is a CommandError: the uplink logs and counts it, the connection goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.sparkplug import sparkplug_b_pb2 as pb
from edge_agent.sparkplug.decode import PayloadError, decode_payload


@dataclass(frozen=True)
class NodeCommand:
    """A decoded NCMD: whether it asks for a rebirth, and the metric names (or
    ``alias N``) it carried that the agent does not act on."""

    rebirth: bool
    ignored: tuple[str, ...] = ()


class CommandError(ValueError):
    """An NCMD payload that is not a Sparkplug payload."""


def rebirth_command(now_ms: int) -> bytes:
    """The NCMD payload a host sends to ask for a rebirth (used by the host simulator)."""
    payload = pb.Payload(timestamp=now_ms)
    payload.metrics.add(name="Node Control/Rebirth", timestamp=now_ms, datatype=pb.Boolean,
                        boolean_value=True)
    return payload.SerializeToString()


def decode_node_command(payload: bytes, rebirth_alias: int | None = None) -> NodeCommand:
    """Read an NCMD payload; ``rebirth_alias`` is the alias this node gave
    ``Node Control/Rebirth`` in its NBIRTH."""
    try:
        message = decode_payload("NCMD", payload)
    except PayloadError as err:
        raise CommandError(str(err)) from err
    rebirth, ignored = False, []
    for metric in message.metrics:
        named = metric.name == "Node Control/Rebirth" or (
            not metric.name and rebirth_alias is not None and metric.alias == rebirth_alias)
        if named and metric.WhichOneof("value") == "boolean_value":
            rebirth = rebirth or metric.boolean_value
        else:
            ignored.append(metric.name or f"alias {metric.alias}")
    return NodeCommand(rebirth, tuple(ignored))
