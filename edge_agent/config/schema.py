"""Typed station configuration: what the loader produces once every field is valid.

Nothing past the loader sees YAML or dicts. Units are in the field names. Defaults here
are the ones documented in docs/configuration.md; change both together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class RegisterKind(StrEnum):
    """Modbus register table: holding (function 3) or input (function 4)."""

    HOLDING = "holding"
    INPUT = "input"


class DataType(StrEnum):
    """How a channel's register words become a number."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"

    @property
    def word_count(self) -> int:
        """Registers (16-bit words) one value occupies."""
        return 1 if self in (DataType.INT16, DataType.UINT16) else 2


class WordOrder(StrEnum):
    """Byte order of a multi-register value, letters naming bytes from most significant (A).

    ABCD: high word first, big-endian bytes (Modbus "big endian", most devices).
    CDAB: low word first ("word swapped", many meters and GCs).
    BADC: high word first, bytes swapped in each word.
    DCBA: fully little-endian.
    """

    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"


class Parity(StrEnum):
    """Serial parity as pyserial names it."""

    NONE = "N"
    EVEN = "E"
    ODD = "O"


class Synchronous(StrEnum):
    """SQLite ``synchronous`` for the outbox; FULL is the only setting that survives power loss."""

    FULL = "FULL"
    NORMAL = "NORMAL"


class MqttProtocol(StrEnum):
    """MQTT protocol version spoken to the broker."""

    V311 = "3.1.1"
    V5 = "5"


@dataclass(frozen=True)
class TcpLink:
    """A Modbus TCP endpoint. Several unit ids may sit behind one endpoint (gateways)."""

    name: str
    host: str
    port: int = 502
    timeout_ms: int = 1000
    connect_pause_ms: int = 0
    request_gap_ms: int = 0


@dataclass(frozen=True)
class SerialLink:
    """An RS-485/RS-232 port running Modbus RTU. Devices on it are polled in turn."""

    name: str
    port: str
    baudrate: int = 9600
    bytesize: int = 8
    parity: Parity = Parity.NONE
    stopbits: int = 1
    timeout_ms: int = 1000
    request_gap_ms: int = 10


Link = TcpLink | SerialLink


@dataclass(frozen=True)
class Channel:
    """One value read from a device. ``address`` is 0-based, as sent on the wire."""

    name: str
    address: int
    register: RegisterKind = RegisterKind.HOLDING
    data_type: DataType = DataType.UINT16
    word_order: WordOrder = WordOrder.ABCD
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""


@dataclass(frozen=True)
class Device:
    """One instrument (one Modbus unit id) on a link, with its register map."""

    id: str
    link: str
    unit_id: int
    interval_s: float
    channels: tuple[Channel, ...]
    driver: str = "modbus"


@dataclass(frozen=True)
class PollingPolicy:
    """How hard the pollers try before a poll is recorded as failed, and how they back off.

    ``retries`` are immediate re-reads inside one poll for transient errors (timeouts);
    after a failed poll the device's next poll is delayed exponentially from
    ``backoff_initial_s`` up to ``backoff_max_s`` so a dead device cannot hog its bus.
    """

    retries: int = 1
    retry_wait_s: float = 0.2
    backoff_initial_s: float = 2.0
    backoff_max_s: float = 60.0


@dataclass(frozen=True)
class Retention:
    """Limits on undelivered data; None means no limit of that kind."""

    max_rows: int | None = 1_000_000
    max_bytes: int | None = 1_000_000_000
    max_age_s: float | None = 30 * 86400.0


@dataclass(frozen=True)
class StoreConfig:
    """Where and how durably the outbox is kept."""

    path: Path
    synchronous: Synchronous = Synchronous.FULL
    retention: Retention = field(default_factory=Retention)


@dataclass(frozen=True)
class Secret:
    """A credential read from the environment or a file; never printed."""

    value: str = field(repr=False)

    def __str__(self) -> str:
        return "***"


@dataclass(frozen=True)
class TlsConfig:
    """TLS towards the broker. Without ``ca_file`` the system trust store is used."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class Topics:
    """Topic templates; ``{station}`` and ``{device}`` are substituted."""

    data: str = "edge/{station}/{device}/data"
    gap: str = "edge/{station}/{device}/gap"
    status: str = "edge/{station}/status"


@dataclass(frozen=True)
class MqttConfig:
    """Broker connection and forwarding limits."""

    host: str
    port: int = 1883
    client_id: str = ""
    protocol: MqttProtocol = MqttProtocol.V311
    username: str | None = None
    password: Secret | None = None
    tls: TlsConfig | None = None
    keepalive_s: int = 30
    qos: int = 1
    topics: Topics = field(default_factory=Topics)
    max_inflight: int = 20
    max_samples_per_message: int = 50
    max_message_bytes: int = 256 * 1024
    live_window_s: float = 30.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    shutdown_grace_s: float = 5.0


@dataclass(frozen=True)
class StationConfig:
    """Everything one station's agent needs, validated."""

    station_id: str
    links: dict[str, Link]
    devices: tuple[Device, ...]
    store: StoreConfig
    mqtt: MqttConfig
    polling: PollingPolicy = field(default_factory=PollingPolicy)
    source: Path | None = None
