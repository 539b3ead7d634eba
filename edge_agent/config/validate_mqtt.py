"""The ``mqtt:`` section: broker, credentials, TLS, topic templates and forwarding limits.

The same settings describe each named MQTT uplink (``uplinks.NAME``, validate_uplinks.py):
``read_mqtt_settings`` reads them from either place, so defaults, ranges and messages are
the same, and every message names the setting where it was written.

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
from edge_agent.i18n import N_, _

MQTT_KEYS = allowed_keys(MqttConfig)
_PLACEHOLDERS = {"data": ("station", "device"), "gap": ("station", "device"),
                 "alarm": ("station", "device"),
                 "status": ("station",)}
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
TLS_KEYS = allowed_keys(TlsConfig)
TOPIC_KEYS = allowed_keys(Topics)
PROTOCOLS = declared(MqttConfig)["protocol"].choices
# Read as declared on MqttConfig, with no rule tying them to another setting.
_PLAIN = ("keepalive_s", "max_inflight", "max_samples_per_message", "max_message_bytes",
          "live_window_s", "shutdown_grace_s")
PLAIN_PASSWORD = N_(
    "a plain 'password' is not allowed in the configuration file (files get copied into "
    "backups and tickets); put the password in an environment variable and name it with "
    "password_env, or in a file and name it with password_file"
)
QOS_WHY = N_(
    "a sample leaves the outbox only when the broker's PUBACK confirms it, which QoS 0 "
    "never sends; QoS 2 adds a round trip for nothing, since every message carries an id "
    "the platform de-duplicates by"
)
# Where scripts/install and the .deb put the service's secrets (EnvironmentFile= of
# systemd/edge-agent.service; docs/install.md).
SECRETS_FILE = "/etc/edge-agent/edge-agent.env"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_mqtt(
    ck: Checker, top: Section, station_id: str | None, env: Mapping[str, str], base: Path,
    *, required: bool = True,
) -> MqttConfig | None:
    """The default uplink's broker settings; ``base`` is where relative TLS and password
    files are. ``required=False``: the ``uplinks:`` section names at least one uplink, so
    the file may leave ``mqtt:`` out (None)."""
    entry = top.node.get("mqtt")
    if entry is None:
        if required:
            top.missing("mqtt", _("the broker settings, at least 'host' (or 'brokers'); or "
                                  "an uplinks: section naming at least one uplink"))
        return None
    sec = as_section(ck, entry.value, "mqtt", entry.line, MQTT_KEYS,
                     {"password": _(PLAIN_PASSWORD)})
    if sec is None:
        return None
    return read_mqtt_settings(sec, f"edge-agent-{station_id}", env, base)


def read_mqtt_settings(sec: Section, default_client_id: str, env: Mapping[str, str],
                       base: Path) -> MqttConfig:
    """The MQTT settings written in ``sec`` (``mqtt:`` or ``uplinks.NAME``); the keys
    are already checked by ``sec``. Values already reported as wrong are replaced by
    their defaults (declare.filled): the loader raises before such a config is used."""
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
    username = _printable(sec, "username", _("the username"))
    reconnect_min_s, reconnect_max_s = _read_reconnect(sec)
    password = _read_password(sec, username, env, base)
    if password is not None and tls is None and host:
        _warn_plain_password(sec, [a.host for a in brokers] if brokers else [host])
    client_id = _printable(sec, "client_id", _("the client id")) or default_client_id
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
        sec.report("qos", _("only QoS 1 is supported, found {qos}: {why}").format(
            qos=qos, why=_(QOS_WHY)))
    return 1


def _read_reconnect(sec: Section) -> tuple[float | None, float | None]:
    low = read_declared(sec, MqttConfig, "reconnect_min_s")
    high = read_declared(sec, MqttConfig, "reconnect_max_s")
    if low is not None and high is not None and low > high:
        key = "reconnect_max_s" if sec.has("reconnect_max_s") else "reconnect_min_s"
        sec.report(
            key, _("reconnect_min_s ({low:g}) must not be greater than reconnect_max_s "
                   "({high:g})").format(low=low, high=high)
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
        message = _("give either password_env or password_file, not both")
        sec.report("password_file", message, at_key=True)
        return None
    if env_name is not None:
        key, value = "password_env", _password_from_env(sec, env_name, env)
    elif file_given:
        key, value = "password_file", _password_from_file(sec, base)
    else:
        return None
    if value is not None and username is None:
        sec.report(key, _("a password needs a username: add {setting}").format(
            setting=sec.path_of("username")), at_key=True)
    return None if value is None else Secret(value)


def _password_from_env(sec: Section, name: str, env: Mapping[str, str]) -> str | None:
    if not _ENV_NAME.fullmatch(name):
        sec.report(
            "password_env",
            _("expected the NAME of an environment variable (letters, digits and _), "
              "not the password itself"),
        )
        return None
    value = env.get(name)
    if value is None:
        sec.report(
            "password_env",
            _("environment variable '{name}' is not set; the service reads it from the "
              "secrets file the installer creates, {secrets}: add the line "
              "{name}=<password> there (sudoedit {secrets}); elsewhere, set it where "
              "the agent starts").format(name=name, secrets=SECRETS_FILE),
        )
    elif not value:
        sec.report("password_env", _("environment variable '{name}' is set but empty").format(
            name=name))
        return None
    return value


def _password_from_file(sec: Section, base: Path) -> str | None:
    """The file's text without one trailing newline (editors add one)."""
    found = _read_file(sec, "password_file", base)
    if found is None:
        return None
    _path, data = found
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        sec.report("password_file", _("the password file is not UTF-8 text; save it as UTF-8"))
        return None
    text = text.removesuffix("\n").removesuffix("\r") if text.endswith("\n") else text
    if not text:
        sec.report("password_file", _("the password file is empty"))
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
        message = _("file not found: {path}").format(path=path)
    except IsADirectoryError:
        message = _("{path} is a directory, not a file").format(path=path)
    except PermissionError:
        message = _("cannot read {path}: permission denied for this user").format(path=path)
    except OSError as err:
        message = _("cannot read {path}: {error}").format(path=path, error=err.strerror or err)
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
        sec.report("tls", _("expected true, false, or settings such as 'ca_file: ca.pem', "
                            "found {found}").format(found=repr(node.value)))
        return None
    tls = as_section(sec.ck, node, sec.path_of("tls"), entry.line, TLS_KEYS)
    if tls is None:
        return TlsConfig()
    if tls.has("key_file") and not tls.has("cert_file"):
        message = _("a key_file needs the cert_file (client certificate) it belongs to")
        tls.report("key_file", message, at_key=True)
    files = {name: _pem_file(tls, name, base) for name, meta in declared(TlsConfig).items()
             if meta.kind == "path"}
    return TlsConfig(**files, insecure_skip_verify=_read_insecure(tls))


def _read_insecure(tls: Section) -> bool:
    insecure = bool(read_declared(tls, TlsConfig, "insecure_skip_verify"))
    if insecure:
        tls.warn("insecure_skip_verify", _("TLS certificate verification is off: anything on "
                                           "the network path can pose as the broker and read "
                                           "the data and the password; give the broker's CA "
                                           "in ca_file instead"))
    return insecure


def _warn_plain_password(sec: Section, hosts: list[str]) -> None:
    """A password in clear text is only safe on this PC's own loopback."""
    remote = [host for host in hosts if host.lower() not in LOOPBACK_HOSTS]
    if not remote:
        return
    key = "password_env" if sec.has("password_env") else "password_file"
    sec.warn(key, _("the password is sent unencrypted to {host} (plain MQTT, no tls): anyone "
                    "on the network path can read it; turn on tls").format(
                        host=", ".join(remote)))


def _pem_file(sec: Section, key: str, base: Path) -> Path | None:
    """The path of a TLS file that exists, is readable and is PEM (what Python's ssl reads)."""
    if not sec.has(key):
        return None
    found = _read_file(sec, key, base)
    if found is None:
        return None
    path, data = found
    if b"-----BEGIN " not in data:
        sec.report(key, _("{path} is not a PEM file (it should contain a '-----BEGIN ...' line)")
                   .format(path=path))
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
    shown = _(" and ").join("{" + name + "}" for name in allowed)
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        return _("unmatched '{{' or '}}'; placeholders are written {shown}").format(shown=shown)
    for _text, name, spec, conversion in parts:
        if name == "device" and name not in allowed:
            return _("the status topic is one per station, so it cannot use {device}")
        if name is not None and (name not in allowed or spec or conversion):
            return _("unknown placeholder '{{{name}}}'; only {shown} can be used here").format(
                name=name, shown=shown)
    literal = "".join(text for text, *_ in parts)
    if "+" in literal or "#" in literal:
        return _("'+' and '#' are MQTT wildcards and cannot be used in a topic")
    if template.startswith("$"):
        return _("topics starting with '$' are reserved for the broker")
    if len(template) > TOPIC_TEMPLATE_MAX:
        return _("{what} is {length} characters long; at most {limit} are allowed").format(
            what=_("the template"), length=len(template), limit=TOPIC_TEMPLATE_MAX)
    if problem := template_text_problem(literal):
        return problem
    if allowed[-1] not in [name for _, name, *_ in parts]:
        return _("the topic must contain {{{name}}}").format(name=allowed[-1])
    return None


def check_expanded_topics(ck: Checker, top: Section, mqtt: MqttConfig | None,
                          station_id: str | None, device_ids: list[str],
                          where: tuple[str, ...] = ("mqtt",)) -> None:
    """Every topic the agent will publish to, checked against MQTT's own rules, so the
    broker never refuses (and drops the connection over) a topic ``check`` accepted.
    ``where``: the keys leading to the settings (``("uplinks", "provincial")`` for a
    named uplink), whose ``device_ids`` are the devices it carries."""
    if mqtt is None or station_id is None:
        return
    expanded = [("status", _expand(mqtt.topics.status, station_id, ""))]
    for device_id in device_ids:
        expanded += [(key, _expand(getattr(mqtt.topics, key), station_id, device_id))
                     for key in ("data", "gap", "alarm")]
    reported = {key for key, allowed in _PLACEHOLDERS.items()
                if template_problem(getattr(mqtt.topics, key), allowed)}  # said already
    for key, topic in expanded:
        problem = None if topic is None else mqtt_topic_problem(topic)
        if problem and topic is not None and key not in reported:
            reported.add(key)
            ck.report(_topic_line(top, where, key), ".".join((*where, "topics", key)),
                      f"{problem}: {topic[:80]!r}")


def _expand(template: str, station_id: str, device_id: str) -> str | None:
    """The topic, or None for a template whose own problem is already reported."""
    try:
        return template.format(station=station_id, device=device_id)
    except (KeyError, IndexError, ValueError):
        return None


def _topic_line(top: Section, where: tuple[str, ...], key: str) -> int | None:
    """The line of ``mqtt.topics.KEY`` (``where`` + topics + KEY), or of the deepest key
    written on the way (``mqtt:`` when the default template is used)."""
    node = top.node
    line = top.line_of(where[0])
    for name in (*where, "topics", key):
        entry = node.get(name) if isinstance(node, MapNode) else None
        if entry is None:
            return line
        line, node = entry.value.line, entry.value
    return line
