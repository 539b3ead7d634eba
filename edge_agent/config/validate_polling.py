"""A device's own polling settings: ``timeout_ms`` and ``retries`` on a device.

A link's ``timeout_ms`` and the station's ``polling.retries`` suit most devices on it; a
GC that takes two seconds to answer on a bus of fast detectors needs its own, without
slowing down how quickly a dead detector is noticed. Read here, called from
validate_devices.py, so device-level polling stays in one place.
"""

from __future__ import annotations

from dataclasses import replace

from edge_agent.config.declare import allowed_keys, declared, read_declared
from edge_agent.config.fields import Section
from edge_agent.config.schema import Device, DevicePolling

DEVICE_POLLING_KEYS = allowed_keys(DevicePolling)


def read_device_polling(sec: Section) -> DevicePolling:
    """The device's ``timeout_ms`` and ``retries``; absent (or null) keeps the link's
    timeout and the station's retries."""
    return DevicePolling(**{name: read_declared(sec, DevicePolling, name)
                            for name in declared(DevicePolling)})


def with_device_polling(sec: Section, device: Device | None) -> Device | None:
    """``device`` with its own polling settings; they are checked (and reported) even
    when the rest of the device is invalid, so one run lists every problem."""
    polling = read_device_polling(sec)
    return None if device is None else replace(device, polling=polling)
