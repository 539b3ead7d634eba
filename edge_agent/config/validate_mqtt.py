"""The ``mqtt:`` section: broker, credentials, TLS, topic templates and forwarding limits.

Secrets never sit in the YAML file: the password comes from an environment variable
(``password_env``) or a file (``password_file``), and no message here ever repeats a
secret's value. TLS and password files are checked to exist and be readable now, so
the agent does not start and then fail at its first connection.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import MISSING
from pathlib import Path

from edge_agent.config.declare import (
    allowed_keys,
    declared,
    default_of,
    filled,
    read_declared,
)
from edge_agent.config.fields import Checker, Section, as_section, read_path
from edge_agent.config.names import (
    CONNECT_TEXT_MAX,
    TOPIC_TEMPLATE_MAX,
    label_problem,
    mqtt_topic_problem,
    template_text_problem,
)
from edge_agent.config.schema import MqttConfig, Secret, TlsConfig, Topics
from edge_agent.config.validate_brokers import TLS_PORT, read_brokers
from edge_agent.config.validate_links import check_host
from edge_agent.config.yamlsource import MapNode, ScalarNode

MQTT_KEYS = allowed_keys(MqttConfig)
_PLACEHOLDERS = {"data": ("station", "device"), "gap": ("station", "device"),
                 "status": ("station",)}
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
TLS_KEYS = allowed_keys(TlsConfig)
TOPIC_KEYS = allowed_keys(Topics)
PROTOCOLS = declared(MqttConfig)["protocol"].choices
# Read as declared on MqttConfig, with no rule tying them to another setting.
_PLAIN = ("keepalive_s", "max_inflight", "max_samples_per_message", "max_message_bytes",
          "live_window_s", "shutdown_grace_s")
PLAIN_PASSWORD = (
    "a plain 'password' is not allowed in the configuration file (files get copied into "
    "backups and tickets); put the password in an environment variable and name it with "
    "password_env, or in a file and name it with password_file"
)
QOS_WHY = (
    "a sample leaves the outbox only when the broker's PUBACK confirms it, which QoS 0 "
    "never sends; QoS 2 adds a round trip for nothing, since every message carries an id "
    "the platform de-duplicates by"
)
# Where scripts/install and the .deb put the service's secrets (EnvironmentFile= of
# systemd/edge-agent.service; docs/install.md).
SECRETS_FILE = "/etc/edge-agent/edge-agent.env"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_mqtt(
    ck: Checker, top: Section, station_id: str | None, env: Mapping[str, str], base: Path
) -> MqttConfig | None:
    """The broker settings; ``base`` is where relative TLS and password files are."""
    entry = top.node.get("mqtt")
    if entry is None:
        top.missing("mqtt", "the broker settings, at least 'host' (or 'brokers')")
        return None
    sec = as_section(ck, entry.value, "mqtt", entry.line, MQTT_KEYS, {"password": PLAIN_PASSWORD})
    if sec is None:
        return None
    tls = _read_tls(sec, base)
    brokers = read_brokers(sec, tls is not None)
    if sec.has("brokers"):  # brokers replaces host and port (read_brokers says so)
        first = brokers[0] if brokers else None
        host, port = (first.host, first.port) if first else ("", None)
    else:
        host = read_declared(sec, MqttConfig, "host")
        if host is not None:
            check_host(sec, host)
        port = read_declared(sec, MqttConfig, "port", TLS_PORT if tls else MISSING)
    username = _printable(sec, "username", "the username")
    reconnect_min_s, reconnect_max_s = _read_reconnect(sec)
    password = _read_password(sec, username, env, base)
    if password is not None and tls is None and host:
        _warn_plain_password(sec, [a.host for a in brokers] if brokers else [host])
    client_id = _printable(sec, "client_id", "the client id") or f"edge-agent-{station_id}"
    values = {name: read_declared(sec, MqttConfig, name) for name in _PLAIN}
    return MqttConfig(**filled(MqttConfig, {
        "host": host or "",
        "port": port,
        "brokers": brokers,
        "client_id": client_id,
        "protocol": read_declared(sec, MqttConfig, "protocol"),
        "username": username,
        "password": password,
        "tls": tls,
        "qos": _read_qos(sec),
        "topics": _read_topics(sec),
        "reconnect_min_s": reconnect_min_s,
        "reconnect_max_s": reconnect_max_s,
        **values,
    }))


def _printable(sec: Section, key: str, what: str) -> str | None:
    """Text the broker sees in CONNECT: printable, at most ``CONNECT_TEXT_MAX`` long."""
    text = sec.text(key, None)  # null as absent, so a template can leave it empty
    if text is not None and (problem := label_problem(text, what, CONNECT_TEXT_MAX)):
        sec.report(key, problem)
    return text


def _read_qos(sec: Section) -> int:
    qos = sec.integer("qos", default_of(MqttConfig, "qos"))  # any integer: 0 and 2 get why not
    if qos is not None and qos != 1:
        sec.report("qos", f"only QoS 1 is supported, found {qos}: {QOS_WHY}")
    return 1


def _read_reconnect(sec: Section) -> tuple[float | None, float | None]:
    low = read_declared(sec, MqttConfig, "reconnect_min_s")
    high = read_declared(sec, MqttConfig, "reconnect_max_s")
    if low is not None and high is not None and low > high:
        key = "reconnect_max_s" if sec.has("reconnect_max_s") else "reconnect_min_s"
        sec.report(
            key, f"reconnect_min_s ({low:g}) must not be greater than reconnect_max_s ({high:g})"
        )
    return low, high


def _read_password(
    sec: Section, username: str | None, env: Mapping[str, str], base: Path
) -> Secret | None:
    """The broker password from the environment or a file; None when none is configured.

    ``null`` counts as not given, so a template can list both keys.
    """
    env_name = sec.text("password_env", None)
    file_given = sec.text("password_file", None) is not None
    if env_name is not None and file_given:
        message = "give either password_env or password_file, not both"
        sec.report("password_file", message, at_key=True)
        return None
    if env_name is not None:
        key, value = "password_env", _password_from_env(sec, env_name, env)
    elif file_given:
        key, value = "password_file", _password_from_file(sec, base)
    else:
        return None
    if value is not None and username is None:
        sec.report(key, "a password needs a username: add mqtt.username", at_key=True)
    return None if value is None else Secret(value)


def _password_from_env(sec: Section, name: str, env: Mapping[str, str]) -> str | None:
    if not _ENV_NAME.fullmatch(name):
        sec.report(
            "password_env",
            "expected the NAME of an environment variable (letters, digits and _), "
            "not the password itself",
        )
        return None
    value = env.get(name)
    if value is None:
        sec.report(
            "password_env",
            f"environment variable '{name}' is not set; the service reads it from the "
            f"secrets file the installer creates, {SECRETS_FILE}: add the line "
            f"{name}=<password> there (sudoedit {SECRETS_FILE}); elsewhere, set it where "
            "the agent starts",
        )
    elif not value:
        sec.report("password_env", f"environment variable '{name}' is set but empty")
        return None
    return value


def _password_from_file(sec: Section, base: Path) -> str | None:
    """The file's text without one trailing newline (editors add one)."""
    found = _read_file(sec, "password_file", base)
    if found is None:
        return None
    _, data = found
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        sec.report("password_file", "the password file is not UTF-8 text; save it as UTF-8")
        return None
    text = text.removesuffix("\n").removesuffix("\r") if text.endswith("\n") else text
    if not text:
        sec.report("password_file", "the password file is empty")
        return None
    return text


def _read_file(sec: Section, key: str, base: Path) -> tuple[Path, bytes] | None:
    """Path and bytes of the file named by ``key``, or None with an issue saying why not."""
    path = read_path(sec, key, base)
    if path is None:
        return None
    try:
        return path, path.read_bytes()
    except FileNotFoundError:
        message = f"file not found: {path}"
    except IsADirectoryError:
        message = f"{path} is a directory, not a file"
    except PermissionError:
        message = f"cannot read {path}: permission denied for this user"
    except OSError as err:
        message = f"cannot read {path}: {err.strerror or err}"
    sec.report(key, message)
    return None


def _read_tls(sec: Section, base: Path) -> TlsConfig | None:
    """``tls: true`` (system trust store), ``false``/absent (no TLS), or a mapping."""
    entry = sec.node.get("tls")
    if entry is None:
        return None
    node = entry.value
    if isinstance(node, ScalarNode) and (node.value is None or isinstance(node.value, bool)):
        return TlsConfig() if node.value else None
    if isinstance(node, ScalarNode):
        sec.report("tls", f"expected true, false, or settings such as 'ca_file: ca.pem', "
                   f"found {node.value!r}")
        return None
    tls = as_section(sec.ck, node, "mqtt.tls", entry.line, TLS_KEYS)
    if tls is None:
        return TlsConfig()
    if tls.has("key_file") and not tls.has("cert_file"):
        message = "a key_file needs the cert_file (client certificate) it belongs to"
        tls.report("key_file", message, at_key=True)
    files = {name: _pem_file(tls, name, base) for name, meta in declared(TlsConfig).items()
             if meta.kind == "path"}
    return TlsConfig(**files, insecure_skip_verify=_read_insecure(tls))


def _read_insecure(tls: Section) -> bool:
    insecure = bool(read_declared(tls, TlsConfig, "insecure_skip_verify"))
    if insecure:
        tls.warn("insecure_skip_verify", "TLS certificate verification is off: anything on "
                 "the network path can pose as the broker and read the data and the "
                 "password; give the broker's CA in ca_file instead")
    return insecure


def _warn_plain_password(sec: Section, hosts: list[str]) -> None:
    """A password in clear text is only safe on this PC's own loopback."""
    remote = [host for host in hosts if host.lower() not in LOOPBACK_HOSTS]
    if not remote:
        return
    key = "password_env" if sec.has("password_env") else "password_file"
    sec.warn(key, f"the password is sent unencrypted to {', '.join(remote)} (plain MQTT, "
             "no tls): anyone on the network path can read it; turn on tls")


def _pem_file(sec: Section, key: str, base: Path) -> Path | None:
    """The path of a TLS file that exists, is readable and is PEM (what Python's ssl reads)."""
    if not sec.has(key):
        return None
    found = _read_file(sec, key, base)
    if found is None:
        return None
    path, data = found
    if b"-----BEGIN " not in data:
        sec.report(key, f"{path} is not a PEM file (it should contain a '-----BEGIN ...' line)")
    return path


def _read_topics(sec: Section) -> Topics:
    topics = sec.section("topics", TOPIC_KEYS)
    defaults = Topics()
    if topics is None:
        return defaults
    return Topics(**{key: _topic(topics, key, getattr(defaults, key), _PLACEHOLDERS[key])
                     for key in TOPIC_KEYS})


def _topic(sec: Section, key: str, default: str, allowed: tuple[str, ...]) -> str:
    template = sec.text(key, default)
    if template is None:
        return default
    problem = template_problem(template, allowed)
    if problem:
        sec.report(key, problem)
    return template


def template_problem(template: str, allowed: tuple[str, ...]) -> str | None:
    """Why ``template`` is not a usable topic template, or None.

    The last placeholder of ``allowed`` must appear: data and gap topics need
    ``{device}`` so each device has its own topic; the status topic is per station.
    """
    shown = " and ".join("{" + name + "}" for name in allowed)
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        return f"unmatched '{{' or '}}'; placeholders are written {shown}"
    for _, name, spec, conversion in parts:
        if name == "device" and name not in allowed:
            return "the status topic is one per station, so it cannot use {device}"
        if name is not None and (name not in allowed or spec or conversion):
            return f"unknown placeholder '{{{name}}}'; only {shown} can be used here"
    literal = "".join(text for text, *_ in parts)
    if "+" in literal or "#" in literal:
        return "'+' and '#' are MQTT wildcards and cannot be used in a topic"
    if template.startswith("$"):
        return "topics starting with '$' are reserved for the broker"
    if len(template) > TOPIC_TEMPLATE_MAX:
        return f"the template is {len(template)} characters long; at most " \
               f"{TOPIC_TEMPLATE_MAX} are allowed"
    if problem := template_text_problem(literal):
        return problem
    if allowed[-1] not in [name for _, name, *_ in parts]:
        return f"the topic must contain {{{allowed[-1]}}}"
    return None


def check_expanded_topics(ck: Checker, top: Section, mqtt: MqttConfig | None,
                          station_id: str | None, device_ids: list[str]) -> None:
    """Every topic the agent will publish to, checked against MQTT's own rules, so the
    broker never refuses (and drops the connection over) a topic ``check`` accepted."""
    if mqtt is None or station_id is None:
        return
    expanded = [("status", _expand(mqtt.topics.status, station_id, ""))]
    for device_id in device_ids:
        expanded += [(key, _expand(getattr(mqtt.topics, key), station_id, device_id))
                     for key in ("data", "gap")]
    reported = {key for key, allowed in _PLACEHOLDERS.items()
                if template_problem(getattr(mqtt.topics, key), allowed)}  # said already
    for key, topic in expanded:
        problem = None if topic is None else mqtt_topic_problem(topic)
        if problem and topic is not None and key not in reported:
            reported.add(key)
            ck.report(_topic_line(top, key), f"mqtt.topics.{key}",
                      f"{problem}: {topic[:80]!r}")


def _expand(template: str, station_id: str, device_id: str) -> str | None:
    """The topic, or None for a template whose own problem is already reported."""
    try:
        return template.format(station=station_id, device=device_id)
    except (KeyError, IndexError, ValueError):
        return None


def _topic_line(top: Section, key: str) -> int | None:
    """The line of ``mqtt.topics.KEY``, or of ``mqtt:`` when the default is used."""
    node = top.node
    line = top.line_of("mqtt")
    for name in ("mqtt", "topics", key):
        entry = node.get(name) if isinstance(node, MapNode) else None
        if entry is None:
            return line
        line, node = entry.value.line, entry.value
    return line
