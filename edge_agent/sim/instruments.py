"""Simulated station instruments for the demo: a GC and an FTIR on Modbus TCP, two gas
detectors on Modbus RTU over a pseudo-terminal pair. Values move so a newcomer can see
live data; the register maps match the config the demo writes (see demo.py).
"""

from __future__ import annotations

import math
import random
import struct
import threading
import time
from dataclasses import dataclass

from edge_agent.config.schema import RegisterKind
from edge_agent.modbus.transport import SimServer, SimUnit
from edge_agent.sim.ptypair import PtyPair

GC_COMPONENTS = ("benzene", "toluene", "ethylbenzene", "xylene")
FTIR_COMPONENTS = ("nh3", "hcl", "so2", "no", "co", "ch4")
DETECTOR_GASES = {1: ("h2s", 5.0), 2: ("co", 20.0)}  # unit id -> (gas, typical ppm)


def float_words(value: float, word_order: str) -> list[int]:
    """Two registers holding ``value`` as float32 in ABCD or CDAB order."""
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return [high, low] if word_order == "ABCD" else [low, high]


@dataclass
class DemoEndpoints:
    """Where the simulated instruments can be reached."""

    gc_port: int
    ftir_port: int
    detector_serial_port: str


class DemoInstruments:
    """Starts, animates and stops the demo's simulated instruments."""

    def __init__(self, gc_cycle_s: float = 6.0, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._gc_cycle_s = gc_cycle_s
        self._stop = threading.Event()
        self._pty = PtyPair()
        self.gc = SimServer([SimUnit(1)])
        self.ftir = SimServer([SimUnit(1)])
        self.detectors = SimServer([SimUnit(1), SimUnit(2)],
                                   serial_port=self._pty.device_path, baudrate=9600)
        self._thread = threading.Thread(target=self._animate, daemon=True, name="demo-sim")
        self._gc_cycle = 0

    def start(self) -> DemoEndpoints:
        for server in (self.gc, self.ftir, self.detectors):
            server.start()
        self._update(time.monotonic(), first=True)
        self._thread.start()
        return DemoEndpoints(self.gc.tcp_port, self.ftir.tcp_port, self._pty.agent_path)

    def _animate(self) -> None:
        next_gc = time.monotonic() + self._gc_cycle_s
        while not self._stop.wait(1.0):
            now = time.monotonic()
            self._update(now, first=False)
            if now >= next_gc:
                next_gc += self._gc_cycle_s
                self._new_gc_cycle()

    def _update(self, now: float, first: bool) -> None:
        wave = math.sin(now / 20.0)
        words: list[int] = []
        for index, _ in enumerate(FTIR_COMPONENTS):
            value = max(0.0, (index + 1) * 1.5 * (1 + 0.3 * wave) + self._rng.gauss(0, 0.05))
            words += float_words(value, "ABCD")
        self.ftir.set_words(1, RegisterKind.INPUT, 0, words)
        self.ftir.set_words(1, RegisterKind.INPUT, 20, [0])  # status: 0 = measuring
        for unit_id, (_, typical) in DETECTOR_GASES.items():
            tenths = int(max(0.0, typical * (1 + 0.2 * wave) + self._rng.gauss(0, 0.3)) * 10)
            self.detectors.set_words(unit_id, RegisterKind.HOLDING, 0, [tenths, 0])
        if first:
            self._new_gc_cycle()

    def _new_gc_cycle(self) -> None:
        self._gc_cycle += 1
        words: list[int] = []
        for index, _ in enumerate(GC_COMPONENTS):
            words += float_words(round(0.5 + index * 0.7 + self._rng.uniform(0, 0.2), 3), "CDAB")
        self.gc.set_words(1, RegisterKind.HOLDING, 0, words)
        self.gc.set_words(1, RegisterKind.HOLDING, 8, [self._gc_cycle % 65536, 1])

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for server in (self.gc, self.ftir, self.detectors):
            server.stop()
        self._pty.close()
