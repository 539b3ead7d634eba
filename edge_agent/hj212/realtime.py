"""One stored sample as an HJ 212 real-time data record (CN 2011): pure, no I/O.

``DataTime`` is the instrument's own time when it gave one (a GC's or FTIR's analysis
time), else the acquisition time; both in the station's local time, as HJ 212 times are
(the standards have no time zone field; a platform reads local time). Each mapped channel
becomes ``code-Rtd`` (in the platform's unit) and ``code-Flag`` (flags.py); a channel the
platform's ``channels:`` do not name is not sent. Minute, hourly and daily statistics
(2051/2061/2031) are built from the same ``Mapping`` by the next increment.

Units: a reading is converted to the platform's unit when both are of one family (mass
concentration ng/µg/mg per m3, mixing ratio ppt/ppb/ppm); a reading without a unit is
taken as already in the platform's unit. Anything else (ppm to mg/m3 needs the molar mass
and the temperature basis the platform uses) cannot be converted here: the value is
left out and flagged ``D``, never sent in a unit the platform does not expect.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge_agent.config.schema import Hj212Channel
from edge_agent.hj212.codes import CodeTable
from edge_agent.hj212.cp import Factor, build_region, format_time, realtime_factor
from edge_agent.hj212.flags import flag_for, worst
from edge_agent.hj212.periods import to_local
from edge_agent.model import Quality

REALTIME_CN = "2011"

# unit -> (family, factor to the family's base unit)
_UNITS: dict[str, tuple[str, float]] = {
    "ng/m3": ("mass", 1e-3), "ug/m3": ("mass", 1.0), "µg/m3": ("mass", 1.0),
    "μg/m3": ("mass", 1.0), "mg/m3": ("mass", 1e3), "g/m3": ("mass", 1e6),
    "ppt": ("ratio", 1e-3), "ppb": ("ratio", 1.0), "ppm": ("ratio", 1e3),
}


class UnitMismatch(ValueError):
    """A reading's unit cannot be converted to the platform's."""


def convert(value: float, unit: str, target: str) -> float:
    """``value`` in ``unit`` expressed in ``target``; UnitMismatch when not convertible."""
    unit, target = _normal(unit), _normal(target)
    if not unit or unit == target:
        return value
    have, want = _UNITS.get(unit), _UNITS.get(target)
    if have is None or want is None or have[0] != want[0]:
        raise UnitMismatch(f"cannot convert {unit} to {target}")
    # 15 significant digits: drops the scaling's binary rounding (0.654 ug/m3 would be
    # sent as 0.0006540000000000001 mg/m3 by a code without decimals), keeps the rest
    return float(f"{value * have[1] / want[1]:.15g}")


def _normal(unit: str) -> str:
    return unit.strip().replace("³", "3").replace("Ug/", "ug/").replace("UG/", "ug/")


@dataclass(frozen=True)
class DeviceMap:
    """What one platform receives of one device: (channel, code, platform unit, decimals)
    in the order of the station file."""

    channels: tuple[tuple[str, str, str, int | None], ...]


def mappings(channels: tuple[Hj212Channel, ...], table: CodeTable) -> dict[str, DeviceMap]:
    """Device id -> what the platform receives of it (the unit: the channel's, else the
    code table's)."""
    found: dict[str, list[tuple[str, str, str, int | None]]] = {}
    for item in channels:
        code = table.get(item.code)
        unit = item.unit or (code.unit if code else "")
        decimals = code.decimals if code else None
        found.setdefault(item.device, []).append((item.channel, item.code, unit, decimals))
    return {device: DeviceMap(tuple(items)) for device, items in found.items()}


@dataclass(frozen=True)
class Record:
    """The CP region of one 2011 record; ``acquired_unix``: when the agent acquired the
    sample (unix s; the caller tells a late upload by it); ``mismatched``: channels left
    out for their unit (the caller logs them once)."""

    cp: str
    data_time: datetime
    acquired_unix: float
    mismatched: tuple[str, ...] = ()


def _aware(iso_utc: str) -> datetime:
    return datetime.fromisoformat(iso_utc.replace("Z", "+00:00"))


def local_time(iso_utc: str) -> datetime:
    """An ISO 8601 UTC time from a stored sample as naive local time (HJ 212's).
    ValueError for one with no local time (year 9999 in a zone east of UTC)."""
    return to_local(_aware(iso_utc))


def reading_value(reading: Mapping[str, Any]) -> tuple[float | None, str]:
    """(number, HJ 212 flag) of one reading of a stored sample body: a bool, text or
    missing value is no number; the flag comes from its quality and reason (flags.py).
    The 2011 record and the statistics (statsstore.py) both read a reading through it,
    so a sample's record and its period's statistics cannot read it differently."""
    flag = flag_for(Quality(reading.get("quality", "BAD")), reading.get("reason"))
    value = reading.get("value")
    number = float(value) if isinstance(value, int | float) and \
        not isinstance(value, bool) else None
    return number, flag


def in_platform_unit(number: float, flag: str, reading: Mapping[str, Any],
                     unit: str) -> tuple[float | None, str]:
    """``number`` (of ``reading``, in its unit) in the platform's ``unit``; (None, the
    flag worsened to D) when the reading's unit cannot be converted to it."""
    try:
        return convert(number, str(reading.get("unit") or ""), unit), flag
    except UnitMismatch:
        return None, worst([flag, "D"])


def realtime_record(body: str, mapping: DeviceMap) -> Record | None:
    """The 2011 record of one stored sample (payload.encode_sample_body's JSON); None
    when the sample holds none of the mapped channels. ValueError: not a sample body."""
    sample = json.loads(body)
    values: Mapping[str, dict] = sample.get("values") or {}
    stamp = sample.get("instrument_time") or sample["acquired_at"]
    data_time = local_time(stamp)
    factors: list[Factor] = []
    mismatched: list[str] = []
    for channel, code, unit, decimals in mapping.channels:
        reading = values.get(channel)
        if reading is None:
            continue
        number, flag = reading_value(reading)
        if number is not None:
            number, flag = in_platform_unit(number, flag, reading, unit)
            if number is None:
                mismatched.append(channel)
        factors.append(realtime_factor(code, number, flag, decimals))
    if not factors:
        return None
    cp = build_region([("DataTime", format_time(data_time))], factors)
    return Record(cp, data_time, _aware(sample["acquired_at"]).timestamp(),
                  tuple(mismatched))
