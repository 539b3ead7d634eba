"""What a reload changes about alarms: a pure diff of two station configurations.

A reload (SIGHUP, edge_agent/reload.py) applies alarm settings without a restart of the
service (``AlarmRuntime.reconfigure``). The engine's state of one device is touched by
that device's poller only, and a local output by its link's owner only, so the pollers
these changes concern are restarted around the change (``links``):

* a device whose rules changed: its link's poller restarts anyway (the device changed);
* a device whose communication alarm is switched on or off: its link's poller;
* any change of the outputs (``alarms.actions``, the links they write on, or which of
  those links a poller owns): the pollers of every link with outputs, before or after,
  because they hold the outputs' queue of writes, which is built anew;
* alarms switched on in a station that had none: every poller (they had no hook).

Pollers of other links poll on without a gap, and their alarms keep their running state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edge_agent.alarms.rules import ChannelAlarms
from edge_agent.config.alarm_settings import AlarmAction
from edge_agent.config.schema import Link, StationConfig


@dataclass(frozen=True)
class AlarmChanges:
    """``links``: the pollers to restart for the alarms' sake; ``words``: what changed,
    for the reload's log line (empty: alarms unchanged)."""

    links: frozenset[str] = frozenset()
    words: tuple[str, ...] = ()


def rules_by_device(config: StationConfig) -> dict[str, tuple[ChannelAlarms, ...]]:
    """Each device's rules (devices without rules included: an empty tuple)."""
    return {device.id: device.alarms for device in config.devices}


def communication_devices(config: StationConfig) -> frozenset[str]:
    """The devices with a communication alarm: every device, unless the station's
    ``alarms:`` section switches it off, once the station decides alarms at all."""
    if not config.has_alarms():
        return frozenset()
    settings = config.alarms
    if settings is not None and not settings.communication:
        return frozenset()
    return frozenset(device.id for device in config.devices)


def outputs_key(config: StationConfig) -> tuple[object, ...]:
    """What the outputs are built from: the actions, their links' settings and which of
    those links a poller owns. Equal keys: the running outputs stay as they are."""
    actions: tuple[AlarmAction, ...] = config.alarms.actions if config.alarms else ()
    used = sorted({action.link for action in actions})
    links: Mapping[str, Link | None] = {name: config.links.get(name) for name in used}
    polled = {device.link for device in config.devices}
    return actions, links, tuple(name for name in used if name in polled)


def alarm_changes(old: StationConfig, new: StationConfig) -> AlarmChanges:
    """The alarm part of the plan for replacing ``old`` (running) by ``new``."""
    links_of = {device.id: device.link for device in (*old.devices, *new.devices)}
    before, after = rules_by_device(old), rules_by_device(new)
    changed = sorted(device for device in before.keys() | after.keys()
                     if before.get(device, ()) != after.get(device, ()))
    talk_before, talk_after = communication_devices(old), communication_devices(new)
    switched = sorted(talk_before ^ talk_after)
    links = {links_of[device] for device in switched}
    words = []
    if changed:
        words.append("alarm rules changed on " + ", ".join(changed))
    if switched:
        words.append("communication alarm " + ("on" if talk_after else "off") + " for "
                     + ", ".join(switched))
    if outputs_key(old) != outputs_key(new):
        names = sorted({action.name for config in (old, new)
                        for action in (config.alarms.actions if config.alarms else ())})
        words.append("alarm outputs rebuilt: " + (", ".join(names) or "none"))
        links |= {name for config in (old, new) for name in _output_links(config)}
    if new.has_alarms() and not old.has_alarms():
        words.append("alarms switched on")
        links |= {device.link for device in (*old.devices, *new.devices)}
    return AlarmChanges(frozenset(links), tuple(words))


def _output_links(config: StationConfig) -> set[str]:
    return {action.link for action in (config.alarms.actions if config.alarms else ())}
