"""The ``health:`` section: where the agent's local HTTP endpoint listens, if at all.

The endpoint serves ``/healthz``, ``/metrics`` and ``/status`` (docs/metrics.md). It binds
to this PC only (127.0.0.1) unless told otherwise: it needs no password, so exposing it
on a station network is the technician's explicit choice (``host: 0.0.0.0``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from edge_agent.config.declare import allowed_keys, declared, filled, read_declared
from edge_agent.config.fields import Section
from edge_agent.config.schema import HealthConfig
from edge_agent.config.yamlsource import ScalarNode

HEALTH_KEYS = allowed_keys(HealthConfig)
_LISTEN_HINT = ("write the address and the port as two settings, as for the broker: "
                "host: 127.0.0.1 and port: 9108")
_HOST_EXPECTED = declared(HealthConfig)["host"].hint


def read_health(top: Section) -> HealthConfig:
    """The endpoint's settings; the defaults when the section is absent."""
    default = HealthConfig()
    entry = top.node.get("health")
    if entry is not None and isinstance(entry.value, ScalarNode) \
            and isinstance(entry.value.value, bool):
        return replace(default, enabled=entry.value.value)  # health: false, like tls: false
    sec = top.section("health", HEALTH_KEYS, {"listen": _LISTEN_HINT})
    if sec is None:
        return default
    enabled = read_declared(sec, HealthConfig, "enabled")
    host = read_declared(sec, HealthConfig, "host")
    if host is not None and not _bindable(host):
        sec.report("host", f"expected {_HOST_EXPECTED}, found '{host}'")
    elif host is not None and enabled is not False and _every_interface(host):
        sec.warn("host", f"the endpoint listens on every network interface ({host}) and "
                 "needs no password: anyone who can reach this PC can read /status; use "
                 "127.0.0.1 unless a monitoring server must reach it")
    port = read_declared(sec, HealthConfig, "port")
    return HealthConfig(**filled(HealthConfig, {"enabled": enabled, "host": host,
                                                "port": port}))


def _bindable(host: str) -> bool:
    """An address of this PC's interfaces is an IP literal; names other than localhost
    would depend on name resolution at start-up, and a typo would look like one."""
    if host.lower() == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _every_interface(host: str) -> bool:
    """0.0.0.0 or :: (the unspecified address: bind to every interface)."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False
