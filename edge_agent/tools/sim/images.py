"""Register images of the shipped instrument profiles, for simulators (demo, tests).

Each function lays out what a real instrument of that profile holds, with ``struct`` on
the byte layout the profile declares, independently of the agent's decoder. A whole
image is written with one ``SimServer.set_words`` call, which the server applies
atomically, so a poll never sees half an analysis.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import IntEnum

GC_COMPONENTS = ("benzene", "toluene", "ethylbenzene", "xylenes")
FTIR_COMPONENTS = ("hcl", "hf", "nh3", "so2", "no", "no2", "n2o", "co", "co2", "ch4", "h2o",
                   "c2h4", "hcho", "hcn", "cos", "cs2", "c2h2", "c2h6", "c3h8", "ch3oh",
                   "c6h6", "c7h8", "sf6", "nf3")
DETECTOR_GASES = ("o2", "co", "h2s", "lel")


def float32_words(value: float, order: str = "ABCD") -> list[int]:
    """Two registers holding ``value`` as float32, ABCD or CDAB."""
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return [high, low] if order == "ABCD" else [low, high]


def uint32_words(value: int, order: str = "ABCD") -> list[int]:
    high, low = value >> 16 & 0xFFFF, value & 0xFFFF
    return [high, low] if order == "ABCD" else [low, high]


@dataclass(frozen=True)
class GcAnalysis:
    """One completed analysis of a generic-gc instrument."""

    cycle: int
    stream: int
    finished_at: datetime  # instrument local time (naive fields are written)
    values: Sequence[float]  # one per GC_COMPONENTS, ppb
    status: int = 0


def gc_image(analysis: GcAnalysis) -> list[int]:
    """Holding registers 0..19 of generic-gc (drivers/gc/profile.yaml)."""
    when = analysis.finished_at
    words = [analysis.status, analysis.cycle & 0xFFFF, analysis.stream, when.year, when.month,
             when.day, when.hour, when.minute, when.second, 0, 0, 0]
    for value in analysis.values:
        words += float32_words(value, "CDAB")
    return words


@dataclass(frozen=True)
class FtirMeasurement:
    """One measurement of a generic-ftir analyser."""

    measured_at: datetime
    values: Sequence[float]  # one per FTIR_COMPONENTS
    status: int = 0


def ftir_image(measurement: FtirMeasurement) -> list[int]:
    """Input registers 0..57 of generic-ftir (drivers/ftir/profile.yaml)."""
    stamp = int(measurement.measured_at.timestamp())
    words = uint32_words(stamp) + [measurement.status] + [0] * 7
    for value in measurement.values:
        words += float32_words(value, "ABCD")
    return words


class DetectorMode(IntEnum):
    """A generic-gas-detector's state register (drivers/gas_detector/profile.yaml)."""

    NORMAL = 0
    WARM_UP = 1
    FAULT = 2
    CALIBRATION = 3


@dataclass(frozen=True)
class DetectorState:
    """What a generic-gas-detector shows: raw counts per gas (65535 = broken sensor)."""

    o2_tenths: int = 209
    co_ppm: int = 0
    h2s_tenths: int = 0
    lel: int = 0
    state: int = DetectorMode.NORMAL
    sensor_faults: int = 0  # bit per gas, in DETECTOR_GASES order
    model: str = "MGD4"


def detector_image(state: DetectorState) -> list[int]:
    """Holding registers 0..19 of generic-gas-detector (drivers/gas_detector)."""
    text = state.model.encode("ascii")[:8].ljust(8, b"\0")
    model = [text[i] << 8 | text[i + 1] for i in range(0, 8, 2)]
    return [state.state, state.sensor_faults, state.o2_tenths, state.co_ppm,
            state.h2s_tenths, state.lel] + [0] * 10 + model


def local_time(moment: datetime, utc_offset_min: int) -> datetime:
    """``moment`` as an instrument running at ``utc_offset_min`` shows it."""
    return moment.astimezone(timezone(timedelta(minutes=utc_offset_min)))
