"""The ``links:`` section: Modbus TCP endpoints and serial (RS-485/RS-232) ports.

A link is one wire with one owner (a poller thread), so two links must never name the
same serial port. Nothing here opens a port: ``edge-agent check`` must work on a laptop
without the hardware.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from edge_agent.config.declare import allowed_keys, declared, default_of, filled, read_declared
from edge_agent.config.fields import Checker, Section, as_section, join, one_of, read_path
from edge_agent.config.limits import MAX_LINKS, count_problem
from edge_agent.config.names import id_problem
from edge_agent.config.schema import (
    Link,
    LinkProtocol,
    SerialLink,
    TcpLink,
)
from edge_agent.config.yamlsource import MapNode, Node, ScalarNode
from edge_agent.i18n import _

TCP_KEYS = ("type", *allowed_keys(TcpLink))
SERIAL_KEYS = ("type", *allowed_keys(SerialLink))
TCP_PROTOCOLS = declared(TcpLink)["protocol"].choices or {}
SERIAL_PROTOCOLS = declared(SerialLink)["protocol"].choices or {}
# Read as declared on the dataclass, with no rule tying them to another setting.
_TCP_PLAIN = ("port", "timeout_ms", "connect_pause_ms", "request_gap_ms")
_SERIAL_PLAIN = ("baudrate", "parity", "stopbits", "timeout_ms", "request_gap_ms",
                 "connect_pause_ms")
_SERIAL_PATH = re.compile(r"^(/\S+|COM[0-9]+|\\\\\.\\COM[0-9]+|[a-z0-9]+://\S+)$", re.IGNORECASE)
_NETWORK_ADDRESS = re.compile(r"^[\w.-]+:[0-9]+$|^[0-9]+(\.[0-9]+){3}$")


@dataclass
class LinkTable:
    """Links as the device checks need them.

    ``kinds`` holds every link name the file defines, with ``"tcp"``, ``"serial"`` or None
    when the type itself is wrong, so a device naming a broken link is not also told the
    link "is not defined". ``links`` holds only the links that are fully valid.
    """

    links: dict[str, Link] = field(default_factory=dict)
    kinds: dict[str, str | None] = field(default_factory=dict)


def read_links(ck: Checker, top: Section, state_dir: Path = Path(".")) -> LinkTable:
    """Every link under ``links:`` (required, at least one). A relative ``record`` path
    is taken relative to ``state_dir``, where the outbox is."""
    table = LinkTable()
    entry = top.node.get("links")
    if entry is None:
        top.missing("links", _("at least one tcp or serial link"))
        return table
    names = [item.key for item in entry.value.entries] if isinstance(entry.value, MapNode) else []
    section = as_section(ck, entry.value, "links", entry.line, names)
    if section is None:
        return table
    if not section.node.entries:
        top.report("links", _("expected at least one link (a name with type: tcp or serial)"))
    if problem := count_problem(len(section.node.entries), MAX_LINKS, _("links")):
        top.report("links", problem, at_key=True)
        return table
    ports: dict[str, str] = {}
    recorded: dict[Path, str] = {}
    for link_entry in section.node.entries:
        name = link_entry.key
        kind = table.kinds[name] = _kind(link_entry.value)
        path = join("links", name)
        if problem := id_problem(name, _("link id")):
            ck.report(link_entry.line, path, problem)
        sec = as_section(ck, link_entry.value, path, link_entry.line, _allowed(kind), _hints(kind))
        if sec is None:
            continue
        before = len(ck.issues)
        link = _read_link(sec, name, kind)
        if link is not None:
            link = _with_record(sec, link, state_dir, recorded)
        if isinstance(link, SerialLink) and link.port:
            _check_shared_port(sec, link, ports)
        if link is not None and len(ck.issues) == before:
            table.links[name] = link
    return table


def _with_record(sec: Section, link: Link, state_dir: Path, recorded: dict[Path, str]) -> Link:
    """``record:``, the capture file of every frame sent and received on the link
    (docs/capture-replay.md); one file per link."""
    path = read_path(sec, "record", state_dir)
    if path is None:
        return link
    if path in recorded:
        shown = path.relative_to(state_dir) if path.is_relative_to(state_dir) else path
        sec.report("record", _("'{path}' is already recorded by link '{link}'; give each link "
                               "a file of its own").format(path=shown, link=recorded[path]))
        return link
    recorded[path] = link.name
    return replace(link, record=path)


def _kind(node: Node) -> str | None:
    """The link's type as written (tcp/serial, any case), or None if missing or wrong."""
    entry = node.get("type") if isinstance(node, MapNode) else None
    if entry is None or not isinstance(entry.value, ScalarNode):
        return None
    text = str(entry.value.value).lower()
    return text if text in ("tcp", "serial") else None


def _allowed(kind: str | None) -> tuple[str, ...]:
    if kind == "tcp":
        return TCP_KEYS
    if kind == "serial":
        return SERIAL_KEYS
    return tuple(dict.fromkeys(TCP_KEYS + SERIAL_KEYS))


def _hints(kind: str | None) -> dict[str, str]:
    """Messages for settings of the other link type, clearer than 'unknown setting'."""
    if kind is None:
        return {}
    other, keys = ("serial", SERIAL_KEYS) if kind == "tcp" else ("tcp", TCP_KEYS)
    return {
        key: _("'{key}' is a {other}-link setting; this link is type {kind}").format(
            key=key, other=other, kind=kind)
        for key in keys
        if key not in _allowed(kind)
    }


def _read_link(sec: Section, name: str, kind: str | None) -> Link | None:
    """Reads the link of the given kind; with no valid kind, only reports the type."""
    if kind is None:
        sec.choice("type", {"tcp": "tcp", "serial": "serial"})
        return None
    return _read_tcp(sec, name) if kind == "tcp" else _read_serial(sec, name)


def _read_tcp(sec: Section, name: str) -> TcpLink:
    host = sec.text("host", what=_("a host name or IP address"))
    if host is not None:
        check_host(sec, host)
    values = {name: read_declared(sec, TcpLink, name) for name in _TCP_PLAIN}
    return TcpLink(name=name, host=host or "", **filled(TcpLink, {
        "protocol": _protocol(sec, TCP_PROTOCOLS, default_of(TcpLink, "protocol")), **values}))


def check_host(sec: Section, host: str) -> None:
    """Catch the usual ways a host gets written with extra parts."""
    if "://" in host:
        sec.report("host", _("write only the host name or IP address, without '{start}...'")
                   .format(start=host[:6]))
    elif re.fullmatch(r"[^:\s]+:[0-9]+", host):
        address, port = host.rsplit(":", 1)
        sec.report("host", _("write the port separately: host: {address} and port: {port}")
                   .format(address=address, port=port))
    elif not re.fullmatch(r"[^\s/]+", host) or not host.isprintable():
        sec.report("host", _("expected a host name or IP address, found '{host}'").format(
            host=host))


def _read_serial(sec: Section, name: str) -> SerialLink:
    port = sec.text("port", empty_ok=True, what=_("a serial device such as /dev/ttyUSB0"))
    if port is not None:
        _check_serial_port(sec, port)
    protocol = _serial_protocol(sec)
    bytesize = read_declared(sec, SerialLink, "bytesize")
    if bytesize == 7 and protocol is LinkProtocol.MODBUS_RTU:
        sec.report("bytesize", _("Modbus RTU needs 8 data bits: expected 8, found 7 (7 data "
                                 "bits go with protocol: modbus-ascii)"))
    values = {name: read_declared(sec, SerialLink, name) for name in _SERIAL_PLAIN}
    return SerialLink(name=name, port=port or "", **filled(SerialLink, {
        "protocol": protocol, "bytesize": bytesize, **values}))


def _serial_protocol(sec: Section) -> LinkProtocol:
    entry = sec.node.get("protocol")
    if entry is not None and isinstance(entry.value, ScalarNode) \
            and str(entry.value.text).lower() == LinkProtocol.MODBUS_TCP.value:
        sec.report("protocol", _("modbus-tcp runs over a network, not a serial port: use "
                                 "modbus-rtu (the usual RS-485 protocol) or modbus-ascii here, "
                                 "or a link with type: tcp"))
        return default_of(SerialLink, "protocol")
    return _protocol(sec, SERIAL_PROTOCOLS, default_of(SerialLink, "protocol"))


def _protocol(sec: Section, allowed: Mapping[str, object],
              default: LinkProtocol) -> LinkProtocol:
    """The link's protocol; the short names technicians use (rtu, ascii, tcp) get a
    pointed hint, which a spelling suggestion cannot give for such short words."""
    entry = sec.node.get("protocol")
    if entry is not None and isinstance(entry.value, ScalarNode):
        written = str(entry.value.text).lower()
        full = f"modbus-{written}"
        if written in ("rtu", "ascii", "tcp") and full in allowed:
            sec.report("protocol", _("expected {expected}, found '{found}' (write {full})")
                       .format(expected=one_of(allowed), found=entry.value.text, full=full))
            return default
    return sec.choice("protocol", allowed, default) or default  # type: ignore[return-value]


def _check_serial_port(sec: Section, port: str) -> None:
    """A plausible device path; the port is not opened (check runs without hardware)."""
    if not port.strip():
        sec.report("port",
                   _("expected a serial device such as /dev/ttyUSB0 or COM3, found nothing"))
    elif port != port.strip():
        sec.report("port", _("'{port}' has spaces at the start or end; remove them").format(
            port=port))
    elif _NETWORK_ADDRESS.match(port):
        sec.report(
            "port",
            _("'{port}' looks like a network address; for Modbus TCP use a link with "
              "type: tcp, host and port").format(port=port),
        )
    elif not _SERIAL_PATH.match(port):
        sec.report(
            "port",
            _("expected a serial device such as /dev/ttyUSB0, /dev/serial/by-id/... or COM3, "
              "found '{port}'").format(port=port),
        )


def _check_shared_port(sec: Section, link: SerialLink, ports: dict[str, str]) -> None:
    """One port, one link: devices sharing an RS-485 bus belong on the same link."""
    if link.port in ports:
        sec.report(
            "port",
            _("'{port}' is already used by link '{link}'; put all devices of one bus on one "
              "link").format(port=link.port, link=ports[link.port]),
        )
    else:
        ports[link.port] = link.name
