"""The ``health:`` section: where the agent's local HTTP endpoint listens, if at all.

The endpoint serves ``/healthz``, ``/metrics``, ``/status`` (docs/metrics.md) and the
technician's page (docs/web-page.md). It binds to this PC only (127.0.0.1) unless told
otherwise. Bound to any other address, everything but ``/healthz`` needs the token named
by ``token_env`` (an environment variable, e.g. from the service's secrets file) or
``token_file``; the token never appears in the station file. Without one the endpoint
answers 403 there (and ``check`` warns), rather than refusing to start: a station must
never stop acquiring over a status page's setting.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from edge_agent.config.declare import allowed_keys, declared, filled, read_declared
from edge_agent.config.fields import Section, read_path
from edge_agent.config.schema import HealthConfig, Secret
from edge_agent.config.yamlsource import ScalarNode

HEALTH_KEYS = allowed_keys(HealthConfig)
_LISTEN_HINT = ("write the address and the port as two settings, as for the broker: "
                "host: 127.0.0.1 and port: 9108")
_HOST_EXPECTED = declared(HealthConfig)["host"].hint
_TOKEN_HINT = ("never write the token in the station file: name an environment variable "
               "with token_env, or a file with token_file")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SECRETS_FILE = "/etc/edge-agent/edge-agent.env"  # what the installer creates (docs/install.md)
LOOPBACK_NAMES = ("localhost",)


def read_health(top: Section, env: Mapping[str, str] | None = None,
                base: Path | None = None) -> HealthConfig:
    """The endpoint's settings; the defaults when the section is absent. ``env`` and
    ``base`` (where a relative ``token_file`` is) are the loader's, as for the broker
    password."""
    default = HealthConfig()
    entry = top.node.get("health")
    if entry is not None and isinstance(entry.value, ScalarNode) \
            and isinstance(entry.value.value, bool):
        return replace(default, enabled=entry.value.value)  # health: false, like tls: false
    sec = top.section("health", HEALTH_KEYS, {"listen": _LISTEN_HINT, "token": _TOKEN_HINT,
                                              "password": _TOKEN_HINT})
    if sec is None:
        return default
    enabled = read_declared(sec, HealthConfig, "enabled")
    host = read_declared(sec, HealthConfig, "host")
    token = _read_token(sec, env or {}, base or Path("."))
    if host is not None and not _bindable(host):
        sec.report("host", f"expected {_HOST_EXPECTED}, found '{host}'")
    elif host is not None and enabled is not False and not is_loopback(host) \
            and token is None and not sec.has("token_env") and not sec.has("token_file"):
        where = "every network interface" if _every_interface(host) else "the network"
        sec.warn("host", f"the endpoint listens on {where} ({host}) and no token is set: "
                 "/status, /metrics and the page answer 403 until you set "
                 f"health.token_env (the variable in {SECRETS_FILE}) or health.token_file; "
                 "use 127.0.0.1 unless a monitoring server must reach it")
    port = read_declared(sec, HealthConfig, "port")
    return HealthConfig(**filled(HealthConfig, {"enabled": enabled, "host": host,
                                                "port": port}), token=token)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: only this PC can connect."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_token(sec: Section, env: Mapping[str, str], base: Path) -> Secret | None:
    """The endpoint's token from an environment variable or a file (never the file's
    own text); None when neither is given or after a reported problem."""
    name = sec.text("token_env", None)
    if name is not None and sec.text("token_file", None) is not None:
        sec.report("token_file", "give either token_env or token_file, not both", at_key=True)
        return None
    if name is not None:
        return _token_from_env(sec, name, env)
    if sec.text("token_file", None) is None:
        return None
    path = read_path(sec, "token_file", base)
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        sec.report("token_file", f"cannot read {path}: {getattr(err, 'strerror', None) or err}")
        return None
    if not text:
        sec.report("token_file", f"{path} is empty; write the token in it")
        return None
    return Secret(text)


def _token_from_env(sec: Section, name: str, env: Mapping[str, str]) -> Secret | None:
    if not _ENV_NAME.fullmatch(name):
        sec.report("token_env", "expected the NAME of an environment variable (letters, "
                   "digits and _), not the token itself")
        return None
    value = env.get(name)
    if not value:
        state = "is not set" if value is None else "is set but empty"
        sec.report("token_env", f"environment variable '{name}' {state}; put "
                   f"{name}=... in {SECRETS_FILE} (the service reads it) or set it where "
                   "the agent starts")
        return None
    return Secret(value)


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
