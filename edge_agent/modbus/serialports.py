"""The one module that imports pyserial directly (pymodbus uses it for RTU on its own):
what serial ports this machine has, for messages a technician can act on."""

from __future__ import annotations

import os

from serial.tools import list_ports


def available_ports() -> list[str]:
    """Device paths of the serial ports present now (USB adapters, onboard UARTs)."""
    return sorted(port.device for port in list_ports.comports())


def explain_missing(path: str) -> str | None:
    """A hint when ``path`` does not exist, naming the ports that do; None if it exists."""
    if os.path.exists(path):
        return None
    ports = available_ports()
    listing = ", ".join(ports) if ports else "none found"
    return f"serial port {path} does not exist (serial ports on this machine: {listing})"
