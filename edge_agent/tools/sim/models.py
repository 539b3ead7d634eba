"""Instruments that change over time, for ``edge-agent simulate``: a GC completing analyses
on its streams, an FTIR measuring, gas detectors warming up, drifting and failing.

Each model is a pure function of simulated time (seconds since the simulation started):
``snapshot(t_s)`` says what the instrument's registers hold at that moment, laid out by
``images.py`` exactly as the shipped profiles read them. A ``Snapshot`` has two parts:

* ``result``: the block of a completed analysis or measurement, identified by
  ``result_id``. The server writes it once, when the id changes, in one atomic step with
  the live part, so a poll never sees half an analysis, and a new-result flag a master
  has cleared is not set again until the next analysis;
* ``live``: registers that follow the instrument's state (status words, live readings),
  written whenever they change.

Values come from ``Signal``: a base, a ramp, and noise that is deterministic for a seed,
so two runs with the same configuration serve the same numbers.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from edge_agent_drivers.modbus import config_channels
from edge_agent_drivers.modbus.settings import RegisterKind

from edge_agent.tools.sim.images import (
    DETECTOR_GASES,
    FTIR_COMPONENTS,
    GC_COMPONENTS,
    DetectorMode,
    DetectorState,
    FtirMeasurement,
    GcAnalysis,
    detector_image,
    ftir_image,
    gc_image,
)

HOLDING, INPUT = RegisterKind.HOLDING, RegisterKind.INPUT
Image = Mapping[tuple[RegisterKind, int], int]  # (table, address) -> word (Enron: 32 bits)
DANIEL_COMPONENTS = ("methane", "ethane", "propane", "nitrogen", "co2")
SENTINEL = 65535  # a detector's reading while its sensor is broken


@dataclass(frozen=True)
class Signal:
    """``base`` + ``ramp_per_h`` per hour + Gaussian noise (standard deviation ``noise``),
    kept within ``low``..``high``."""

    base: float = 0.0
    ramp_per_h: float = 0.0
    noise: float = 0.0
    low: float | None = None
    high: float | None = None

    def at(self, t_s: float, key: str) -> float:
        """The value at ``t_s``; ``key`` names the draw (same key, same noise)."""
        value = self.base + self.ramp_per_h * t_s / 3600
        if self.noise:
            value += random.Random(key).gauss(0.0, self.noise)
        if self.low is not None:
            value = max(self.low, value)
        if self.high is not None:
            value = min(self.high, value)
        return value


@dataclass(frozen=True)
class Fault:
    """A condition from ``from_s`` to ``to_s`` (simulated seconds); ``channel`` narrows
    it to one sensor where the kind allows."""

    kind: str
    from_s: float
    to_s: float
    channel: str | None = None

    def active(self, t_s: float) -> bool:
        return self.from_s <= t_s < self.to_s


@dataclass(frozen=True)
class Snapshot:
    """What the registers hold at one moment (see the module docstring)."""

    result_id: int | None
    result: Image
    live: Image


@dataclass(frozen=True)
class Common:
    """What every model is given: identity, clock and the configured behaviour."""

    name: str
    started: datetime  # wall-clock time at simulated second 0, UTC
    utc_offset_min: int = 0
    values: Mapping[str, Signal] = field(default_factory=dict)
    faults: tuple[Fault, ...] = ()
    warmup_s: float = 0.0
    seed: str = ""

    def local(self, t_s: float) -> datetime:
        """The instrument's own clock (local time, naive) at ``t_s``."""
        zone = timezone(timedelta(minutes=self.utc_offset_min))
        return (self.started + timedelta(seconds=t_s)).astimezone(zone).replace(tzinfo=None)

    def value(self, name: str, default: Signal, t_s: float, draw: object) -> float:
        return self.values.get(name, default).at(t_s, f"{self.seed}:{name}:{draw}")

    def faulty(self, kind: str, t_s: float, channel: str | None = None) -> bool:
        return any(f.kind == kind and f.active(t_s) and (channel is None or f.channel in
                                                         (None, channel))
                   for f in self.faults)


def _bits(common: Common, t_s: float, bits: Mapping[str, int]) -> int:
    word = 0
    for kind, bit in bits.items():
        if kind == "warmup" and t_s < common.warmup_s or common.faulty(kind, t_s):
            word |= 1 << bit
    return word


def _words(kind: RegisterKind, start: int, words: list[int]) -> dict[tuple[RegisterKind, int],
                                                                     int]:
    return {(kind, start + offset): word for offset, word in enumerate(words)}


@dataclass(frozen=True)
class GcModel:
    """generic-gc: an analysis every ``cycle_s`` (the first at second 0), on ``streams``
    in turn; ``cycle`` counts them. Status bits: fault, calibrating, maintenance, warm-up."""

    common: Common
    cycle_s: float = 300.0
    streams: tuple[int, ...] = (1,)
    STATUS_BITS = {"fault": 0, "calibrating": 1, "maintenance": 2, "warmup": 3}
    DEFAULT = Signal(base=2.0, noise=0.1, low=0.0)
    FAULT_KINDS = ("fault", "calibrating", "maintenance")

    def snapshot(self, t_s: float) -> Snapshot:
        number = int(t_s // self.cycle_s) + 1
        done_s = (number - 1) * self.cycle_s
        values = [self.common.value(name, self.DEFAULT, done_s, number)
                  for name in GC_COMPONENTS]
        analysis = GcAnalysis(number, self.streams[(number - 1) % len(self.streams)],
                              self.common.local(done_s), values)
        words = gc_image(analysis)
        status = _bits(self.common, t_s, self.STATUS_BITS)
        return Snapshot(number, _words(HOLDING, 1, words[1:]), {(HOLDING, 0): status})


@dataclass(frozen=True)
class DanielGcModel:
    """daniel-enron-gc: like GcModel, with a new-result flag (``new_data``, set with each
    analysis, cleared by the master) and Daniel/Enron 32-bit registers."""

    common: Common
    cycle_s: float = 300.0
    streams: tuple[int, ...] = (1,)
    STATUS_BITS = {"fault": 0, "calibrating": 1}
    DEFAULTS = {"methane": Signal(90.0, noise=0.2), "ethane": Signal(5.0, noise=0.05),
                "propane": Signal(1.5, noise=0.02), "nitrogen": Signal(2.0, noise=0.02),
                "co2": Signal(1.0, noise=0.02), "heating_value": Signal(38.5, noise=0.1)}
    FAULT_KINDS = ("fault", "calibrating")

    def snapshot(self, t_s: float) -> Snapshot:
        number = int(t_s // self.cycle_s) + 1
        done_s = (number - 1) * self.cycle_s
        floats = {name: self.common.value(name, default, done_s, number)
                  for name, default in self.DEFAULTS.items()}
        result = {(HOLDING, 3001): 1,  # new_data: the master clears it
                  (HOLDING, 3003): self.streams[(number - 1) % len(self.streams)],
                  (HOLDING, 5001): int(self.cycle_s)}
        for offset, name in enumerate(DANIEL_COMPONENTS):
            result[(HOLDING, 7001 + offset)] = _float_bits(floats[name])
        result[(HOLDING, 7020)] = _float_bits(floats["heating_value"])
        return Snapshot(number, result,
                        {(HOLDING, 3002): _bits(self.common, t_s, self.STATUS_BITS)})


def _float_bits(value: float) -> int:
    return struct.unpack(">I", struct.pack(">f", value))[0]


@dataclass(frozen=True)
class FtirModel:
    """generic-ftir: a measurement every ``cycle_s``, stamped with its time; every
    ``background_every``-th one is taken during a background spectrum (status bit 0)."""

    common: Common
    cycle_s: float = 30.0
    background_every: int = 0
    STATUS_BITS = {"background": 0, "calibrating": 1, "alarm": 2, "concentration_alarm": 8}
    DEFAULT = Signal(base=1.0, noise=0.05, low=0.0)
    FAULT_KINDS = ("background", "calibrating", "alarm", "concentration_alarm")

    def snapshot(self, t_s: float) -> Snapshot:
        number = int(t_s // self.cycle_s) + 1
        done_s = (number - 1) * self.cycle_s
        values = [self.common.value(name, self.DEFAULT, done_s, number)
                  for name in FTIR_COMPONENTS]
        status = _bits(self.common, t_s, self.STATUS_BITS)
        if self.background_every and number % self.background_every == 0:
            status |= 1
        measured = self.common.started + timedelta(seconds=done_s)
        words = ftir_image(FtirMeasurement(measured.replace(microsecond=0), values))
        result = _words(INPUT, 0, words)
        del result[(INPUT, 2)]
        return Snapshot(number, result, {(INPUT, 2): status})


@dataclass(frozen=True)
class DetectorModel:
    """generic-gas-detector: live readings drawn every ``update_s``; warm-up for
    ``warmup_s``; ``broken`` (sentinel and fault bit), ``sensor_fault`` (fault bit) per
    gas; ``fault`` and ``calibrating`` for the whole detector."""

    common: Common
    update_s: float = 1.0
    model: str = "MGD4"
    DEFAULTS = {"o2": Signal(20.9, noise=0.05, low=0.0), "co": Signal(0.0, noise=0.5, low=0.0),
                "h2s": Signal(0.0, noise=0.1, low=0.0), "lel": Signal(0.0, noise=0.3, low=0.0)}
    SCALES = {"o2": 10, "co": 1, "h2s": 10, "lel": 1}  # raw counts per unit, as the profile
    FAULT_KINDS = ("broken", "sensor_fault", "fault", "calibrating")

    def snapshot(self, t_s: float) -> Snapshot:
        draw = int(t_s // self.update_s)
        raw: dict[str, int] = {}
        faults = 0
        for bit, gas in enumerate(DETECTOR_GASES):
            value = self.common.value(gas, self.DEFAULTS[gas], t_s, draw)
            raw[gas] = min(SENTINEL - 1, max(0, round(value * self.SCALES[gas])))
            if self.common.faulty("broken", t_s, gas):
                raw[gas] = SENTINEL
            if self.common.faulty("broken", t_s, gas) or \
                    self.common.faulty("sensor_fault", t_s, gas):
                faults |= 1 << bit
        state = DetectorMode.WARM_UP if t_s < self.common.warmup_s else \
            DetectorMode.FAULT if self.common.faulty("fault", t_s) else \
            DetectorMode.CALIBRATION if self.common.faulty("calibrating", t_s) else \
            DetectorMode.NORMAL
        image = detector_image(DetectorState(o2_tenths=raw["o2"], co_ppm=raw["co"],
                                             h2s_tenths=raw["h2s"], lel=raw["lel"],
                                             state=state, sensor_faults=faults,
                                             model=self.model))
        return Snapshot(None, {}, _words(HOLDING, 0, image))


Model = GcModel | DanielGcModel | FtirModel | DetectorModel
# What each supported profile's model simulates: its channels with values, its faults.
PROFILES: dict[str, tuple[type, tuple[str, ...]]] = {
    "generic-gc": (GcModel, GC_COMPONENTS),
    "daniel-enron-gc": (DanielGcModel, tuple(DanielGcModel.DEFAULTS)),
    "generic-ftir": (FtirModel, FTIR_COMPONENTS),
    "generic-gas-detector": (DetectorModel, DETECTOR_GASES),
}
# daniel-enron-gc's 32-bit ranges, as the Modbus reader knows them
ENRON_RANGES = tuple(range(first, last + 1) for first, last in config_channels.ENRON_RANGES)
