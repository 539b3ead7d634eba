"""Modbus acquisition: pure decoding, and the one module that talks to pymodbus."""
