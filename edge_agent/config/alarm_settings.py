"""The alarm settings of a station file, declared once (config/declare.py), so the
readers (validate_alarms.py), the JSON Schema and config/reference.yaml agree.

Two places hold them (docs/alarms.md):

* a device's (or its profile's) ``alarms:``, keyed by channel name, each channel with
  its rules: ``high``/``high_high``/``low``/``low_low``/``rate_of_rise`` written as a
  number (the limit) or as ``LimitSetting``, and ``instrument`` (``InstrumentSetting``);
* the station's ``alarms:`` section (``AlarmSettings``): the communication alarm and
  the local actions (``AlarmAction``: a coil or register of an output module).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.config.declare import setting
from edge_agent.i18n import N_

ON_DELAY_HINT = "a number of consecutive samples such as 3, or a time such as 30s or 2m"
LEVEL_HINT = N_("1 or high (alarm level 1), 2 or high_high (alarm level 2)")


@dataclass(frozen=True)
class LimitSetting:
    """One limit rule as written (``high: {limit: 10, deadband: 1, on_delay: 3}``);
    ``high: 10`` is short for ``high: {limit: 10}``."""

    limit: float = setting("number", hint="the limit in the channel's unit (per minute "
                                          "for rate_of_rise)")
    deadband: float = setting("number", 0.0, range=(0, None))
    # 1: at once; read by validate_alarms.py (samples, or seconds with a unit)
    on_delay: str = setting("custom", "1", hint=ON_DELAY_HINT)
    # rate_of_rise only: the time its rate is measured over (longer: steadier, slower)
    window_s: float = setting("number", 60.0, range=(1, 86400),
                              hint="seconds a rate_of_rise is measured over (rate_of_rise "
                                   "only)")


@dataclass(frozen=True)
class InstrumentSetting:
    """A device's own alarm register mapped to alarm levels (``instrument:``)."""

    values: str = setting("custom", "", hint="register value: level, e.g. {1: high, "
                                             "2: high_high}")
    bits: str = setting("custom", "", hint="bit number 0..15: level, e.g. {0: 1, 1: 2}")
    channel: str | None = setting("text", None, hint="the channel whose value the alarm "
                                                     "reports, e.g. h2s")


@dataclass(frozen=True)
class AlarmAction:
    """A local output driven by alarms (an item of ``alarms.actions``): ``on_value`` is
    written when the first matching alarm is raised, ``off_value`` when the last one
    clears. Exactly one of ``coil`` and ``register`` (0-based addresses) is given."""

    name: str = setting("text", hint="the output's name, e.g. beacon")
    link: str = setting("text", hint="the name of a Modbus link under links:")
    unit_id: int = setting("integer", range=(0, 255), hint="the output module's unit id")
    coil: int | None = setting("integer", None, range=(0, 65535),
                               hint="the coil's address 0..65535 (0-based, as on the wire)")
    register: int | None = setting("integer", None, range=(0, 65535),
                                   hint="the holding register's address 0..65535 (0-based)")
    on_value: int = setting("integer", 1, range=(0, 65535))
    off_value: int = setting("integer", 0, range=(0, 65535))
    min_level: int = setting("integer", 1, range=(1, 2))
    devices: tuple[str, ...] = setting("custom", (), hint="a list of device ids (empty: "
                                                          "every device)")
    unconfirmed: bool = setting("flag", True)
    retries: int = setting("integer", 3, range=(0, 10))

    def matches(self, device_id: str, level: int, confirmed: bool) -> bool:
        """Whether an alarm of ``device_id`` at ``level`` drives this output."""
        return (level >= self.min_level and (confirmed or self.unconfirmed)
                and (not self.devices or device_id in self.devices))


@dataclass(frozen=True)
class AlarmSettings:
    """The station's ``alarms:`` section."""

    communication: bool = setting("flag", True)
    actions: tuple[AlarmAction, ...] = setting(
        "custom", (), hint="a list of outputs, each '- {name, link, unit_id, coil}'")
