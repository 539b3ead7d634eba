"""What an uplink acknowledged without sending, by reason, for ``/status``, ``/metrics``
and ``edge-agent status``.

An HJ 212 platform has no record for gap and alarm events and takes only mapped
channels at its real-time interval; a Sparkplug host has no message for gaps and alarms
and learns a device is down from its DDEATH. Those uplinks let such samples go unsent
and count them (``Hj212Uplink.skip_counts``, ``SparkplugUplink.skip_counts``); an MQTT
JSON uplink sends everything and has no such counts. Counts are since the agent started.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class SkipCounting(Protocol):
    """An uplink that acknowledges some outbox rows without sending them."""

    def skip_counts(self) -> dict[str, int]:
        """Every reason this uplink knows, zeros included, so a counter series exists
        from the start (Prometheus' ``increase`` needs its first zero)."""
        ...


def skip_counts(uplink: object) -> dict[str, int]:
    """``uplink``'s counts by reason; empty for an uplink that skips nothing. Read from
    another thread than the uplink's: a copy of ints, at worst one message old."""
    if isinstance(uplink, SkipCounting):
        return dict(uplink.skip_counts())
    return {}
