"""Generic Modbus register-map driver: channels listed in the station file."""
