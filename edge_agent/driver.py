"""What the poller needs from a driver, and how drivers are found by name."""

from __future__ import annotations

import importlib
from datetime import datetime
from typing import Protocol

from edge_agent.config.schema import Device
from edge_agent.modbus.transport import ModbusLinkClient
from edge_agent.model import Sample


class Driver(Protocol):
    """Turns one device's registers into a Sample. Plans and decodes; never sleeps or retries.

    ``poll`` raises a transient ``ModbusError`` when the device did not answer at all (the
    poller retries and backs off); a per-channel failure such as exception 02 is reported
    inside the sample as a BAD reading instead.
    """

    device: Device

    def poll(self, link: ModbusLinkClient, now: datetime) -> Sample: ...

    def failed_sample(self, now: datetime, reason: str) -> Sample: ...


def load_driver(device: Device) -> Driver:
    """Instantiate the driver registered under ``device.driver`` (see edge_agent_drivers)."""
    from edge_agent_drivers import DRIVERS

    module_name, _, class_name = DRIVERS[device.driver].partition(":")
    driver_class = getattr(importlib.import_module(module_name), class_name)
    return driver_class(device)


def known_drivers() -> list[str]:
    """Driver names a config may use (for validation messages)."""
    from edge_agent_drivers import DRIVERS

    return sorted(DRIVERS)
