"""Status and alarm words mapped to quality, as the profile says. Pure; table-tested.

A status channel lists ``quality_bits`` (bit -> rule) and/or ``quality_values`` (whole
value -> rule). Each rule that holds lowers the quality of its target channels (all other
channels when it names none) to the rule's quality, never raising it: a reading that is
already BAD for its own reason stays BAD with that reason. When several rules hit one
reading, the worst quality wins and the reasons are joined with ``+`` in the profile's
order (``calibrating+maintenance``), so a consumer sees every cause. The lowering itself
is ``edge_agent.values.flagged``, shared with the serial-text driver's status fields.

A status word that could not be read (BAD itself) flags nothing: its own BAD reading
already shows that the state is unknown, and blanking every channel of an analyser for
one unreadable register would hide good data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from edge_agent_drivers.modbus.settings import Channel, QualityRule

from edge_agent.model import Reading
from edge_agent.values import flagged


def active_rules(channel: Channel, raw: object) -> list[QualityRule]:
    """The rules of status channel ``channel`` that its raw value switches on."""
    if isinstance(raw, bool):
        raw = int(raw)
    if not isinstance(raw, int):
        return []
    rules = [rule for bit, rule in channel.quality_bits if (raw >> bit) & 1]
    rules += [rule for value, rule in channel.quality_values if raw == value]
    return rules


def apply_status(readings: Sequence[Reading], channels: Sequence[Channel],
                 raw_values: Mapping[str, object]) -> Sequence[Reading]:
    """``readings`` with the qualities the device's status channels impose: ``readings``
    itself when no rule is active (nearly every poll; a ``PolledReadings`` then stays
    unbuilt), else a tuple."""
    hits: dict[str, list[QualityRule]] = {}
    for channel in channels:
        if not (channel.quality_bits or channel.quality_values):
            continue
        for rule in active_rules(channel, raw_values.get(channel.name)):
            targets = rule.channels or tuple(ch.name for ch in channels
                                             if ch.name != channel.name)
            for name in targets:
                hits.setdefault(name, []).append(rule)
    if not hits:  # nothing flagged (nearly every poll): the readings as they are
        return readings
    return tuple([_lowered(reading, hits[reading.channel]) if reading.channel in hits
                  else reading for reading in readings])


def _lowered(reading: Reading, rules: list[QualityRule]) -> Reading:
    quality, reason = flagged(reading.quality, reading.reason,
                              [(rule.quality, rule.reason) for rule in rules])
    if (quality, reason) == (reading.quality, reading.reason):
        return reading
    return replace(reading, quality=quality, reason=reason)
