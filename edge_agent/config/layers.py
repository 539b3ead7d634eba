"""A device's settings in two layers: the station file's, over its profile's.

A setting written for the device wins; otherwise the profile's applies. Blocks such as
``read:``, ``trigger:`` and ``clock:`` are merged key by key (a station can change one
key of a profile's block and keep the rest); lists (``forbidden``, ``channels`` of a
clock) are replaced whole. Each value is read from, and each problem reported in, the
file that holds it.
"""

from __future__ import annotations

from collections.abc import Iterable

from edge_agent.config.fields import Section


class Layers:
    """The station's section over the profile's; either may be absent (not both)."""

    def __init__(self, device: Section | None, profile: Section | None) -> None:
        assert device is not None or profile is not None
        self.device, self.profile = device, profile

    def pick(self, key: str) -> Section:
        """The section ``key`` is read from: the station's when it writes it."""
        if self.device is not None and self.device.has(key):
            return self.device
        if self.profile is not None and self.profile.has(key):
            return self.profile
        return self.device if self.device is not None else self.profile  # type: ignore[return-value]

    def block(self, key: str, allowed: Iterable[str]) -> Layers | None:
        """The ``key:`` block in both layers, merged; None when neither writes it."""
        keys = tuple(allowed)
        device = self.device.section(key, keys) if self.device is not None else None
        profile = self.profile.section(key, keys) if self.profile is not None else None
        if device is None and profile is None:
            return None
        return Layers(device, profile)

    def report(self, key: str, message: str) -> None:
        """Report about ``key`` where it was written (at the key)."""
        self.pick(key).report(key, message, at_key=True)
