"""Every driver kind the agent knows: one entry each (edge_agent.driverkind.DriverKind).

Adding a kind is a folder under ``drivers/`` and one line in ``KINDS`` (see
drivers/README.md). The config loader reads ``driver:``, the device's keys and its
settings through these entries, and the poller creates each device's driver from them;
nothing else lists drivers. The order is the order error messages list the kinds in.

A kind's driver class (and with it its protocol client: pymodbus, asyncio and ssl for
``modbus``) is imported when the first device of that kind is created, not with the
registry: the config loader reads every kind's keys and settings through this module, and
``edge-agent run`` loads its station file before the drivers, so that memory freed after
the load is reused by them (docs/performance.md, Memory).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent_drivers.modbus import reader as modbus_reader
from edge_agent_drivers.modbus.settings import ModbusSettings
from edge_agent_drivers.serialtext import reader as text_reader

from edge_agent.config.schema import Device, LinkProtocol
from edge_agent.driverkind import DriverKind

if TYPE_CHECKING:
    from edge_agent_drivers.modbus.driver import ModbusMapDriver
    from edge_agent_drivers.serialtext.driver import SerialTextDriver


def _modbus_driver(device: Device) -> ModbusMapDriver:
    """A ModbusMapDriver for ``device``; its module (and pymodbus) loads on first use."""
    from edge_agent_drivers.modbus.driver import ModbusMapDriver

    return ModbusMapDriver(device)


def _serial_text_driver(device: Device) -> SerialTextDriver:
    """A SerialTextDriver for ``device``; its module loads on first use."""
    from edge_agent_drivers.serialtext.driver import SerialTextDriver

    return SerialTextDriver(device)


#: The default kind, for a device that writes no ``driver:``.
DEFAULT_KIND = "modbus"

KINDS: dict[str, DriverKind] = {kind.name: kind for kind in (
    DriverKind("modbus", ModbusSettings, modbus_reader.MODBUS_KEYS,
               modbus_reader.read_unit_id, modbus_reader.read_settings, _modbus_driver,
               frozenset({LinkProtocol.MODBUS_TCP, LinkProtocol.MODBUS_RTU,
                          LinkProtocol.MODBUS_ASCII}),
               wrong_link=modbus_reader.wrong_link, refuses_other_keys=True,
               unit_id=modbus_reader.UNIT_ID),
    DriverKind(text_reader.KIND, text_reader.SETTINGS, text_reader.SERIAL_TEXT_KEYS,
               text_reader.read_unit_id, text_reader.read_settings, _serial_text_driver,
               frozenset({LinkProtocol.TEXT}), refuses_other_keys=True,
               unit_id=text_reader.ADDRESS),
)}


def kind_keys() -> tuple[str, ...]:
    """The device-level keys of every registered kind, each once, in registry order."""
    return tuple(dict.fromkeys(key for kind in KINDS.values() for key in kind.keys))
