"""The one module of ours that imports pyserial: opening ports for text-protocol links
(pymodbus opens its own RTU ports), and listing the ports present for messages a
technician can act on ("/dev/ttyUSB1 does not exist; ports here: /dev/ttyUSB0").

pyserial's API is small but its errors are OSError subclasses with uneven messages;
callers get plain ``OSError`` and bytes, nothing pyserial-specific.
"""

from __future__ import annotations

import os
import time

import serial

_READ_SLICE_S = 0.02  # longest a read blocks before the deadline is checked again


def available_ports() -> list[str]:
    """Device paths of the serial ports present now (USB adapters, onboard UARTs).
    pyserial's port listing (with glob) is imported here, for the message about a missing
    port: an agent whose ports are there never needs it (issue 11, RSS)."""
    from serial.tools import list_ports

    return sorted(port.device for port in list_ports.comports())


def explain_missing(path: str) -> str | None:
    """A hint when ``path`` does not exist, naming the ports that do; None if it exists."""
    if os.path.exists(path):
        return None
    ports = available_ports()
    listing = ", ".join(ports) if ports else "none found"
    return f"serial port {path} does not exist (serial ports on this machine: {listing})"


class SerialPort:
    """An open serial port, read and written as a byte stream by one thread."""

    def __init__(self, port: serial.Serial) -> None:
        self._port = port

    def read(self, timeout_s: float, limit: int) -> bytes:
        """What is waiting, or the first bytes to arrive within ``timeout_s``, at most
        ``limit`` bytes; b"" when nothing came. Raises OSError when the port is gone
        (adapter unplugged)."""
        deadline = time.monotonic() + timeout_s
        while limit > 0:
            data = self._port.read(min(max(1, self._port.in_waiting), limit))
            if data:
                return data + self.read_waiting(limit - len(data))
            if time.monotonic() >= deadline:
                break
        return b""

    def read_waiting(self, limit: int) -> bytes:
        """What has arrived already, at most ``limit`` bytes, without waiting. The
        limit is what keeps a babbling device from filling memory (the caller's read
        budget, see drivers/serialtext/protocol/client.py)."""
        waiting = min(self._port.in_waiting, limit)
        return self._port.read(waiting) if waiting > 0 else b""

    def write(self, data: bytes) -> None:
        """Send ``data`` and wait until it has left the port (RS-485 turnaround)."""
        self._port.write(data)
        self._port.flush()

    def close(self) -> None:
        self._port.close()


def open_serial_port(path: str, baudrate: int, bytesize: int, parity: str,
                     stopbits: int) -> SerialPort:
    """Open ``path`` (8N1 and so on as given), holding an exclusive ``flock`` on it while
    open, as pymodbus does for RTU ports: a second program (another agent, ``poll``)
    sees that the port is taken instead of stealing bytes. Raises OSError naming the
    port, with the ports that exist when ``path`` does not."""
    try:
        port = serial.Serial(path, baudrate=baudrate, bytesize=bytesize, parity=parity,
                             stopbits=stopbits, timeout=_READ_SLICE_S, write_timeout=5,
                             exclusive=True)
    except (OSError, ValueError) as err:
        raise OSError(explain_missing(path) or f"cannot open serial port {path}: {err}") \
            from err
    return SerialPort(port)
