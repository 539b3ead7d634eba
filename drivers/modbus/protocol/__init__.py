"""Modbus acquisition: pure decoding (decode.py), the link client (transport.py), and the
two modules that talk to pymodbus: pymodbus_client.py (pollers) and pymodbus_server.py
(simulators)."""
