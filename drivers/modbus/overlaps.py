"""Register overlaps in a Modbus device's channels: almost always an address counted wrong.

Channels sharing a register mean an address is off, except single registers read two
ways (a status word as a number and as bits): both 16-bit or bits of one word.
"""

from __future__ import annotations

from collections.abc import Callable

from edge_agent_drivers.modbus.settings import Channel, DataType

from edge_agent.config.fields import Section
from edge_agent.i18n import _


def check_overlaps(sec: Section, channels: tuple[Channel, ...],
                    placed: dict[str, tuple[Section, int | None]]) -> None:
    """Channels sharing a register mean an address is off, except single registers read
    two ways (a status word as a number and as bits): both 16-bit or bits of one word."""
    near_before = _near_before(channels)
    for index, channel in enumerate(channels):
        clashes = [channels[i] for i in near_before(index) if _clash(channel, channels[i])]
        if not clashes:
            continue
        listing = _(" and ").join(
            _("{channel} (line {line})").format(channel=_describe(other),
                                                line=placed[other.name][1])
            if other.name in placed else _describe(other) for other in clashes)
        message = _("{channel} overlaps {others}").format(channel=_describe(channel),
                                                          others=listing)
        where = placed.get(channel.name)
        if where is None:
            sec.report("channels", message, at_key=True)
            continue
        key = "number" if where[0].has("number") else "address"
        where[0].report(key, message)


def _near_before(channels: tuple[Channel, ...]) -> Callable[[int], list[int]]:
    """For a channel's index, the indexes of the channels before it that start close
    enough to overlap it, in list order.

    Comparing every pair took a minute for 10 devices of 2000 channels; a channel spans
    at most a few hundred addresses, so only starts within the longest span can clash.
    """
    starts: dict[int, list[int]] = {}
    for i, channel in enumerate(channels):
        starts.setdefault(channel.address, []).append(i)
    longest = max((channel.span for channel in channels), default=1)

    def near(index: int) -> list[int]:
        first, last = _span(channels[index])
        return sorted(i for address in range(first - longest + 1, last + 1)
                      for i in starts.get(address, ()) if i < index)

    return near


def _clash(one: Channel, other: Channel) -> bool:
    if one.register is not other.register or one.enron != other.enron:
        return False
    if one.span == 1 and other.span == 1 and one.data_type is not DataType.STRING \
            and other.data_type is not DataType.STRING:
        return False
    first, last = _span(one)
    other_first, other_last = _span(other)
    return first <= other_last and other_first <= last


def _describe(channel: Channel) -> str:
    """ "float32 'toluene' at holding 101..102" for overlap messages."""
    first, last = _span(channel)
    where = f"{first}" if first == last else f"{first}..{last}"
    return _("{type} '{name}' at {register} {where}").format(
        type=channel.data_type.value, name=channel.name, register=channel.register.value,
        where=where)


def _span(channel: Channel) -> tuple[int, int]:
    return channel.address, channel.address + channel.span - 1
