"""A link's client, chosen from its protocol. This module sits above the protocol clients
(drivers/modbus/protocol/transport.py, drivers/serialtext/protocol/client.py) and imports
both; link.py, which they build on, imports neither, so there is no import cycle between
a base and its subclasses.
"""

from __future__ import annotations

from edge_agent_drivers.modbus.protocol.transport import ModbusLinkClient
from edge_agent_drivers.serialtext.protocol.client import TextLinkClient

from edge_agent.config.schema import Link, LinkProtocol
from edge_agent.link import LinkClient, WireTap


def open_link_client(link: Link, tap: WireTap | None = None) -> LinkClient:
    """The client for ``link``'s protocol, showing ``tap`` (a recording) its traffic.
    Opens nothing yet: clients connect on first use, so a missing adapter or a dead
    gateway becomes BAD readings, not a failed start."""
    if link.protocol is LinkProtocol.TEXT:
        return TextLinkClient(link, tap)
    return ModbusLinkClient(link, tap)
