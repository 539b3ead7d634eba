"""What the poller needs from a driver, and how drivers are found by name."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from edge_agent.config.schema import Device
from edge_agent.link import LinkClient
from edge_agent.model import Sample


class Driver(Protocol):
    """Turns one device's answers into a Sample. Plans and decodes; never sleeps or retries.

    ``poll`` gets the link's client (a ModbusLinkClient, or the text-protocol client, as
    the link's protocol says; the kind's registry entry lists the protocols it speaks) and
    raises a transient ``LinkError`` when the device did not answer at all (the poller
    retries and backs off); a per-channel failure such as exception 02 is reported inside
    the sample as a BAD reading instead.

    Optional methods the poller calls when present: ``restore(state)`` once at start with
    the ``driver_state`` committed with the device's last sample, and
    ``after_commit(link, sample)`` once a sample is durable (a GC driver clears its
    new-result flag there, never before the commit). ``after_commit`` is called for every
    sample with ``driver_state``; a sample without it is committed while the poller goes
    on (edge_agent/pollstore.py) and gets no ``after_commit``: a driver that must act on
    the device after a commit gives that sample its ``driver_state``.
    """

    device: Device

    def poll(self, link: LinkClient, now: datetime) -> Sample | None:
        """This poll's sample; None only when an instrument-triggered device (GC, FTIR)
        answered and has no new analysis (not a failure, nothing to store)."""
        ...

    def failed_sample(self, now: datetime, reason: str) -> Sample: ...


def load_driver(device: Device) -> Driver:
    """Instantiate the driver of ``device.driver``'s kind (edge_agent_drivers.registry)."""
    from edge_agent_drivers.registry import KINDS

    driver: Driver = KINDS[device.driver].driver(device)
    return driver
