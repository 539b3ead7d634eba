"""Instrument drivers (installed as ``edge_agent_drivers``; the folder is ``drivers/``).

Adding a driver adds one line here: name -> "module:Class".
"""

DRIVERS: dict[str, str] = {
    "modbus": "edge_agent_drivers.modbus.driver:ModbusMapDriver",
    "serial-text": "edge_agent_drivers.serialtext.driver:SerialTextDriver",
}
