"""Typed station configuration: what the loader produces once every field is valid.

Nothing past the loader sees YAML or dicts. Units are in the field names. Defaults here
are the ones documented in docs/configuration.md; change both together. What only one
driver kind reads lives in its folder: a ``Device``'s ``settings`` is a
``ModbusSettings`` (drivers/modbus/settings.py, with the register-map types) or a
``TextSettings`` (drivers/serialtext/protocol/settings.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from edge_agent_drivers.modbus.settings import ModbusSettings
from edge_agent_drivers.serialtext.protocol.settings import TextSettings


class LinkProtocol(StrEnum):
    """What is spoken on a link.

    modbus-tcp: Modbus TCP (MBAP header), TCP links only.
    modbus-rtu: Modbus RTU; on a TCP link, RTU frames over TCP (serial-to-Ethernet gateways
    in transparent mode).
    modbus-ascii: Modbus ASCII (':' ... LRC CR LF), serial or TCP.
    text: an instrument's own ASCII protocol (drivers/serialtext), serial or TCP.
    """

    MODBUS_TCP = "modbus-tcp"
    MODBUS_RTU = "modbus-rtu"
    MODBUS_ASCII = "modbus-ascii"
    TEXT = "text"

    @property
    def is_modbus(self) -> bool:
        return self is not LinkProtocol.TEXT


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
    protocol: LinkProtocol = LinkProtocol.MODBUS_TCP
    timeout_ms: int = 1000
    connect_pause_ms: int = 0
    request_gap_ms: int = 0
    record: Path | None = None  # capture file of every frame sent and received


@dataclass(frozen=True)
class SerialLink:
    """An RS-485/RS-232 port (Modbus RTU by default). Devices on it are polled in turn."""

    name: str
    port: str
    protocol: LinkProtocol = LinkProtocol.MODBUS_RTU
    baudrate: int = 9600
    bytesize: int = 8
    parity: Parity = Parity.NONE
    stopbits: int = 1
    timeout_ms: int = 1000
    request_gap_ms: int = 10
    connect_pause_ms: int = 0
    record: Path | None = None  # capture file of every frame sent and received


Link = TcpLink | SerialLink


@dataclass(frozen=True)
class DevicePolling:
    """A device's own answer timeout and retries (a slow GC on a bus of fast detectors);
    None keeps the link's ``timeout_ms`` and the station's ``polling.retries``."""

    timeout_ms: int | None = None
    retries: int | None = None


@dataclass(frozen=True)
class Device:
    """One instrument on a link: what every driver kind has in common, and ``settings``,
    the part only its kind reads (``driver`` names the kind, see
    edge_agent_drivers.registry)."""

    id: str
    link: str
    unit_id: int
    interval_s: float
    settings: ModbusSettings | TextSettings
    driver: str = "modbus"
    profile: str | None = None
    polling: DevicePolling = field(default_factory=DevicePolling)


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
class HealthConfig:
    """The agent's local HTTP endpoint: ``/healthz``, ``/metrics`` (Prometheus) and
    ``/status`` (read by ``edge-agent status``). Port 0 takes any free port (tests)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9108


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
    health: HealthConfig = field(default_factory=HealthConfig)
