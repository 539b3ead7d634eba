"""Load a station YAML file into a validated ``StationConfig``, or list everything wrong.

The file layout (the public format; every field is described in docs/configuration.md)::

    station:  {id}                                    required
    links:    {NAME: {type: tcp | serial, ...}}       required, at least one
    devices:  [{id, link, unit_id, interval_s, driver, profile, ...}]   required
    polling:  {...}
    store:    {...}
    mqtt:     {host, ...}                             the default uplink; required
                                                      unless uplinks: names one
    uplinks:  {NAME: {kind, devices, host, ...}}      named uplinks (validate_uplinks.py)
    health:   {...}                                   local /healthz, /metrics, /status
    alarms:   {communication, actions}                alarms decided here (docs/alarms.md)

The keys of each section are not listed here, where they drifted: they are declared on
the fields of config/schema.py (config/declare.py) or, for what is still read by hand,
in the key tuples of the readers; edge_agent/schema/station-v1.schema.json shows them all.

Everything is checked before anything is returned, and every problem is collected: the
caller gets either a complete config or one ``ConfigError`` listing all issues by line.
Relative paths are resolved here, against systemd's directories when the service runs
under systemd (``$STATE_DIRECTORY`` for the outbox, ``$CONFIGURATION_DIRECTORY`` for TLS
and password files) and against the config file's own directory otherwise.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from edge_agent.config.alarm_settings import AlarmSettings
from edge_agent.config.declare import allowed_keys, declared, default_of, filled, read_declared
from edge_agent.config.errors import ConfigError, ConfigIssue
from edge_agent.config.fields import Checker, Mismatch, Section, as_section, read_path
from edge_agent.config.limits import MAX_AGE_S
from edge_agent.config.names import id_problem
from edge_agent.config.profiles import ProfileLibrary, shipped_profile_dirs
from edge_agent.config.schema import (
    Link,
    PollingPolicy,
    Retention,
    StationConfig,
    StoreConfig,
)
from edge_agent.config.validate_devices import read_devices
from edge_agent.config.validate_health import read_health
from edge_agent.config.validate_links import read_links
from edge_agent.config.validate_mqtt import check_expanded_topics, read_mqtt
from edge_agent.config.validate_store import check_store_place
from edge_agent.config.validate_uplinks import check_uplinks, names_an_uplink, read_uplinks
from edge_agent.config.yamlsource import ScalarNode, read_yaml_file
from edge_agent.i18n import _

TOP_KEYS = ("station", "links", "devices", "polling", "store", "mqtt", "uplinks", "health",
            "alarms")
POLLING_KEYS = allowed_keys(PollingPolicy)
STORE_KEYS = allowed_keys(StoreConfig)
RETENTION_KEYS = allowed_keys(Retention)
DEFAULT_STORE_PATH = "outbox.sqlite3"
MIN_STORE_BYTES = int(declared(Retention)["max_bytes"].lo or 1)  # as declared there
SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
SIZE_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class _Places:
    """Where relative paths point: the outbox under ``state_dir``, secrets under ``secrets_dir``."""

    state_dir: Path
    secrets_dir: Path


@dataclass(frozen=True)
class LoadedConfig:
    """A valid configuration and the warnings about it.

    A warning names a setting that works but weakens the station (TLS verification off,
    a password sent in clear, the health endpoint on every interface): ``check`` prints
    it, ``run`` logs it at WARNING, and neither refuses the file.
    """

    config: StationConfig
    warnings: tuple[ConfigIssue, ...] = ()


def load_config(path: str | Path, env: Mapping[str, str] | None = None, *,
                for_agent: bool = True) -> StationConfig:
    """The validated configuration in ``path`` (its warnings: ``load_station``).

    ``env`` (default ``os.environ``) supplies the MQTT password variable and systemd's
    ``STATE_DIRECTORY``/``CONFIGURATION_DIRECTORY``. Raises ``ConfigError`` (and nothing
    else) when the file cannot be read or anything in it is wrong, listing every issue.
    ``for_agent=False`` (``status``, ``export``: they only read the outbox, often as
    another user) leaves out the check that the agent can keep its outbox at
    ``store.path`` (validate_store.py).
    """
    return load_station(path, env, for_agent=for_agent).config


def load_station(path: str | Path, env: Mapping[str, str] | None = None, *,
                 for_agent: bool = True) -> LoadedConfig:
    """As ``load_config``, with the warnings about the valid configuration."""
    env = os.environ if env is None else env
    file = str(path)
    document = read_yaml_file(Path(path), file)
    ck = Checker(file, document.issues)
    if document.root is None:
        raise ConfigError(ck.issues)
    top = Section(ck, document.root, "", None, TOP_KEYS)
    places = _places(Path(path), env)
    profiles = ProfileLibrary(Path(path).absolute().parent, shipped_profile_dirs())
    station_id = _read_station(ck, top)
    links = read_links(ck, top, places.state_dir)
    devices = read_devices(ck, top, links, profiles)
    mqtt = read_mqtt(ck, top, station_id, env, places.secrets_dir,
                     required=not names_an_uplink(top))
    device_ids = [device.id for device in devices]
    check_expanded_topics(ck, top, mqtt, station_id, device_ids)
    uplinks = read_uplinks(ck, top, station_id, env, places.secrets_dir)
    config = StationConfig(
        station_id=station_id or "",
        links=links.links,
        devices=devices,
        store=_read_store(top, places.state_dir),
        mqtt=mqtt,
        polling=_read_polling(top),
        source=Path(path),
        health=read_health(top, env, places.secrets_dir),
        uplinks=tuple(uplinks.uplinks),
        alarms=_read_alarms(top, links.links, device_ids),
    )
    check_uplinks(ck, top, uplinks, config.every_uplink(), station_id, device_ids)
    if any(uplink.kind == "hj212" for uplink in config.uplinks):
        from edge_agent.config.validate_hj212 import check_hj212_channels

        check_hj212_channels(ck, uplinks.sections, config.uplinks, devices)
    if any(uplink.kind == "sparkplug" for uplink in config.uplinks):
        from edge_agent.config.validate_sparkplug import attach_sparkplug_devices

        config = attach_sparkplug_devices(config)
    if for_agent:
        check_store_place(ck, top, config.store.path, _systemd_dir(env, "STATE_DIRECTORY"))
    issues = ck.issues + profiles.issues()
    if issues:
        raise ConfigError(issues)
    return LoadedConfig(config, tuple(sorted(ck.warnings, key=lambda w: w.line or 0)))


def _places(path: Path, env: Mapping[str, str]) -> _Places:
    config_dir = path.absolute().parent
    return _Places(
        state_dir=_systemd_dir(env, "STATE_DIRECTORY") or config_dir,
        secrets_dir=_systemd_dir(env, "CONFIGURATION_DIRECTORY") or config_dir,
    )


def _systemd_dir(env: Mapping[str, str], name: str) -> Path | None:
    """The first directory systemd passed in ``name`` (it joins several with ':')."""
    first = env.get(name, "").split(":")[0]
    return Path(first) if first else None


def _read_station(ck: Checker, top: Section) -> str | None:
    entry = top.node.get("station")
    if entry is None:
        top.missing("station", _("station: with the station's id"))
        return None
    sec = as_section(ck, entry.value, "station", entry.line, allowed_keys(StationConfig))
    if sec is None:
        return None
    station_id = read_declared(sec, StationConfig, "station_id")
    if station_id is not None and (problem := id_problem(station_id, _("station id"))):
        sec.report("id", problem)
        return None
    return station_id


def _read_polling(top: Section) -> PollingPolicy:
    """Retries and back-off: keys, defaults and ranges as declared on ``PollingPolicy``;
    only the order of the two back-off bounds is checked here."""
    sec = top.section("polling", POLLING_KEYS)
    if sec is None:
        return PollingPolicy()
    values = {name: read_declared(sec, PollingPolicy, name) for name in declared(PollingPolicy)}
    initial, maximum = values["backoff_initial_s"], values["backoff_max_s"]
    if initial is not None and maximum is not None and initial > maximum:
        key = "backoff_max_s" if sec.has("backoff_max_s") else "backoff_initial_s"
        sec.report(key, _("backoff_initial_s ({initial:g}) must not be greater than "
                          "backoff_max_s ({maximum:g})").format(initial=initial, maximum=maximum))
    return PollingPolicy(**filled(PollingPolicy, values))


def _read_alarms(top: Section, links: Mapping[str, Link],
                 device_ids: list[str]) -> AlarmSettings | None:
    """The ``alarms:`` section (validate_alarms.read_alarm_settings); None when the file
    has none. The alarm reader is imported only then, or by a device's rules
    (validate_devices.py): a station without alarms keeps it out of memory (issue 11)."""
    if not top.has("alarms"):
        return None
    from edge_agent.config.validate_alarms import read_alarm_settings

    return read_alarm_settings(top, links, device_ids)


def _read_store(top: Section, state_dir: Path) -> StoreConfig:
    sec = top.section("store", STORE_KEYS)
    if sec is None:
        return StoreConfig(path=state_dir / DEFAULT_STORE_PATH)
    return StoreConfig(
        path=read_path(sec, "path", state_dir, DEFAULT_STORE_PATH) or state_dir,
        synchronous=read_declared(sec, StoreConfig, "synchronous")
        or default_of(StoreConfig, "synchronous"),
        retention=_read_retention(sec),
    )


def _read_retention(store: Section) -> Retention:
    """Limits on undelivered data; an explicit ``null`` means no limit of that kind."""
    sec = store.section("retention", RETENTION_KEYS)
    if sec is None:
        return Retention()
    converters = {"max_rows": _rows, "max_bytes": _size, "max_age_s": _age}
    return Retention(**{name: _limit(sec, name, converters[name]) for name in converters})


def _limit(sec: Section, name: str, convert: Callable) -> object:
    """One limit of ``Retention``, as declared there; written null or ~ means none."""
    meta = declared(Retention)[name]
    entry = sec.node.get(meta.key)
    value = entry.value if entry else None
    if isinstance(value, ScalarNode) and value.value is None and value.text:
        return None  # written null or ~: no limit
    return sec.get(meta.key, default_of(Retention, name),
                   _("{expected} (or null for no limit)").format(expected=meta.expected()),
                   convert)


def _rows(node: ScalarNode) -> int:
    if isinstance(node.value, bool) or not isinstance(node.value, int) or node.value < 1:
        raise Mismatch()
    return node.value


def _size(node: ScalarNode) -> int:
    """Bytes from ``1000000``, ``500MB`` (10^6) or ``2GiB`` (2^30)."""
    value = _with_unit(node, SIZE_UNITS)
    if value < MIN_STORE_BYTES:
        raise Mismatch()
    return int(value)


def _age(node: ScalarNode) -> float:
    """Seconds from ``86400``, ``90m``, ``12h`` or ``30d`` (m is minutes)."""
    value = _with_unit(node, DURATION_UNITS)
    if not MAX_AGE_S[0] <= value <= MAX_AGE_S[1]:  # Retention.max_age_s's range
        raise Mismatch()
    return float(value)


def _with_unit(node: ScalarNode, units: Mapping[str, int]) -> float:
    if isinstance(node.value, bool):
        raise Mismatch()
    if isinstance(node.value, int | float):
        if not math.isfinite(node.value):
            raise Mismatch()
        return node.value
    match = _SIZE.fullmatch(str(node.value))
    if match is None or match.group(2).lower() not in units:
        raise Mismatch()
    return float(match.group(1)) * units[match.group(2).lower()]
