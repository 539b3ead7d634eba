"""Alarm settings: a device's (and its profile's) ``alarms:`` rules per channel, and
the station's ``alarms:`` section (communication alarm, local actions).

Shapes (docs/alarms.md; declared in config/alarm_settings.py)::

    alarms:                                  # on a device, or in its profile
      h2s:                                   # a channel of the device
        high: {limit: 10, deadband: 1, on_delay: 2}
        high_high: 20                        # the limit alone: no deadband, at once
      nmhc:
        rate_of_rise: {limit: 0.5, on_delay: 60s, window_s: 120}   # per minute
      alarm_level:                           # the detector's own alarm register
        instrument: {values: {1: high, 2: high_high}, channel: h2s}

A profile's rules are the defaults: the station's device replaces them channel by
channel (``h2s: null`` removes the profile's rules of h2s). Rules are checked against the
device's channels and against each other (high-high above high, low below high).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from edge_agent.alarms.rules import (
    LEVEL_WORDS,
    RATE_WINDOW_S,
    ChannelAlarms,
    InstrumentRule,
    LimitRule,
    OnDelay,
    RuleKind,
)
from edge_agent.config.alarm_settings import (
    LEVEL_HINT,
    ON_DELAY_HINT,
    AlarmAction,
    AlarmSettings,
    InstrumentSetting,
    LimitSetting,
)
from edge_agent.config.declare import allowed_keys, declared, filled, read_declared
from edge_agent.config.fields import Mismatch, Section, as_section, found, join
from edge_agent.config.layers import Layers
from edge_agent.config.schema import Link
from edge_agent.config.yamlsource import MapNode, ScalarNode, SeqNode
from edge_agent.i18n import _

RULE_KEYS = (*(kind.value for kind in RuleKind), "instrument")
_DELAY = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(s|m)\s*", re.IGNORECASE)
MAX_ON_DELAY_S = 86400.0
MAX_ON_DELAY_SAMPLES = 1000


def read_device_alarms(layers: Layers, channels: Collection[str] | None
                       ) -> tuple[ChannelAlarms, ...]:
    """The device's rules: its profile's, replaced channel by channel by the station's.
    ``channels``: the device's channel names (None: unknown, its channels were wrong)."""
    merged: dict[str, ChannelAlarms | None] = {}
    for layer in (layers.profile, layers.device):
        if layer is not None:
            merged.update(_read_layer(layer, channels))
    return tuple(rules for rules in merged.values() if rules is not None)


def _read_layer(sec: Section, channels: Collection[str] | None
                ) -> dict[str, ChannelAlarms | None]:
    entry = sec.node.get("alarms")
    if entry is None or (isinstance(entry.value, ScalarNode) and entry.value.value is None):
        return {}
    if not isinstance(entry.value, MapNode):
        sec.report("alarms", _("expected channel names, each with its alarm rules "
                               "('h2s: {{high: 10}}'), found {found}").format(
                                   found=found(entry.value)))
        return {}
    path = sec.path_of("alarms")
    rules: dict[str, ChannelAlarms | None] = {}
    for item in entry.value.entries:
        where = join(path, item.key)
        if channels is not None and item.key not in channels:
            sec.ck.report(item.line, where, _("'{name}' is not a channel of this device "
                                              "(known: {known})").format(
                                                  name=item.key, known=", ".join(channels)))
            continue
        if isinstance(item.value, ScalarNode) and item.value.value is None:
            rules[item.key] = None  # removes the profile's rules of this channel
            continue
        channel_sec = as_section(sec.ck, item.value, where, item.line, RULE_KEYS)
        if channel_sec is not None:
            rules[item.key] = _read_channel(channel_sec, item.key, channels)
    return rules


def _read_channel(sec: Section, name: str, channels: Collection[str] | None
                  ) -> ChannelAlarms | None:
    limits = [rule for kind in RuleKind if (rule := _read_limit(sec, kind)) is not None]
    _check_order(sec, {rule.kind: rule.limit for rule in limits})
    instrument = _read_instrument(sec, channels)
    if not limits and instrument is None:
        if not sec.node.entries:
            sec.ck.report(sec.line, sec.path, _("expected at least one rule: {keys}").format(
                keys=", ".join(RULE_KEYS)))
        return None
    return ChannelAlarms(name, tuple(limits), instrument)


def _read_limit(sec: Section, kind: RuleKind) -> LimitRule | None:
    entry = sec.node.get(kind.value)
    if entry is None:
        return None
    if isinstance(entry.value, ScalarNode) and not isinstance(entry.value.value, str | None):
        limit = sec.number(kind.value)
        return None if limit is None else LimitRule(kind, limit)
    rule = sec.section(kind.value, allowed_keys(LimitSetting)) \
        if isinstance(entry.value, MapNode) else None
    if rule is None:
        sec.report(kind.value, _("expected a limit such as 10, or '{{limit: 10, deadband: 1, "
                                 "on_delay: 3}}', found {found}").format(found=found(entry.value)))
        return None
    limit = read_declared(rule, LimitSetting, "limit")
    deadband = read_declared(rule, LimitSetting, "deadband")
    on_delay = rule.get("on_delay", OnDelay(), _(ON_DELAY_HINT), _on_delay)
    if kind is RuleKind.RATE_OF_RISE:
        window_s = read_declared(rule, LimitSetting, "window_s")
    else:
        window_s = RATE_WINDOW_S
        if rule.has("window_s"):
            rule.report("window_s", _("applies only to rate_of_rise (the time its rate is "
                                      "measured over); remove it here"))
    if limit is None or deadband is None or on_delay is None or window_s is None:
        return None
    return LimitRule(kind, limit, deadband, on_delay, window_s)


def _on_delay(node: ScalarNode) -> OnDelay:
    """``3`` (consecutive samples) or ``30s`` / ``2m`` (time since first met)."""
    value = node.value
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_ON_DELAY_SAMPLES:
            raise Mismatch()
        return OnDelay(samples=value)
    match = _DELAY.fullmatch(str(value)) if isinstance(value, str) else None
    if match is None:
        raise Mismatch()
    seconds = float(match.group(1)) * (60 if match.group(2).lower() == "m" else 1)
    if not 0 < seconds <= MAX_ON_DELAY_S:
        raise Mismatch()
    return OnDelay(samples=1, seconds=seconds)


def _check_order(sec: Section, limits: Mapping[RuleKind, float]) -> None:
    """high-high above high, low-low below low, every low below every high."""
    pairs = ((RuleKind.HIGH, RuleKind.HIGH_HIGH), (RuleKind.LOW_LOW, RuleKind.LOW),
             (RuleKind.LOW, RuleKind.HIGH), (RuleKind.LOW_LOW, RuleKind.HIGH),
             (RuleKind.LOW, RuleKind.HIGH_HIGH))
    for lower, upper in pairs:
        if lower in limits and upper in limits and limits[lower] >= limits[upper]:
            sec.report(upper.value, _("the {upper} limit ({high:g}) must be above the "
                                      "{lower} limit ({low:g})").format(
                                          upper=upper.value, lower=lower.value,
                                          high=limits[upper], low=limits[lower]))
            return


def _read_instrument(sec: Section, channels: Collection[str] | None) -> InstrumentRule | None:
    rule = sec.section("instrument", allowed_keys(InstrumentSetting))
    if rule is None:
        if sec.has("instrument"):
            sec.report("instrument", _("expected '{values: {1: high, 2: high_high}}' or "
                                       "'{bits: {0: high, 1: high_high}}'"))
        return None
    values = _levels(rule, "values", None)
    bits = _levels(rule, "bits", 15)
    reports = read_declared(rule, InstrumentSetting, "channel")
    if reports is not None and channels is not None and reports not in channels:
        rule.report("channel", _("'{name}' is not a channel of this device (known: "
                                 "{known})").format(name=reports, known=", ".join(channels)))
    if not values and not bits:
        if not rule.has("values") and not rule.has("bits"):
            sec.report("instrument", _("expected values, bits or both"))
        return None
    return InstrumentRule(values, bits, reports)


def _levels(sec: Section, key: str, max_key: int | None) -> tuple[tuple[int, int], ...]:
    """``{1: high, 2: high_high}``: whole numbers (bit numbers up to ``max_key``) to
    alarm levels."""
    entry = sec.node.get(key)
    if entry is None:
        return ()
    if not isinstance(entry.value, MapNode) or not entry.value.entries:
        sec.report(key, _("expected '{declared}', found {found}").format(
            declared=_(declared(InstrumentSetting)[key].hint), found=found(entry.value)))
        return ()
    levels: list[tuple[int, int]] = []
    where = sec.path_of(key)
    for item in entry.value.entries:
        number = int(item.key) if re.fullmatch(r"[0-9]+", item.key) else None
        if number is None or (max_key is not None and number > max_key):
            what = _("a bit number 0..15") if max_key is not None else _("a whole number")
            sec.ck.report(item.line, join(where, item.key),
                          _("expected {what}, found '{key}'").format(what=what, key=item.key))
            continue
        word = item.value.text.lower() if isinstance(item.value, ScalarNode) else ""
        if word not in LEVEL_WORDS:
            sec.ck.report(item.value.line, join(where, item.key),
                          _("expected {levels}, found {found}").format(
                              levels=_(LEVEL_HINT), found=found(item.value)))
            continue
        levels.append((number, LEVEL_WORDS[word]))
    return tuple(levels)


def read_alarm_settings(top: Section, links: Mapping[str, Link],
                        devices: Collection[str]) -> AlarmSettings | None:
    """The station's ``alarms:`` section; None when the file has none."""
    if not top.has("alarms"):
        return None
    sec = top.section("alarms", allowed_keys(AlarmSettings))
    if sec is None:
        return AlarmSettings()  # written empty: every default
    communication = read_declared(sec, AlarmSettings, "communication")
    actions = _read_actions(sec, links, devices)
    return AlarmSettings(*filled(AlarmSettings, {"communication": communication,
                                                 "actions": actions}).values())


def _read_actions(sec: Section, links: Mapping[str, Link],
                  devices: Collection[str]) -> tuple[AlarmAction, ...]:
    entry = sec.node.get("actions")
    if entry is None:
        return ()
    if not isinstance(entry.value, SeqNode):
        sec.report("actions", _("expected a list of outputs ('- name: beacon' items), "
                                "found {found}").format(found=found(entry.value)))
        return ()
    actions: list[AlarmAction] = []
    names: set[str] = set()
    for index, node in enumerate(entry.value.items):
        item = as_section(sec.ck, node, f"{sec.path_of('actions')}[{index}]", node.line,
                          allowed_keys(AlarmAction))
        if item is None:
            continue
        action = _read_action(item, links, devices)
        name = item.node.get("name")
        written = name.value.text if name and isinstance(name.value, ScalarNode) else None
        if written is not None and written in names:
            item.report("name", _("the name '{name}' is already used by another "
                                  "output").format(name=written))
        elif action is not None:
            actions.append(action)
        if written is not None:
            names.add(written)
    return tuple(actions)


def _read_action(sec: Section, links: Mapping[str, Link],
                 devices: Collection[str]) -> AlarmAction | None:
    issues = len(sec.ck.issues)  # coil or register is None when not given: not a problem
    values = {name: read_declared(sec, AlarmAction, name) for name in declared(AlarmAction)
              if name != "devices"}
    values["devices"] = _device_list(sec, devices)
    link = links.get(values["link"] or "")
    if values["link"] is not None and link is None:
        sec.report("link", _("'{name}' is not defined (known: {known})").format(
            name=values["link"], known=", ".join(links)))
    elif link is not None and not link.protocol.is_modbus:
        sec.report("link", _("'{name}' speaks {protocol}; an output needs a Modbus "
                             "link").format(name=values["link"], protocol=link.protocol.value))
        link = None
    if values["coil"] is not None and values["register"] is not None:
        sec.report("register", _("give coil or register, not both"), at_key=True)
        return None
    if values["coil"] is None and values["register"] is None and len(sec.ck.issues) == issues:
        sec.missing("coil", _("a coil address, or register: a holding register address"))
        return None
    if len(sec.ck.issues) > issues or link is None:
        return None
    return AlarmAction(**values)


def _device_list(sec: Section, devices: Collection[str]) -> tuple[str, ...] | None:
    entry = sec.node.get("devices")
    if entry is None:
        return ()
    items = entry.value.items if isinstance(entry.value, SeqNode) else None
    names = [item.text for item in items or () if isinstance(item, ScalarNode)]
    if items is None or len(names) != len(items):
        sec.report("devices", _("expected a list of device ids such as [det-1, det-2], "
                                "found {found}").format(found=found(entry.value)))
        return None
    unknown = [name for name in names if name not in devices]
    if unknown:
        sec.report("devices", _("'{name}' is not a device of this station (known: "
                                "{known})").format(name=unknown[0], known=", ".join(devices)))
        return None
    return tuple(names)
