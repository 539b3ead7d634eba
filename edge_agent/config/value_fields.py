"""Settings of a channel's value that every driver kind reads alike: its name, its
unit, ``valid_range`` and ``sentinels`` (one value pipeline, edge_agent/values.py).

Used by the Modbus channel reader (drivers/modbus/config_channels.py) and the
serial-text record reader (drivers/serialtext/config_record.py), so a setting means the
same and is refused with the same message whatever the instrument speaks.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent_drivers.modbus.settings import DataType, article

from edge_agent.config.declare import allowed_keys, default_of, read_declared, setting
from edge_agent.config.fields import Section, found
from edge_agent.config.names import LABEL_MAX, UNIT_MAX, label_problem
from edge_agent.config.yamlsource import SeqNode
from edge_agent.model import Quality
from edge_agent.values import ValidRange

RANGE_QUALITIES = {"SUSPECT": Quality.SUSPECT, "BAD": Quality.BAD}


@dataclass(frozen=True)
class ValidRangeSetting:
    """``valid_range`` as written in a station file: its keys, their kinds and the
    default quality, declared once. The pipeline's own type (``ValidRange`` in
    edge_agent/values.py) sits below the config package and knows nothing of YAML."""

    low: float | None = setting("number", None, key="min",
                                hint="the lowest plausible value, in engineering units")
    high: float | None = setting("number", None, key="max",
                                 hint="the highest plausible value, in engineering units")
    quality: Quality = setting("choice", default_of(ValidRange, "quality"),
                               choices=RANGE_QUALITIES)


def read_channel_name(sec: Section, example: str = "benzene") -> str | None:
    """A channel's name: printable text of at most ``LABEL_MAX`` characters."""
    name = sec.text("name", what=f"the channel's name, e.g. {example}")
    if name is not None and (problem := label_problem(name, "the channel's name", LABEL_MAX)):
        sec.report("name", problem)
        return None
    return name


def read_unit(sec: Section, default: str) -> str | None:
    """A unit as it goes into every reading (``ppm``, ``mg/m³``): printable, short."""
    unit = sec.text("unit", default, empty_ok=True)
    if unit is not None and (problem := label_problem(unit, "the unit", UNIT_MAX)):
        sec.report("unit", problem)
        return None
    return unit


def read_valid_range(sec: Section, default: ValidRange | None) -> ValidRange | None:
    """``valid_range: {min, max, quality}``, in engineering units (after scaling)."""
    rng = sec.section("valid_range", allowed_keys(ValidRangeSetting))
    if rng is None:
        return default
    low = read_declared(rng, ValidRangeSetting, "low")
    high = read_declared(rng, ValidRangeSetting, "high")
    quality = read_declared(rng, ValidRangeSetting, "quality")
    # cross-field rules: at least one bound, and the bounds in order
    if low is None and high is None and not rng.has("min") and not rng.has("max"):
        sec.report("valid_range", "expected min, max or both")
    elif low is not None and high is not None and low > high:
        rng.report("min", f"min {low:g} is above max {high:g}")
    return ValidRange(low, high, quality or default_of(ValidRangeSetting, "quality"))


def read_sentinels(sec: Section, data_type: DataType | None,
                   default: tuple[float, ...]) -> tuple[float, ...]:
    """``sentinels: [65535, -9999]`` (or one number): raw values meaning 'no reading'.
    Each must be a value the type can hold (when the channel has one: a serial-text
    channel has none), or it could never match."""
    entry = sec.node.get("sentinels")
    if entry is None:
        return default
    items = entry.value.items if isinstance(entry.value, SeqNode) else (entry.value,)
    values = []
    for item in items:
        value = getattr(item, "value", None)
        if isinstance(value, bool) or not isinstance(value, int | float):
            sec.ck.report(item.line, sec.path_of("sentinels"),
                          f"expected raw numbers such as [65535, -9999], found {found(item)}")
            continue
        problem = out_of_type_range(value, data_type) if data_type is not None else None
        if problem:
            sec.ck.report(item.line, sec.path_of("sentinels"), problem)
            continue
        values.append(float(value))
    return tuple(values)


def out_of_type_range(value: float, data_type: DataType) -> str | None:
    """Why raw ``value`` can never come from a ``data_type`` channel, or None."""
    limits = data_type.integer_range
    if limits is None:
        return None
    low, high = limits
    if isinstance(value, float) and not value.is_integer():
        return f"{value:g} can never be read from {article(data_type.value)} (whole numbers only)"
    if low <= value <= high:
        return None
    hint = ""
    if data_type.value.startswith("int") and 0 <= value < 2 * (high + 1):
        hint = f"; the same bits read as {data_type.value} are {int(value) - 2 * (high + 1)}"
    return f"{value:g} can never be read from {article(data_type.value)} ({low}..{high}){hint}"
