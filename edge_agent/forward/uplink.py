"""An uplink kind is a plug-in: the interface every uplink implements, and the registry
that makes one from its ``UplinkConfig`` (issue 12 item 3; docs/architecture.md, "Adding
an uplink kind").

An uplink owns its thread and its connection. It takes work from its own view of the
outbox (store/uplinkview.py: ``claim_batch``, ``ack_many``, ``set_aside_unpublishable``,
``forget_in_flight``, ``release_in_flight``, ``depth``) and never touches another
uplink's claims; the outbox deletes a row when every uplink carrying its device is past
it. The agent starts, stops, wakes and reconfigures uplinks only through ``Uplink``, and
status and metrics read ``health`` and ``depth``; the watchdog reads ``heartbeat``,
``network_heartbeats`` and ``dead_network_thread``. ``Forwarder`` (MQTT) is the first
kind; ``Hj212Uplink`` (forward/hj212uplink.py) the second; ``SparkplugUplink``
(forward/sparkpluguplink.py) the third.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from edge_agent.config.schema import UplinkConfig
from edge_agent.forward.forwarder import Forwarder, ForwarderStats
from edge_agent.store.outbox import Outbox
from edge_agent.store.uplinks import UplinkDepth
from edge_agent.watchdog import Heartbeat


class Uplink(Protocol):
    """What the agent needs of one uplink (the MQTT ``Forwarder`` implements it)."""

    name: str
    kind: str  # the station file's ``kind:`` (mqtt, hj212, sparkplug), shown by /status
    thread: threading.Thread
    heartbeat: Heartbeat
    stats: ForwarderStats  # what ``health`` returns (the watchdog's status line reads it)

    def start(self) -> None:
        """Start the uplink's thread; it connects and drains its view of the outbox."""

    def stop(self, grace_s: float | None = None) -> None:
        """Stop claiming; give what is in flight ``grace_s`` to be acknowledged; return
        once the thread has ended (or the grace and a margin have passed)."""

    def wake(self) -> None:
        """New rows were committed: look at the outbox now (called on every append)."""

    def reconfigure(self, station_id: str, config: UplinkConfig) -> None:
        """New settings from a reload; returns at once, applies between sessions."""

    def health(self) -> ForwarderStats:
        """Counters for status and metrics: connected node, acknowledged, re-sent, gaps."""

    def depth(self, timeout_s: float = 5.0) -> UplinkDepth:
        """Backlog, oldest waiting sample and in flight of this uplink."""

    def network_heartbeats(self) -> list[Heartbeat]:
        """Heartbeats of helper threads the watchdog must check (a live session's)."""

    def dead_network_thread(self) -> str | None:
        """The name of a helper thread that ended unexpectedly, if any."""


def _make_mqtt(station_id: str, config: UplinkConfig, outbox: Outbox) -> Uplink:
    if config.mqtt is None:
        raise ValueError(f"uplink {config.name}: kind mqtt without MQTT settings")
    return Forwarder(station_id, config.mqtt, outbox, config.name)


def _make_hj212(station_id: str, config: UplinkConfig, outbox: Outbox) -> Uplink:
    # Imported here: a station without an HJ 212 platform never loads its code (packets,
    # SM4, the code table), which tests/test_runtime_footprint.py checks.
    from edge_agent.forward import hj212uplink

    return hj212uplink.make(station_id, config, outbox)


def _make_sparkplug(station_id: str, config: UplinkConfig, outbox: Outbox) -> Uplink:
    # Imported here: a station without a Sparkplug uplink never loads protobuf.
    from edge_agent.forward import sparkpluguplink

    return sparkpluguplink.make(station_id, config, outbox)


KINDS: dict[str, Callable[[str, UplinkConfig, Outbox], Uplink]] = {
    "mqtt": _make_mqtt, "hj212": _make_hj212, "sparkplug": _make_sparkplug}
"""Uplink kind -> factory. A new kind adds one entry here (docs/architecture.md)."""


def make_uplink(station_id: str, config: UplinkConfig, outbox: Outbox) -> Uplink:
    """The running uplink for ``config``; ValueError for a kind this release lacks (the
    configuration reader refuses those first, with file and line)."""
    try:
        factory = KINDS[config.kind]
    except KeyError:
        raise ValueError(f"uplink {config.name}: kind {config.kind!r} is not supported "
                         f"(known: {', '.join(sorted(KINDS))})") from None
    return factory(station_id, config, outbox)
