"""Text links shared by several devices: what only the whole ``devices:`` list shows.

A stream instrument talks whenever it likes, so it needs its link to itself; on a
shared text bus each device needs its address. Called from validate_devices.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_agent_drivers.serialtext.reader import KIND as TEXT_KIND

from edge_agent.config.fields import Section
from edge_agent.config.schema import Device
from edge_agent.i18n import _


@dataclass
class SharedTextLinks:
    """Who uses each text link so far, for the checks that need the whole list."""

    users: dict[str, list[tuple[Device, int | None]]] = field(default_factory=dict)


def check_text_link_sharing(sec: Section, device: Device | None,
                            seen: SharedTextLinks) -> Device | None:
    """A stream instrument talks whenever it likes, so it needs its link to itself; on a
    shared text bus each device needs its address. Returns None after an issue, so no
    second message piles on (such as a duplicate unit id 0)."""
    if device is None:
        return None
    users = seen.users.setdefault(device.link, [])
    for other, other_line in users:
        problem = _sharing_problem(device, other)
        if problem is not None:
            sec.report("link", _("link '{link}' is also used by device '{other}' (line {line}): "
                                 "{problem}").format(link=device.link, other=other.id,
                                                     line=other_line, problem=problem))
            return None
    users.append((device, sec.line))
    return device


def _sharing_problem(device: Device, other: Device) -> str | None:
    pair = [(one.id, one.settings) for one in (other, device) if one.driver == TEXT_KIND]
    if not pair:
        return None
    # here, not at the top: a station without serial-text devices never loads it (issue 11)
    from edge_agent_drivers.serialtext.protocol.settings import TextMode

    for device_id, settings in pair:
        if settings.mode is TextMode.STREAM:
            return _("'{id}' streams on its own and needs a link to itself").format(id=device_id)
    for device_id, settings in pair:
        if settings.address is None:
            return _("'{id}' has no unit_id; devices sharing a text link each need their "
                     "address as unit_id").format(id=device_id)
    return None
