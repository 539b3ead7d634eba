"""``mqtt.brokers``: several broker addresses, tried in turn (forward/brokers.py).

Written as ``host:port`` words (``[::1]:1883`` for IPv6) or ``{host, port}`` items; an
address without a port takes the MQTT default, 8883 with ``tls`` and 1883 without, as
``mqtt.port`` does. ``brokers`` replaces ``host``/``port``: giving both is an error, so
no one has to guess which wins. Every item is checked (a host name or IP address, a port
1..65535, no address twice) and each problem is reported at the item's own line.
"""

from __future__ import annotations

import re

from edge_agent.config.fields import Section, found
from edge_agent.config.schema import BROKERS_HINT, BrokerAddress
from edge_agent.config.yamlsource import MapNode, Node, ScalarNode, SeqNode

PLAIN_PORT, TLS_PORT = 1883, 8883
_HOST = re.compile(r"[^\s/\[\]@:]+|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")  # a name, IPv4, or IPv6
_ITEM_KEYS = ("host", "port")


def read_brokers(sec: Section, tls: bool) -> tuple[BrokerAddress, ...] | None:
    """The addresses under ``brokers``; () when absent, None after a reported problem."""
    entry = sec.node.get("brokers")
    if entry is None:
        return ()
    for key in ("host", "port"):
        if sec.has(key):
            sec.report(key, f"give either '{key}' or 'brokers', not both: with several "
                       "brokers, write every address (with its port) in the brokers list",
                       at_key=True)
    node = entry.value
    if not isinstance(node, SeqNode):
        sec.report("brokers", f"expected {BROKERS_HINT}, found {found(node)}")
        return None
    if not node.items:
        sec.report("brokers", "the list is empty: give at least one broker address, or "
                   "use host (and port) for a single broker")
        return None
    default_port = TLS_PORT if tls else PLAIN_PORT
    addresses: list[BrokerAddress] = []
    first_at: dict[tuple[str, int], int] = {}
    ok = True
    for index, item in enumerate(node.items):
        path = f"{sec.path_of('brokers')}[{index}]"
        address = _read_item(sec, item, path, default_port)
        if address is None:
            ok = False
            continue
        key = (address.host.lower(), address.port)
        if key in first_at:
            sec.ck.report(item.line, path, f"{address} is listed twice (also brokers"
                          f"[{first_at[key]}]); list each broker once")
            ok = False
            continue
        first_at[key] = index
        _warn_port(sec, item, path, address, tls)
        addresses.append(address)
    return tuple(addresses) if ok else None


def _read_item(sec: Section, item: Node, path: str, default_port: int
               ) -> BrokerAddress | None:
    if isinstance(item, MapNode):
        return _read_mapping(sec, item, path, default_port)
    if isinstance(item, ScalarNode) and isinstance(item.value, str):
        address, problem = parse_address(item.value, default_port)
        if problem is not None:
            sec.ck.report(item.line, path, problem)
        return address
    sec.ck.report(item.line, path, f"expected a broker address such as broker-1:1883 or "
                  f"'{{host: broker-1, port: 1883}}', found {found(item)}")
    return None


def _read_mapping(sec: Section, item: MapNode, path: str, default_port: int
                  ) -> BrokerAddress | None:
    sub = Section(sec.ck, item, path, item.line, _ITEM_KEYS)
    host = sub.text("host", what="the broker's host name or IP address")
    port = sub.integer("port", default_port, 1, 65535)
    if host is None or port is None:
        return None
    if problem := host_problem(host):
        sub.report("host", problem)
        return None
    return BrokerAddress(host.strip("[]"), port)


def parse_address(text: str, default_port: int) -> tuple[BrokerAddress | None, str | None]:
    """``host``, ``host:port`` or ``[ipv6]:port`` -> the address, or the problem."""
    text = text.strip()
    port_text = None
    if "://" in text:
        return None, host_problem(text)
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None, f"expected [IPv6 address]:port such as [fd00::1]:1883, found '{text}'"
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif text.count(":") > 1:
        return None, (f"write an IPv6 address in brackets, [{text}] or [{text}]:1883, or "
                      f"as '{{host: \"{text}\", port: 1883}}'")
    else:
        host = text
    if problem := host_problem(host):
        return None, problem
    if port_text is None:
        return BrokerAddress(host, default_port), None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        return None, f"expected a port 1..65535 after ':', found '{port_text}' in '{text}'"
    return BrokerAddress(host, int(port_text)), None


def host_problem(host: str) -> str | None:
    """Why ``host`` is not a host name or IP address (as ``mqtt.host`` is checked)."""
    if "://" in host:
        return ("write only the host name or IP address and port, without "
                f"'{host.split('://')[0]}://'")
    if not host or not _HOST.fullmatch(host) or not host.isprintable():
        return f"expected a host name or IP address, found '{host}'"
    return None


def _warn_port(sec: Section, item: Node, path: str, address: BrokerAddress,
               tls: bool) -> None:
    """The usual mix-up: the plain port with tls on, or the TLS port without it."""
    if tls and address.port == PLAIN_PORT:
        sec.ck.warn(item.line, path, f"{address}: port {PLAIN_PORT} is MQTT's plain "
                    f"(unencrypted) port, but tls is on; brokers usually take TLS on "
                    f"{TLS_PORT}")
    elif not tls and address.port == TLS_PORT:
        sec.ck.warn(item.line, path, f"{address}: port {TLS_PORT} is MQTT's TLS port, but "
                    "tls is off; turn tls on, or give the broker's plain port")

