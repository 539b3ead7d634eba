"""Every driver kind the agent knows: one entry each (edge_agent.driverkind.DriverKind).

Adding a kind is a folder under ``drivers/`` and one line in ``KINDS`` (see
drivers/README.md). The config loader reads ``driver:``, the device's keys and its
settings through these entries, and the poller creates each device's driver from them;
nothing else lists drivers. The order is the order error messages list the kinds in.
"""

from __future__ import annotations

from edge_agent_drivers.modbus import reader as modbus_reader
from edge_agent_drivers.modbus.driver import ModbusMapDriver
from edge_agent_drivers.modbus.settings import ModbusSettings
from edge_agent_drivers.serialtext import reader as text_reader
from edge_agent_drivers.serialtext.driver import SerialTextDriver
from edge_agent_drivers.serialtext.protocol.settings import TextSettings

from edge_agent.config.schema import LinkProtocol
from edge_agent.driverkind import DriverKind

#: The default kind, for a device that writes no ``driver:``.
DEFAULT_KIND = "modbus"

KINDS: dict[str, DriverKind] = {kind.name: kind for kind in (
    DriverKind("modbus", ModbusSettings, modbus_reader.MODBUS_KEYS,
               modbus_reader.read_unit_id, modbus_reader.read_settings, ModbusMapDriver,
               frozenset({LinkProtocol.MODBUS_TCP, LinkProtocol.MODBUS_RTU,
                          LinkProtocol.MODBUS_ASCII}),
               wrong_link=modbus_reader.wrong_link, refuses_other_keys=True,
               unit_id=modbus_reader.UNIT_ID),
    DriverKind(text_reader.KIND, TextSettings, text_reader.SERIAL_TEXT_KEYS,
               text_reader.read_unit_id, text_reader.read_settings, SerialTextDriver,
               frozenset({LinkProtocol.TEXT}), refuses_other_keys=True,
               unit_id=text_reader.ADDRESS),
)}


def kind_keys() -> tuple[str, ...]:
    """The device-level keys of every registered kind, each once, in registry order."""
    return tuple(dict.fromkeys(key for kind in KINDS.values() for key in kind.keys))
