"""What a driver kind is to the rest of the agent: one registry entry.

A kind (``modbus``, ``serial-text``) is a folder under ``drivers/`` and one line in
``edge_agent_drivers.registry``. The entry names everything core code needs from the
folder, so that neither the config loader nor the poller keeps a list of drivers: the
settings type a device of the kind carries, the reader that validates the kind's part of
a ``devices[]`` entry, the driver class that polls it, and the link protocols it speaks.
This module holds only the shape of an entry (it imports no driver), so both the loader
and the drivers can import it without a cycle.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_agent.config.declare import Setting
from edge_agent.config.fields import Section, one_of
from edge_agent.config.layers import Layers
from edge_agent.config.schema import Device, Link, LinkProtocol
from edge_agent.i18n import _


@dataclass(frozen=True)
class DeviceEntry:
    """What a kind's settings reader gets for one ``devices[]`` item.

    ``section`` is the device as the station file writes it; ``layers`` picks each key
    from there or from the device's profile (issues then name the profile's file);
    ``link`` is the device's link when it is defined and valid (None otherwise: its own
    issue is already reported); ``unit_id`` is what the kind's ``read_unit_id`` gave.
    ``owners`` maps each device-level key of the other registered kinds to the kind that
    reads it, so a reader that refuses them itself names the right kind (the registry
    is the one list of kinds).
    """

    section: Section
    layers: Layers
    link: Link | None
    unit_id: int | None
    owners: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DriverKind:
    """One driver kind, as the loader and the poller see it.

    ``keys`` are the device-level keys only this kind reads. The loader accepts the keys
    of every kind on a device, then refuses those of other kinds on this kind's devices
    with a generic message, unless ``refuses_other_keys`` says the reader does that
    itself, in words that help more (modbus and serial-text do).
    ``read_unit_id(section, link_type)`` reads ``unit_id`` (``link_type`` is "tcp",
    "serial" or None, from validate_links.LinkTable.kinds); ``read_settings`` returns the
    kind's settings, or None after reporting an issue. ``wrong_link(link, speaker)`` is
    the message for a link whose protocol the kind does not speak, ``speaker`` being the
    registered kind that does speak it (None: a generic message).
    """

    name: str
    #: the class, or ``"module:Class"`` for a kind whose settings module should load only
    #: with its first device (``settings_class()`` gives the class either way)
    settings_type: type | str
    keys: tuple[str, ...]
    read_unit_id: Callable[[Section, str | None], int | None]
    read_settings: Callable[[DeviceEntry], Any]
    driver: Callable[[Device], Any]
    link_protocols: frozenset[LinkProtocol]
    wrong_link: Callable[[Link, str | None], str] | None = None
    refuses_other_keys: bool = False
    unit_id: Setting | None = None  # unit_id as this kind declares it (None: Device's)

    def settings_class(self) -> type:
        """The settings type a device of this kind carries, imported on first use when
        the entry names it as ``"module:Class"`` (serial-text does: a Modbus-only station
        then never loads it, about 0.25 MiB; issue 11, docs/performance.md, Memory)."""
        if isinstance(self.settings_type, str):
            return _resolve(self.settings_type)
        return self.settings_type

    def link_problem(self, link: Link | None, speaker: str | None = None) -> str | None:
        """Why this kind cannot use ``link`` (None: it can, or the link is unknown);
        ``speaker``: the registered kind that speaks the link's protocol, if any.

        The link's protocol decides which client owns the port, so a device speaking
        another protocol would never be answered."""
        if link is None or link.protocol in self.link_protocols:
            return None
        if self.wrong_link is not None:
            return self.wrong_link(link, speaker)
        wanted = one_of(sorted(protocol.value for protocol in self.link_protocols))
        other = _(" (or use driver: {driver} for this device)").format(driver=speaker) \
            if speaker else ""
        return _("link '{link}' speaks {protocol}; driver {driver} needs a link with protocol: "
                 "{wanted}").format(link=link.name, protocol=link.protocol.value,
                                    driver=self.name, wanted=wanted) + other


@functools.cache
def _resolve(reference: str) -> type:
    """``"module:Class"`` -> the class."""
    module, _sep, name = reference.partition(":")
    found = getattr(importlib.import_module(module), name)
    if not isinstance(found, type):
        raise TypeError(f"{reference} is not a class")
    return found
