"""The ``edge-agent simulate`` file: which simulated instruments to serve, and where.

Read with the station file's machinery (``edge_agent.config``), so a mistake is reported
the same way: every problem at once, each with file, line, setting and what is expected.
See docs/simulate.md and config/simulate.example.yaml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from edge_agent.config.errors import ConfigError
from edge_agent.config.fields import Checker, Section, as_section, join, one_of, suggest
from edge_agent.config.schema import LinkProtocol
from edge_agent.config.yamlsource import MapNode, ScalarNode, SeqNode, kind, read_yaml_file
from edge_agent.tools.sim.models import PROFILES, Common, Fault, Model, Signal

TOP_KEYS = ("servers", "devices")
SERVER_KEYS = ("listen", "pty", "port", "baudrate", "protocol")
COMMON_KEYS = ("id", "server", "unit_id", "profile", "utc_offset", "warmup_s", "seed",
               "values", "faults")
PROFILE_KEYS = {"generic-gc": ("cycle_s", "streams"), "daniel-enron-gc": ("cycle_s", "streams"),
                "generic-ftir": ("cycle_s", "background_every"),
                "generic-gas-detector": ("update_s", "model")}
SIGNAL_KEYS = ("base", "ramp_per_h", "noise", "min", "max")
FAULT_KEYS = ("kind", "channel", "from_s", "to_s")
PER_CHANNEL_FAULTS = ("broken", "sensor_fault")  # detector faults of one gas
_OFFSET = re.compile(r"^([+-])([01][0-9]|2[0-3]):([0-5][0-9])$")
_LISTEN = re.compile(r"^(\[[0-9a-fA-F:]+\]|[^:\s]+):([0-9]{1,5})$")


@dataclass(frozen=True)
class ServerSpec:
    """Where devices are served: ``listen`` (Modbus TCP, or RTU/ASCII over TCP), a pty
    pair, or a serial ``port``."""

    name: str
    protocol: LinkProtocol
    host: str | None = None
    tcp_port: int | None = None
    pty: bool = False
    serial_port: str | None = None
    baudrate: int = 9600


@dataclass(frozen=True)
class DeviceSpec:
    """One simulated instrument; ``settings`` are its model's own (``cycle_s``, ...)."""

    id: str
    server: str
    unit_id: int
    profile: str
    utc_offset_min: int
    warmup_s: float
    seed: str
    values: tuple[tuple[str, Signal], ...]
    faults: tuple[Fault, ...]
    settings: tuple[tuple[str, object], ...]

    def model(self, started: datetime) -> Model:
        """The instrument, with simulated second 0 at ``started`` (UTC)."""
        common = Common(self.id, started, self.utc_offset_min, dict(self.values),
                        self.faults, self.warmup_s, self.seed)
        model_class, _channels = PROFILES[self.profile]
        return model_class(common, **dict(self.settings))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class SimConfig:
    servers: tuple[ServerSpec, ...]
    devices: tuple[DeviceSpec, ...]


def load_sim_config(path: Path) -> SimConfig:
    """The validated file; ConfigError lists every problem."""
    file = str(path)
    document = read_yaml_file(path, file)
    ck = Checker(file, document.issues)
    if document.root is None:
        raise ConfigError(ck.issues)
    top = as_section(ck, document.root, "", 1, TOP_KEYS)
    if top is None:
        raise ConfigError(ck.issues)
    servers = _servers(ck, top)
    named = top.node.get("servers")
    names = [e.key for e in named.value.entries] if named is not None and isinstance(
        named.value, MapNode) else []
    devices = _devices(ck, top, {server.name: server for server in servers}, names)
    if ck.issues:
        raise ConfigError(ck.issues)
    return SimConfig(servers, devices)


def _servers(ck: Checker, top: Section) -> tuple[ServerSpec, ...]:
    entry = top.node.get("servers")
    if entry is None:
        top.missing("servers", "where to serve the devices, e.g. lan: {listen: "
                               "127.0.0.1:1502}")
        return ()
    if not isinstance(entry.value, MapNode) or not entry.value.entries:
        top.report("servers", "expected one or more servers by name, e.g. lan: {listen: "
                              f"127.0.0.1:1502}}, found {kind(entry.value)}")
        return ()
    servers = []
    for server in entry.value.entries:
        sec = as_section(ck, server.value, join("servers", server.key), server.line,
                         SERVER_KEYS)
        if sec is not None and (spec := _server(sec, server.key)) is not None:
            servers.append(spec)
    return tuple(servers)


def _server(sec: Section, name: str) -> ServerSpec | None:
    where = [key for key in ("listen", "pty", "port") if sec.has(key)]
    if len(where) != 1:
        sec.ck.report(sec.line, sec.path, "give exactly one of listen: HOST:PORT (Modbus "
                      "TCP), pty: true (a virtual serial port) or port: /dev/ttyUSB1 "
                      f"(found {', '.join(where) or 'none'})")
        return None
    serial = where[0] != "listen"
    protocols = {p.value: p for p in LinkProtocol if p.is_modbus
                 and not (serial and p is LinkProtocol.MODBUS_TCP)}
    protocol = sec.choice("protocol", protocols, LinkProtocol.MODBUS_RTU if serial
                          else LinkProtocol.MODBUS_TCP)
    baudrate = sec.integer("baudrate", 9600, 300, 230400)
    if not serial and sec.has("baudrate"):
        sec.report("baudrate", "a baud rate is for pty or port servers, not listen")
    if where[0] == "listen":
        text = sec.text("listen", what="HOST:PORT, e.g. 127.0.0.1:1502 (port 0: a free one)")
        match = _LISTEN.match(text or "")
        if text is not None and (match is None or int(match.group(2)) > 65535):
            sec.report("listen", f"expected HOST:PORT, e.g. 127.0.0.1:1502 or 0.0.0.0:502 "
                                 f"(port 0: a free one), found '{text}'")
            return None
        if match is None or protocol is None:
            return None
        return ServerSpec(name, protocol, match.group(1).strip("[]"), int(match.group(2)))
    if where[0] == "pty":
        if sec.flag("pty") is not True:
            sec.report("pty", "write pty: true, or use listen or port instead")
            return None
        return ServerSpec(name, protocol or LinkProtocol.MODBUS_RTU, pty=True,
                          baudrate=baudrate or 9600)
    port = sec.text("port", what="a serial device such as /dev/ttyUSB1")
    if port is None or protocol is None:
        return None
    return ServerSpec(name, protocol, serial_port=port, baudrate=baudrate or 9600)


def _devices(ck: Checker, top: Section, servers: dict[str, ServerSpec], names: list[str]
             ) -> tuple[DeviceSpec, ...]:
    """The devices; ``names`` are all servers in the file, valid or not (a device on a
    server whose settings are wrong is not also told the server is undefined)."""
    entry = top.node.get("devices")
    if entry is None:
        top.missing("devices", "a list of simulated devices, each starting with '- id:'")
        return ()
    if not isinstance(entry.value, SeqNode) or not entry.value.items:
        top.report("devices", "expected a list of devices ('- id: ...' items), found "
                              f"{kind(entry.value)}")
        return ()
    devices: list[DeviceSpec] = []
    taken: dict[tuple[str, int], str] = {}
    for index, node in enumerate(entry.value.items):
        profile = _profile_of(node)
        allowed = COMMON_KEYS + PROFILE_KEYS.get(profile or "", ())
        sec = as_section(ck, node, f"devices[{index}]", node.line, allowed,
                         _profile_hints(profile))
        if sec is None:
            continue
        device = _device(sec, servers, names)
        if device is None:
            continue
        if (device.server, device.unit_id) in taken:
            sec.report("unit_id", f"unit {device.unit_id} on server '{device.server}' is "
                                  f"already device '{taken[(device.server, device.unit_id)]}'")
            continue
        if device.id in [d.id for d in devices]:
            sec.report("id", f"'{device.id}' is already the id of another device")
            continue
        taken[(device.server, device.unit_id)] = device.id
        devices.append(device)
    return tuple(devices)


def _profile_of(node: object) -> str | None:
    entry = node.get("profile") if isinstance(node, MapNode) else None
    if entry is None or not isinstance(entry.value, ScalarNode):
        return None
    return str(entry.value.value) if str(entry.value.value) in PROFILES else None


def _profile_hints(profile: str | None) -> dict[str, str]:
    """'streams is a setting of generic-gc, ...' rather than 'unknown setting'."""
    hints = {}
    for key in {key for keys in PROFILE_KEYS.values() for key in keys}:
        owners = [name for name, keys in PROFILE_KEYS.items() if key in keys]
        if profile is not None and profile not in owners:
            hints[key] = (f"'{key}' is a setting of {one_of(owners)}; this device's profile "
                          f"is {profile}")
    return hints


def _device(sec: Section, servers: dict[str, ServerSpec], names: list[str]
            ) -> DeviceSpec | None:
    device_id = sec.text("id", what="a name for the device, e.g. gc-1")
    server = sec.text("server", what="the name of a server above")
    if server is not None and server not in names:
        sec.report("server", f"'{server}' is not defined (known: "
                             f"{', '.join(names) or 'none'}){suggest(server, names)}")
    profile = sec.choice("profile", {name: name for name in PROFILES})
    spec = servers.get(server or "")
    serial = spec is not None and spec.tcp_port is None
    unit_id = sec.integer("unit_id", lo=1 if serial else 0, hi=247 if serial else 255)
    offset = _utc_offset(sec)
    warmup_s = sec.number("warmup_s", 0.0, 0)
    if profile is None:
        return None
    values = _values(sec, PROFILES[profile][1])
    faults = _faults(sec, profile, PROFILES[profile][1])
    settings = _settings(sec, profile)
    if None in (device_id, unit_id, offset, warmup_s, values, faults, settings) or \
            spec is None:
        return None
    return DeviceSpec(device_id, spec.name, unit_id, profile, offset, warmup_s,  # type: ignore[arg-type]
                      sec.text("seed", device_id) or "", values, faults, settings)  # type: ignore[arg-type]


def _utc_offset(sec: Section) -> int | None:
    text = sec.text("utc_offset", "+00:00", what='an offset from UTC such as "+08:00"')
    match = _OFFSET.match((text or "").strip())
    if text is not None and match is None:
        sec.report("utc_offset", 'expected an offset from UTC such as "+08:00" or "-05:00" '
                                 f"(in quotes), found '{text}'")
        return None
    if match is None:
        return None
    sign = -1 if match.group(1) == "-" else 1
    return sign * (int(match.group(2)) * 60 + int(match.group(3)))


def _settings(sec: Section, profile: str) -> tuple[tuple[str, object], ...] | None:
    settings: dict[str, object] = {}
    before = len(sec.ck.issues)
    if "cycle_s" in PROFILE_KEYS[profile] and sec.has("cycle_s"):
        settings["cycle_s"] = sec.number("cycle_s", lo=0, above=True)
    if "streams" in PROFILE_KEYS[profile] and sec.has("streams"):
        settings["streams"] = _streams(sec)
    if "background_every" in PROFILE_KEYS[profile] and sec.has("background_every"):
        settings["background_every"] = sec.integer("background_every", lo=0, hi=100000)
    if "update_s" in PROFILE_KEYS[profile] and sec.has("update_s"):
        settings["update_s"] = sec.number("update_s", lo=0, above=True)
    if "model" in PROFILE_KEYS[profile] and sec.has("model"):
        settings["model"] = sec.text("model", what="up to 8 ASCII characters, e.g. MGD4")
        if isinstance(settings["model"], str) and not (
                settings["model"].isascii() and len(settings["model"]) <= 8):
            sec.report("model", f"expected up to 8 ASCII characters, found "
                                f"'{settings['model']}'")
    return tuple(settings.items()) if len(sec.ck.issues) == before else None


def _streams(sec: Section) -> tuple[int, ...] | None:
    entry = sec.node.get("streams")
    items = entry.value.items if entry is not None and isinstance(entry.value, SeqNode) \
        else ()
    if not items:
        sec.report("streams", "expected a list of stream numbers 1..65535, e.g. [1, 2], "
                              f"found {kind(entry.value) if entry else 'nothing'}")
        return None
    numbers = [item.value if isinstance(item, ScalarNode) else None for item in items]
    wrong = [item for item, n in zip(items, numbers, strict=True)
             if type(n) is not int or not 1 <= n <= 65535]
    if wrong:
        sec.report("streams", "expected stream numbers 1..65535, e.g. [1, 2], found "
                              f"{kind(wrong[0])}")
        return None
    return tuple(numbers)  # type: ignore[arg-type]


def _values(sec: Section, channels: tuple[str, ...]) -> tuple[tuple[str, Signal], ...] | None:
    values = sec.section("values", channels)
    if values is None:
        return ()
    before = len(sec.ck.issues)
    signals = []
    for entry in values.node.entries:
        if entry.key not in channels:
            continue  # reported as an unknown setting, with the known channels
        signal = as_section(sec.ck, entry.value, values.path_of(entry.key), entry.line,
                            SIGNAL_KEYS)
        if signal is None:
            continue
        low, high = signal.number("min", None), signal.number("max", None)
        if low is not None and high is not None and low > high:
            signal.report("max", f"must not be below min ({low:g})")
        signals.append((entry.key, Signal(signal.number("base", 0.0) or 0.0,
                                          signal.number("ramp_per_h", 0.0) or 0.0,
                                          signal.number("noise", 0.0, 0) or 0.0, low, high)))
    return tuple(signals) if len(sec.ck.issues) == before else None


def _faults(sec: Section, profile: str, channels: tuple[str, ...]
            ) -> tuple[Fault, ...] | None:
    entry = sec.node.get("faults")
    if entry is None:
        return ()
    if not isinstance(entry.value, SeqNode):
        sec.report("faults", "expected a list of faults ('- {kind: ..., from_s: ..., "
                             f"to_s: ...}}' items), found {kind(entry.value)}")
        return None
    kinds = PROFILES[profile][0].FAULT_KINDS
    before = len(sec.ck.issues)
    faults = []
    for index, node in enumerate(entry.value.items):
        fault = as_section(sec.ck, node, f"{sec.path_of('faults')}[{index}]", node.line,
                           FAULT_KEYS)
        if fault is None:
            continue
        what = fault.choice("kind", {name: name for name in kinds})
        from_s, to_s = fault.number("from_s", lo=0), fault.number("to_s", lo=0)
        if from_s is not None and to_s is not None and to_s <= from_s:
            fault.report("to_s", f"must be after from_s ({from_s:g})")
        channel = fault.choice("channel", {name: name for name in channels}, None)
        if what in PER_CHANNEL_FAULTS and channel is None and not fault.has("channel"):
            fault.missing("channel", f"the gas whose sensor fails: {one_of(channels)}")
        elif channel is not None and what not in PER_CHANNEL_FAULTS:
            fault.report("channel", f"a {what} fault is the whole instrument's; channel "
                                    f"is for {one_of(PER_CHANNEL_FAULTS)}")
        if what is not None and from_s is not None and to_s is not None:
            faults.append(Fault(what, from_s, to_s, channel))
    return tuple(faults) if len(sec.ck.issues) == before else None
