"""Simulated station instruments for the demo: a GC and an FTIR on Modbus TCP, two gas
detectors on Modbus RTU over a pseudo-terminal pair, each serving the register map of its
shipped profile (generic-gc, generic-ftir, generic-gas-detector; see sim/images.py).

The GC completes an analysis every ``gc_cycle_s`` on streams 1 and 2 in turn and runs on
Beijing time (UTC+8), as many station GCs do; the FTIR finishes a measurement every
``ftir_cycle_s`` and takes a background spectrum every fifth time; detector 2 warms up for
its first ``warmup_s`` seconds.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass

from edge_agent_drivers.modbus.settings import RegisterKind

from edge_agent.model import utc_now
from edge_agent.tools.sim.images import (
    FTIR_COMPONENTS,
    GC_COMPONENTS,
    DetectorMode,
    DetectorState,
    FtirMeasurement,
    GcAnalysis,
    detector_image,
    ftir_image,
    gc_image,
    local_time,
)
from edge_agent.tools.sim.models import FtirModel
from edge_agent.tools.sim.ptypair import PtyPair
from edge_agent.tools.sim.simserver import SimServer, SimUnit

GC_UTC_OFFSET_MIN = 480  # the demo GC shows Beijing time
DETECTOR_UNITS = (1, 2)


@dataclass
class DemoEndpoints:
    """Where the simulated instruments can be reached."""

    gc_port: int
    ftir_port: int
    detector_serial_port: str


class DemoInstruments:
    """Starts, animates and stops the demo's simulated instruments."""

    def __init__(self, gc_cycle_s: float = 8.0, ftir_cycle_s: float = 4.0,
                 warmup_s: float = 10.0, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._gc_cycle_s, self._ftir_cycle_s, self._warmup_s = gc_cycle_s, ftir_cycle_s, warmup_s
        self._stop = threading.Event()
        self._pty = PtyPair()
        self.gc = SimServer([SimUnit(1)])
        self.ftir = SimServer([SimUnit(1)])
        self.detectors = SimServer([SimUnit(unit) for unit in DETECTOR_UNITS],
                                   serial_port=self._pty.device_path, baudrate=9600)
        self._thread = threading.Thread(target=self._animate, daemon=True, name="demo-sim")
        self._gc_cycle = 0
        self._ftir_count = 0
        self._started = time.monotonic()

    def start(self) -> DemoEndpoints:
        for server in (self.gc, self.ftir, self.detectors):
            server.start()
        self._new_gc_analysis()
        self._new_ftir_measurement()
        self._update_detectors()
        self._thread.start()
        return DemoEndpoints(self.gc.tcp_port, self.ftir.tcp_port, self._pty.agent_path)

    def _animate(self) -> None:
        next_gc = time.monotonic() + self._gc_cycle_s
        next_ftir = time.monotonic() + self._ftir_cycle_s
        while not self._stop.wait(0.5):
            now = time.monotonic()
            self._update_detectors()
            if now >= next_gc:
                next_gc += self._gc_cycle_s
                self._new_gc_analysis()
            if now >= next_ftir:
                next_ftir += self._ftir_cycle_s
                self._new_ftir_measurement()

    def _wave(self) -> float:
        return math.sin((time.monotonic() - self._started) / 20.0)

    def _new_gc_analysis(self) -> None:
        self._gc_cycle += 1
        values = [round(0.5 + index * 0.7 + self._rng.uniform(0, 0.2), 3)
                  for index, _ in enumerate(GC_COMPONENTS)]
        finished = local_time(utc_now(), GC_UTC_OFFSET_MIN).replace(tzinfo=None)
        analysis = GcAnalysis(self._gc_cycle, 1 + (self._gc_cycle - 1) % 2, finished, values)
        self.gc.set_words(1, RegisterKind.HOLDING, 0, gc_image(analysis))

    def _new_ftir_measurement(self) -> None:
        self._ftir_count += 1
        wave = self._wave()
        values = [round(max(0.0, (index + 1) * 1.5 * (1 + 0.3 * wave)
                            + self._rng.gauss(0, 0.05)), 3)
                  for index, _ in enumerate(FTIR_COMPONENTS)]
        background = 1 << FtirModel.STATUS_BITS["background"]
        status = background if self._ftir_count % 5 == 0 else 0
        measurement = FtirMeasurement(utc_now(), values, status)
        self.ftir.set_words(1, RegisterKind.INPUT, 0, ftir_image(measurement))

    def _update_detectors(self) -> None:
        wave = self._wave()
        warming = time.monotonic() - self._started < self._warmup_s
        for unit in DETECTOR_UNITS:
            state = DetectorState(
                o2_tenths=209 - unit, co_ppm=max(0, int(5 * unit * (1 + 0.2 * wave))),
                h2s_tenths=max(0, int(10 * (1 + 0.3 * wave) + self._rng.gauss(0, 1))),
                lel=0, state=DetectorMode.WARM_UP if warming and unit == 2
                else DetectorMode.NORMAL)
            self.detectors.set_words(unit, RegisterKind.HOLDING, 0, detector_image(state))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for server in (self.gc, self.ftir, self.detectors):
            server.stop()
        self._pty.close()
