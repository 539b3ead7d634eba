"""A link's client, chosen from its protocol. This module sits above the protocol clients
(drivers/modbus/protocol/transport.py, drivers/serialtext/protocol/client.py); link.py,
which they build on, imports neither, so there is no import cycle between a base and its
subclasses.

Each client's module is imported when the first link of its protocol is opened, not with
this module: a Modbus-only station would otherwise keep the serial-text client, its
framing and escapes loaded for the life of the process (issue 11, RSS;
docs/performance.md, Memory), and a serial-text-only one pymodbus with asyncio and ssl.
"""

from __future__ import annotations

from edge_agent.config.schema import Link, LinkProtocol
from edge_agent.link import LinkClient, WireTap


def open_link_client(link: Link, tap: WireTap | None = None) -> LinkClient:
    """The client for ``link``'s protocol, showing ``tap`` (a recording) its traffic.
    Opens nothing yet: clients connect on first use, so a missing adapter or a dead
    gateway becomes BAD readings, not a failed start."""
    if link.protocol is LinkProtocol.TEXT:
        from edge_agent_drivers.serialtext.protocol.client import TextLinkClient

        return TextLinkClient(link, tap)
    from edge_agent_drivers.modbus.protocol.transport import ModbusLinkClient

    return ModbusLinkClient(link, tap)
