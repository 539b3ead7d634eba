"""Typed station configuration: what the loader produces once every field is valid.

Nothing past the loader sees YAML or dicts. Units are in the field names. Defaults here
are the ones documented in docs/configuration.md; change both together. What only one
driver kind reads lives in its folder: a ``Device``'s ``settings`` is a
``ModbusSettings`` (drivers/modbus/settings.py, with the register-map types) or a
``TextSettings`` (drivers/serialtext/protocol/settings.py; imported here for type
checking only, so that a station without serial-text devices never loads it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent_drivers.modbus.settings import ModbusSettings

from edge_agent.alarms.rules import ChannelAlarms
from edge_agent.config.alarm_settings import AlarmSettings
from edge_agent.config.declare import setting
from edge_agent.config.limits import (
    BACKOFF_INITIAL_S,
    BACKOFF_MAX_S,
    INTERVAL_S,
    LIVE_WINDOW_S,
    MAX_AGE_S,
    RECONNECT_MAX_S,
    RECONNECT_MIN_S,
)

if TYPE_CHECKING:  # loaded with the first serial-text device (registry, DriverKind)
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


BAUDRATES = (300, 600, 1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200, 230400)
PARITY_WORDS = {"N": Parity.NONE, "E": Parity.EVEN, "O": Parity.ODD,
                "none": Parity.NONE, "even": Parity.EVEN, "odd": Parity.ODD}
TIMEOUT_MS = (10, 60000)  # a link's (or a device's) answer timeout
CONNECT_PAUSE_MS = (0, 60000)
REQUEST_GAP_MS = (0, 10000)
RETRIES = (0, 10)  # polling.retries, and a device's own


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

    name: str  # the key under links:, not a setting
    host: str = setting("text", hint="a host name or IP address")
    port: int = setting("integer", 502, range=(1, 65535))
    protocol: LinkProtocol = setting("choice", LinkProtocol.MODBUS_TCP,
                                     choices={p.value: p for p in LinkProtocol})
    timeout_ms: int = setting("integer", 1000, range=TIMEOUT_MS)
    connect_pause_ms: int = setting("integer", 0, range=CONNECT_PAUSE_MS)
    request_gap_ms: int = setting("integer", 0, range=REQUEST_GAP_MS)
    record: Path | None = setting("path", None)  # capture file of every frame sent and received


@dataclass(frozen=True)
class SerialLink:
    """An RS-485/RS-232 port (Modbus RTU by default). Devices on it are polled in turn."""

    name: str  # the key under links:, not a setting
    port: str = setting("text", hint="a serial device such as /dev/ttyUSB0")
    protocol: LinkProtocol = setting("choice", LinkProtocol.MODBUS_RTU, choices={
        p.value: p for p in LinkProtocol if p is not LinkProtocol.MODBUS_TCP})
    baudrate: int = setting("choice", 9600, choices={str(rate): rate for rate in BAUDRATES})
    bytesize: int = setting("choice", 8, choices={"7": 7, "8": 8})
    parity: Parity = setting("choice", Parity.NONE, choices=PARITY_WORDS,
                             hint="N, E, O (or none, even, odd)")
    stopbits: int = setting("choice", 1, choices={"1": 1, "2": 2})
    timeout_ms: int = setting("integer", 1000, range=TIMEOUT_MS)
    request_gap_ms: int = setting("integer", 10, range=REQUEST_GAP_MS)
    connect_pause_ms: int = setting("integer", 0, range=CONNECT_PAUSE_MS)
    record: Path | None = setting("path", None)  # capture file of every frame sent and received


Link = TcpLink | SerialLink


@dataclass(frozen=True)
class DevicePolling:
    """A device's own answer timeout and retries (a slow GC on a bus of fast detectors);
    None keeps the link's ``timeout_ms`` and the station's ``polling.retries``."""

    timeout_ms: int | None = setting("integer", None, range=TIMEOUT_MS)  # as a link's
    retries: int | None = setting("integer", None, range=RETRIES)  # as polling.retries


@dataclass(frozen=True)
class Device:
    """One instrument on a link: what every driver kind has in common, and ``settings``,
    the part only its kind reads (``driver`` names the kind, see
    edge_agent_drivers.registry). ``driver``'s choices are the registered kinds, given by
    the reader (the registry imports this module)."""

    id: str = setting("text", hint="the device's id, e.g. gc-1")
    link: str = setting("text", hint="the name of a link under links:")
    # its range depends on the driver kind, which reads it (DriverKind.read_unit_id)
    unit_id: int = setting("integer", hint="the device's address on its link")
    # interval_s and driver may come from the device's profile (config/profiles.py)
    interval_s: float = setting("number", range=INTERVAL_S, layered=True)
    settings: ModbusSettings | TextSettings
    driver: str = setting("choice", "modbus", layered=True)  # the message lists the kinds
    profile: str | None = setting("text", None,
                                  hint="a profile name such as generic-gc, or a file")
    polling: DevicePolling = field(default_factory=DevicePolling)
    # read by config/validate_alarms.py; a profile's rules per channel, the station's over them
    alarms: tuple[ChannelAlarms, ...] = setting(
        "custom", (), layered=True,
        hint="channel name: its alarm rules (high, high_high, low, low_low, rate_of_rise, "
             "instrument)")


@dataclass(frozen=True)
class PollingPolicy:
    """How hard the pollers try before a poll is recorded as failed, and how they back off.

    ``retries`` are immediate re-reads inside one poll for transient errors (timeouts);
    after a failed poll the device's next poll is delayed exponentially from
    ``backoff_initial_s`` up to ``backoff_max_s`` so a dead device cannot hog its bus.
    """

    retries: int = setting("integer", 1, range=RETRIES)
    retry_wait_s: float = setting("number", 0.2, range=(0, 60))
    backoff_initial_s: float = setting("number", 2.0, range=BACKOFF_INITIAL_S)
    backoff_max_s: float = setting("number", 60.0, range=BACKOFF_MAX_S)


@dataclass(frozen=True)
class Retention:
    """Limits on undelivered data; None means no limit of that kind."""

    max_rows: int | None = setting("limit", 1_000_000, range=(1, None),
                                   hint="an integer >= 1")
    max_bytes: int | None = setting("limit", 1_000_000_000, range=(1_000_000, None),
                                    hint="a size >= 1MB like 500MB or 2GiB")
    max_age_s: float | None = setting("limit", 30 * 86400.0, range=MAX_AGE_S,
                                      hint="a duration 1s..3650d like 86400, 12h or 30d")


@dataclass(frozen=True)
class StoreConfig:
    """Where and how durably the outbox is kept."""

    path: Path = setting("path", hint="the outbox file (default: outbox.sqlite3 in the "
                         "state directory)")
    synchronous: Synchronous = setting("choice", Synchronous.FULL,
                                       choices={m.value: m for m in Synchronous})
    retention: Retention = setting("section", default_factory=Retention)


@dataclass(frozen=True)
class Secret:
    """A credential read from the environment or a file; never printed."""

    value: str = field(repr=False)

    def __str__(self) -> str:
        return "***"


class StandInSecret(str):
    """What a command that never uses the secrets (``status``, ``export``) reads for an
    environment variable its shell lacks. The loader checks everything else as usual but
    not this value's format: an HJ 212 PW or SM4 key has one, and a stand-in judged by it
    made ``status`` refuse a station file whose secrets live in the service's env file."""


@dataclass(frozen=True)
class TlsConfig:
    """TLS towards the broker. Without ``ca_file`` the system trust store is used."""

    ca_file: Path | None = setting("path", None)
    cert_file: Path | None = setting("path", None)
    key_file: Path | None = setting("path", None)
    insecure_skip_verify: bool = setting("flag", False)


@dataclass(frozen=True)
class Topics:
    """Topic templates; ``{station}`` and ``{device}`` are substituted."""

    data: str = setting("text", "edge/{station}/{device}/data")
    gap: str = setting("text", "edge/{station}/{device}/gap")
    alarm: str = setting("text", "edge/{station}/alarms/{device}")
    status: str = setting("text", "edge/{station}/status")


@dataclass(frozen=True)
class BrokerAddress:
    """One broker node the MQTT uplink may connect to (an item of ``mqtt.brokers``)."""

    host: str
    port: int

    def __str__(self) -> str:
        """``host:port``, an IPv6 address in brackets, as ``brokers:`` items are written."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


BROKERS_HINT = ("a list of broker addresses such as [broker-1:1883, broker-2:1883], or of "
                "'{host: broker-1, port: 1883}' items")


@dataclass(frozen=True)
class MqttConfig:
    """Broker connection and forwarding limits.

    ``host``/``port`` name one broker; ``brokers`` several (the nodes of a cluster, or a
    primary and a standby), tried in turn (forward/brokers.py). With ``brokers``,
    ``host``/``port`` hold its first address, so both forms read the same downstream;
    ``addresses`` is what the forwarder connects to.
    """

    host: str = setting("text", hint="the broker's host name or IP address")
    port: int = setting("integer", 1883, range=(1, 65535))  # 8883 with tls (read_mqtt)
    brokers: tuple[BrokerAddress, ...] = setting("custom", (), hint=BROKERS_HINT)
    # "": edge-agent-STATION (read_mqtt); null as not set, so a template can leave it empty
    client_id: str = setting("text", "", hint="the client id", null_ok=True)
    protocol: MqttProtocol = setting("choice", MqttProtocol.V311, hint="3.1.1 or 5",
                                     choices={"3.1.1": MqttProtocol.V311,
                                              "5": MqttProtocol.V5, "5.0": MqttProtocol.V5})
    username: str | None = setting("text", None, hint="the username")
    password: Secret | None = setting("secret", None, key=("password_env", "password_file"))
    tls: TlsConfig | None = setting("section", None)
    keepalive_s: int = setting("integer", 30, range=(5, 3600))
    qos: int = setting("integer", 1, range=(1, 1))
    topics: Topics = setting("section", default_factory=Topics)
    max_inflight: int = setting("integer", 20, range=(1, 1000))
    max_samples_per_message: int = setting("integer", 50, range=(1, 10000))
    max_message_bytes: int = setting("integer", 256 * 1024, range=(1024, 268435455))
    live_window_s: float = setting("number", 30.0, range=LIVE_WINDOW_S)
    reconnect_min_s: float = setting("number", 1.0, range=RECONNECT_MIN_S)
    reconnect_max_s: float = setting("number", 60.0, range=RECONNECT_MAX_S)
    shutdown_grace_s: float = setting("number", 5.0, range=(0, 300))

    @property
    def addresses(self) -> tuple[BrokerAddress, ...]:
        """The broker nodes in the order they are tried: ``brokers``, or host and port."""
        return self.brokers or (BrokerAddress(self.host, self.port),)


@dataclass(frozen=True)
class HealthConfig:
    """The agent's local HTTP endpoint: ``/healthz``, ``/metrics`` (Prometheus) and
    ``/status`` (read by ``edge-agent status``). Port 0 takes any free port (tests)."""

    enabled: bool = setting("flag", True)
    host: str = setting("text", "127.0.0.1", hint=(
        "the IP address to listen on: 127.0.0.1 (this PC only), 0.0.0.0 (every network "
        "interface), ::1, or localhost"))
    port: int = setting("integer", 9108, range=(0, 65535),
                        hint="an integer 1..65535 (or 0: any free port)")
    # Required (for everything but /healthz) when host is not this PC's loopback.
    token: Secret | None = setting("secret", None, key=("token_env", "token_file"), hint=(
        "the NAME of an environment variable holding the token (token_env), or the path "
        "of a file holding it (token_file)"))


HJ212_MIN_INTERVALS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)  # HJ 212-2017 Table 4
# crc.CrcVariant's values, spelled here so reading a station file loads no HJ 212 code
HJ212_CRC_VARIANTS = ("hj212", "modbus-low-first", "modbus-high-first")


@dataclass(frozen=True)
class Hj212Channel:
    """One channel an HJ 212 platform receives (an item of ``uplinks.NAME.channels``):
    the device's channel, the pollutant code it is sent as and the unit the platform
    expects (None: the code table's)."""

    device: str = setting("text", hint="a device id such as gc-1")
    channel: str = setting("text", hint="the name of one of the device's channels")
    code: str = setting("text", hint="a pollutant code such as a25002")
    unit: str | None = setting("text", None, hint="the unit the platform expects, e.g. mg/m3")


@dataclass(frozen=True)
class PollutantCode:
    """One HJ 212 pollutant code (hj212/codes.yaml, or a station's ``codes:`` entry).
    ``where``: ``file:line`` it was defined at, for duplicate errors. Defined here, not in
    edge_agent/hj212/, so reading a station file loads no HJ 212 code without a platform."""

    code: str
    name_zh: str
    name_en: str
    unit: str
    versions: tuple[int, ...]
    decimals: int | None
    where: str


@dataclass(frozen=True)
class Hj212Config:
    """One HJ 212 platform (``kind: hj212``; edge_agent/hj212/, docs/hj212.md).

    ``timeout_s``/``retries``: HJ 212-2017 Table 1 gives 10 s and 3 for GPRS/4G links
    (5 s × 3 for ADSL), and CN 1000 lets the platform set 1..99 of each.
    ``heartbeat_s``: 9015 every so often, HJ 212-2025 only (0: none; no source gives
    the standard's value). ``encrypt``: SM4 of the data region as HJ 212-2025 §6.4.4
    says (needs ``sm4_key``); 2017 has no encryption. ``codes``: the station's own
    pollutant codes beside the shipped table (hj212/codes.yaml), same shape.
    ``realtime_interval_s``: one 2011 per device per interval (0: every sample; the
    platform may set 30..3600 with CN 1062). ``crc``: the CRC variant sent.
    """

    host: str = setting("text", hint="the platform's host name or IP address")
    port: int = setting("integer", range=(1, 65535))
    mn: str = setting("text", hint="the station's MN as the platform assigned it")
    st: str = setting("text", hint="the system code ST the platform expects, two digits "
                      "such as 22 or 31")
    password: Secret | None = setting("secret", None, key=("password_env", "password_file"))
    version: int = setting("choice", 2025, choices={"2017": 2017, "2025": 2025},
                           hint="2017 or 2025 (HJ 212-2017 or HJ 212-2025)")
    ack: bool = setting("flag", True)
    timeout_s: int = setting("integer", 10, range=(1, 99))
    retries: int = setting("integer", 3, range=(1, 99))
    realtime_interval_s: int = setting(
        "integer", 0, range=(0, 3600),
        hint="0 (every sample) or 30..3600 s, HJ 212's RtdInterval")
    minute_interval_min: int = setting(
        "choice", 10, choices={str(minutes): minutes for minutes in HJ212_MIN_INTERVALS},
        hint="one of 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 (minutes)")
    hourly: bool = setting("flag", True)
    daily: bool = setting("flag", True)
    heartbeat_s: int = setting("integer", 60, range=(0, 3600))
    encrypt: bool | None = setting("flag", None, null_ok=True)  # None: on for 2025 (reader)
    sm4_key: Secret | None = setting("secret", None, key=("sm4_key_env", "sm4_key_file"))
    allow_set_clock: bool = setting("flag", False)
    crc: str = setting("choice", "hj212", choices={name: name for name in HJ212_CRC_VARIANTS},
                       hint="hj212 (the standard's Appendix A), modbus-low-first or "
                       "modbus-high-first (a platform that insists on the Modbus CRC)")
    channels: tuple[Hj212Channel, ...] = setting("custom", (), hint=(
        "a list of {device: gc-1, channel: benzene, code: a25002} items"))
    codes: tuple[PollutantCode, ...] = setting("custom", (), hint=(
        "a mapping of codes such as {x90001: {zh: 某物质, en: something, unit: mg/m3, "
        "versions: [2017, 2025]}}"))

    @property
    def addresses(self) -> tuple[BrokerAddress, ...]:
        """The platform's address, as ``edge-agent check`` lists every uplink's."""
        return (BrokerAddress(self.host, self.port),)


DEFAULT_UPLINK_NAME = "default"
"""The uplink the ``mqtt:`` section describes (the outbox's claims key it by this name)."""


@dataclass(frozen=True)
class SparkplugConfig:
    """A Sparkplug B 3.0 edge node (``kind: sparkplug``; docs/sparkplug.md): the station
    is edge node ``edge_node_id`` of group ``group_id``, each device it carries a
    Sparkplug device. The broker settings are an MQTT uplink's (``broker``, written at
    the same level); ``topics``, ``qos``, ``max_samples_per_message`` and
    ``max_message_bytes`` are refused by the reader, since Sparkplug fixes them.
    ``primary_host_id``: data only while that host's STATE is online.
    ``node_devices``: each carried device as a Sparkplug device (sparkplug/model.py
    ``DeviceSpec``), filled by the loader from the devices section; not a setting.
    """

    group_id: str = setting("text", hint="the Sparkplug group id, text without / + #")
    edge_node_id: str = setting("text", hint="the Sparkplug edge node id, text without / + #")
    broker: MqttConfig = setting("inline", of=MqttConfig)
    primary_host_id: str | None = setting(
        "text", None, hint="the primary host application's id, text without / + #")
    node_devices: tuple[object, ...] = ()

    @property
    def addresses(self) -> tuple[BrokerAddress, ...]:
        """The broker nodes, as ``edge-agent check`` lists every uplink's."""
        return self.broker.addresses


@dataclass(frozen=True)
class UplinkConfig:
    """One place the readings go, acknowledged on its own (issue 12): a sample leaves the
    outbox when every uplink that carries its device has acknowledged it.

    ``kind`` says which settings apply (``mqtt``: ``mqtt`` holds them; later kinds add
    their own field, named in their registry entry, config/uplink_kinds.py). ``devices``
    lists the device ids this uplink carries; None: all. In the station file an uplink's
    own settings stand beside ``kind`` and ``devices`` (``uplinks.NAME.host``), which is
    why its settings field is declared inline.
    """

    name: str  # the key under uplinks:, not a setting
    # the choices are the registered kinds, given by the reader (config/uplink_kinds.py)
    kind: str = setting("choice", "mqtt")
    devices: tuple[str, ...] | None = setting("custom", None, hint=(
        "a list of device ids such as [gc-1, h2s-1] (leave devices out to carry every "
        "device)"))
    # an mqtt uplink's settings, written beside kind and devices, as under mqtt:
    mqtt: MqttConfig | None = setting("inline", None, of=MqttConfig)
    # an HJ 212 platform's settings (kind: hj212), written beside kind and devices
    hj212: Hj212Config | None = setting("inline", None, of=Hj212Config)
    # a Sparkplug B edge node's settings (kind: sparkplug), written beside kind and devices
    sparkplug: SparkplugConfig | None = setting("inline", None, of=SparkplugConfig)

    def carries(self, device_id: str) -> bool:
        """Whether this uplink should deliver ``device_id``'s samples and events."""
        return self.devices is None or device_id in self.devices


@dataclass(frozen=True)
class StationConfig:
    """Everything one station's agent needs, validated. ``station_id`` is the one key of
    the ``station:`` section."""

    station_id: str = setting("text", key="id", hint="the station's id, e.g. ST01")
    links: dict[str, Link]
    devices: tuple[Device, ...]
    store: StoreConfig
    # None when the file has no mqtt: section (then uplinks: names at least one uplink)
    mqtt: MqttConfig | None
    polling: PollingPolicy = field(default_factory=PollingPolicy)
    source: Path | None = None
    health: HealthConfig = field(default_factory=HealthConfig)
    # The named uplinks of the ``uplinks:`` section, beside the default one (``mqtt:``).
    uplinks: tuple[UplinkConfig, ...] = ()
    # The ``alarms:`` section (config/validate_alarms.py); None when the file has none.
    alarms: AlarmSettings | None = None

    def has_alarms(self) -> bool:
        """Whether the agent decides alarms at all: a device has rules, or the station
        writes ``alarms:`` (then every device gets its communication alarm)."""
        return self.alarms is not None or any(device.alarms for device in self.devices)

    def every_uplink(self) -> tuple[UplinkConfig, ...]:
        """Every uplink the agent feeds: the ``mqtt:`` section's (named
        ``DEFAULT_UPLINK_NAME``) first, when there is one, then the ``uplinks:`` section's.
        The runtime reads uplinks only through this, never ``mqtt`` directly."""
        default = (UplinkConfig(DEFAULT_UPLINK_NAME, "mqtt", None, self.mqtt),) \
            if self.mqtt is not None else ()
        return default + self.uplinks

    def devices_by_link(self) -> dict[str, tuple[Device, ...]]:
        """Each link that has devices, with its devices in polling order (one poller
        each). Here rather than in reload.py, so that the agent's start needs no reload
        code (reload.py loads with the first SIGHUP; issue 11, RSS)."""
        groups: dict[str, list[Device]] = {}
        for device in self.devices:
            groups.setdefault(device.link, []).append(device)
        return {name: tuple(devices) for name, devices in groups.items()}
