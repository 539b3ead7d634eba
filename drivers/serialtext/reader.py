"""The serial-text part of a ``devices[]`` entry: the instrument's address and its
``text:`` block (config_text.py reads the block itself).

Called through the registry (edge_agent_drivers.registry) by config/validate_devices.py.
config_text.py is imported only when a serial-text device is read: the registry imports
this module for every station, and a station without such a device then never loads
config_text.py, config_record.py and parse.py (about 0.2 MiB; docs/performance.md,
Memory). ``ADDRESS`` comes from address.py for that reason, and the registry names the
settings class by ``SETTINGS`` (protocol/settings.py, about 0.25 MiB more).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent_drivers.serialtext.address import ADDRESS

from edge_agent.config.fields import Section
from edge_agent.driverkind import DeviceEntry

if TYPE_CHECKING:
    from edge_agent_drivers.serialtext.protocol.settings import TextSettings

#: The kind's name in the registry, and the device-level keys only it reads.
KIND = "serial-text"
SERIAL_TEXT_KEYS = ("text",)
#: The settings class, imported by the first serial-text device (DriverKind.settings_class)
SETTINGS = "edge_agent_drivers.serialtext.protocol.settings:TextSettings"
__all__ = ["ADDRESS", "KIND", "SERIAL_TEXT_KEYS", "SETTINGS", "read_settings", "read_unit_id"]


def read_unit_id(sec: Section, link_type: str | None) -> int | None:
    """The instrument's own address, optional on any link (0 when absent)."""
    from edge_agent_drivers.serialtext.config_text import read_text_unit_id

    return read_text_unit_id(sec)


def read_settings(entry: DeviceEntry) -> TextSettings | None:
    """The ``text:`` block, written on the device or in its profile."""
    from edge_agent_drivers.serialtext.config_text import read_text_device

    return read_text_device(entry.section, entry.layers.pick("text"), entry.unit_id,
                            entry.owners, KIND)
