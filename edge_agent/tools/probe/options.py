"""Command-line values of ``edge-agent probe`` turned into typed objects, purely.

Each parser raises ValueError with a message a technician can act on; argparse shows it
as a usage error (exit status 2) before any port is opened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from edge_agent_drivers.modbus.settings import RegisterKind

from edge_agent.config.schema import Link, LinkProtocol, Parity, SerialLink, TcpLink

PROTOCOLS = {
    "modbus-tcp": LinkProtocol.MODBUS_TCP,
    "modbus-rtu": LinkProtocol.MODBUS_RTU,
    "modbus-rtu-over-tcp": LinkProtocol.MODBUS_RTU,  # RTU frames through a TCP gateway
    "modbus-ascii": LinkProtocol.MODBUS_ASCII,
}
TABLES = {
    "coil": RegisterKind.COIL, "coils": RegisterKind.COIL, "1": RegisterKind.COIL,
    "discrete": RegisterKind.DISCRETE, "discrete-input": RegisterKind.DISCRETE,
    "2": RegisterKind.DISCRETE,
    "holding": RegisterKind.HOLDING, "3": RegisterKind.HOLDING,
    "input": RegisterKind.INPUT, "4": RegisterKind.INPUT,
}
PARITIES = {"N": Parity.NONE, "E": Parity.EVEN, "O": Parity.ODD, "NONE": Parity.NONE,
            "EVEN": Parity.EVEN, "ODD": Parity.ODD}
_SERIAL_PATH = re.compile(r"^(/\S+|COM[0-9]+)$", re.IGNORECASE)
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[\w.-]+))(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class Target:
    """Where the device is: a serial port path, or a TCP host and port."""

    serial_port: str | None = None
    host: str | None = None
    tcp_port: int = 502

    @property
    def is_serial(self) -> bool:
        return self.serial_port is not None


@dataclass(frozen=True)
class SerialSettings:
    """Line settings; only used for a serial target."""

    baudrate: int = 9600
    parity: Parity = Parity.NONE
    stopbits: int = 1
    bytesize: int = 8


def parse_target(text: str) -> Target:
    """'/dev/ttyUSB0' or 'COM3' is a serial port; 'host', 'host:port', '[v6]:port' TCP."""
    text = text.strip()
    if _SERIAL_PATH.match(text):
        return Target(serial_port=text)
    found = _HOST_PORT.match(text)
    if not found:
        raise ValueError(f"'{text}': expected a serial port (/dev/ttyUSB0) or a network "
                         "address (192.168.1.20 or 192.168.1.20:502)")
    port = int(found["port"]) if found["port"] else 502
    if not 1 <= port <= 65535:
        raise ValueError(f"'{text}': TCP port must be 1..65535")
    return Target(host=found["v6"] or found["host"], tcp_port=port)


def build_link(target: Target, protocol: str | None, serial: SerialSettings,
               timeout_ms: int) -> Link:
    """The link the probe talks over; the protocol defaults to what the target suggests."""
    if target.serial_port is not None:
        if protocol in ("modbus-tcp", "modbus-rtu-over-tcp"):
            raise ValueError(f"--protocol {protocol} needs a network address, not the serial "
                             f"port {target.serial_port}")
        return SerialLink("probe", target.serial_port,
                          protocol=PROTOCOLS[protocol or "modbus-rtu"],
                          baudrate=serial.baudrate, bytesize=serial.bytesize,
                          parity=serial.parity, stopbits=serial.stopbits,
                          timeout_ms=timeout_ms)
    assert target.host is not None
    return TcpLink("probe", target.host, target.tcp_port,
                   protocol=PROTOCOLS[protocol or "modbus-tcp"], timeout_ms=timeout_ms)


def describe_link(link: Link) -> str:
    """'/dev/ttyUSB0 (9600 8N1, modbus-rtu)' or '192.168.1.20:502 (modbus-tcp)'."""
    if isinstance(link, TcpLink):
        protocol = ("modbus-rtu-over-tcp" if link.protocol is LinkProtocol.MODBUS_RTU
                    else link.protocol.value)
        return f"{link.host}:{link.port} ({protocol})"
    return (f"{link.port} ({link.baudrate} {link.bytesize}{link.parity.value}{link.stopbits}, "
            f"{link.protocol.value})")


def parse_table(text: str) -> RegisterKind:
    """'holding', 'input', 'coil', 'discrete', or the function code 3, 4, 1, 2."""
    kind = TABLES.get(text.strip().lower())
    if kind is None:
        raise ValueError(f"'{text}': expected holding (3), input (4), coil (1) or "
                         "discrete (2)")
    return kind


def parse_parity(text: str) -> Parity:
    parity = PARITIES.get(text.strip().upper())
    if parity is None:
        raise ValueError(f"'{text}': expected N, E or O (none, even, odd)")
    return parity


def parse_units(text: str) -> list[int]:
    """'1-247', '1,5,10-20' -> sorted unit ids; each 0..255."""
    units: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise ValueError(f"'{text}': expected unit ids like 1-247 or 1,5,10-20") from None
        if not 0 <= low <= high <= 255:
            raise ValueError(f"'{part.strip()}': unit ids are 0..255, low to high")
        units.update(range(low, high + 1))
    return sorted(units)


def default_tolerance(value_text: str) -> float:
    """Half a step of the display's last digit: '12.5' -> 0.05, '350' -> 0.5.

    A display rounds to the digits it shows, so 12.5 on screen is anything from 12.45 to
    12.55 in the register.
    """
    exponent = _decimal(value_text).as_tuple().exponent
    assert isinstance(exponent, int)  # finite: _decimal refuses NaN and infinity
    return 0.5 * 10.0 ** exponent


def parse_tolerance(text: str, value_text: str) -> float:
    """An absolute tolerance ('0.1') or one relative to the value ('2%')."""
    relative = text.strip().endswith("%")
    amount = float(_decimal(text.strip().rstrip("%")))
    if amount < 0:
        raise ValueError(f"'{text}': a tolerance cannot be negative")
    return abs(float(_decimal(value_text))) * amount / 100 if relative else amount


def parse_value(text: str) -> float:
    """The number on the display, as typed: '12.5', '-0.3', '1.2e3'."""
    return float(_decimal(text))


def _decimal(text: str) -> Decimal:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"'{text}': expected a number like 12.5") from None
    if not number.is_finite():
        raise ValueError(f"'{text}': expected a finite number like 12.5")
    return number
