"""``edge-agent simulate FILE``: serve simulated instruments of the shipped profiles, many
devices in one process, for demos, development and load.

One ``SimServer`` (a real pymodbus server, ``edge_agent.tools.sim.simserver``) per server in
the file, each with its devices as unit ids. A loop advances simulated time and writes
what each model (``models.py``) holds at that moment into its unit: a new analysis or
measurement as one atomic block, live registers whenever they change.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from edge_agent.config.errors import ConfigError
from edge_agent.stopsignals import SignalEvent
from edge_agent.tools.sim.models import ENRON_RANGES, Image, Model
from edge_agent.tools.sim.ptypair import PtyPair
from edge_agent.tools.sim.ranges import ranges_text
from edge_agent.tools.sim.simconfig import DeviceSpec, ServerSpec, SimConfig, load_sim_config
from edge_agent.tools.sim.simserver import SimServer, SimUnit

EXIT_OK, EXIT_USAGE, EXIT_LINK = 0, 2, 4
TICK_S = 0.1  # how often simulated time is advanced and written (wall-clock seconds)
UNIT_SIZE = {"daniel-enron-gc": 8000}  # addresses per table; 1024 for the others
# Technician-facing text printed at start, in one place.
SERVED = "values at {values}{enron}; addresses 0-{last} of every table answer (0 where no value)"
ENRON_NOTE = " (32-bit Enron registers: {ranges})"


@dataclass
class _Served:
    """A device being served, and what was last written into its unit."""

    spec: DeviceSpec
    model: Model
    server: SimServer
    result_id: int | None = -1
    live: Image = field(default_factory=dict)


class Simulation:
    """The servers and devices of one simulate file. ``step`` writes the models' state at
    the current simulated time; ``clock`` and ``started`` are for tests."""

    def __init__(self, config: SimConfig, *, speed: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 started: datetime | None = None) -> None:
        self.config = config
        self._speed = speed
        self._clock = clock
        self._origin = clock()
        self.started = started or datetime.now(UTC)
        self.servers: dict[str, SimServer] = {}
        self.where: dict[str, str] = {}  # server name -> what a master connects to
        self._ptys: list[PtyPair] = []
        self._devices: list[_Served] = []

    def start(self) -> Simulation:
        """Open every server (OSError, ValueError: cannot listen or open a port) with
        the devices' first state already in place."""
        try:
            for spec in self.config.servers:
                self._start_server(spec)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_server(self, spec: ServerSpec) -> None:
        devices = [d for d in self.config.devices if d.server == spec.name]
        units = [SimUnit(d.unit_id, size=UNIT_SIZE.get(d.profile, 1024),
                         enron=ENRON_RANGES if d.profile == "daniel-enron-gc" else ())
                 for d in devices]
        path = spec.serial_port
        if spec.pty:
            pty = PtyPair()
            self._ptys.append(pty)
            path = pty.device_path
        server = SimServer(units, tcp_port=spec.tcp_port, serial_port=path,
                           baudrate=spec.baudrate, protocol=spec.protocol,
                           host=spec.host or "127.0.0.1")
        for device in devices:
            self._devices.append(_Served(device, device.model(self.started), server))
        self.step()  # the first state is there before the first master asks
        self.servers[spec.name] = server.start()
        self.where[spec.name] = (
            f"{spec.protocol.value} on {spec.host}:{server.tcp_port}" if spec.tcp_port
            is not None else f"{spec.protocol.value} on "
            f"{self._ptys[-1].agent_path if spec.pty else path} ({spec.baudrate} baud)")

    def served_ranges(self, device_id: str) -> str:
        """The registers the device's unit answers (as its model fills them), by table:
        what ``run_simulate`` prints so a station file can be checked against it."""
        served = next(d for d in self._devices if d.spec.id == device_id)
        snapshot = served.model.snapshot(0.0)
        tables: dict[str, list[int]] = {}
        for kind, address in sorted({**snapshot.result, **snapshot.live},
                                    key=lambda key: (key[0].value, key[1])):
            tables.setdefault(kind.value, []).append(address)
        unit = served.server.units[served.spec.unit_id]
        enron = ", ".join(f"{span.start}-{span.stop - 1}" for span in unit.enron)
        return SERVED.format(values=ranges_text(tables), last=unit.size - 1,
                             enron=ENRON_NOTE.format(ranges=enron) if enron else "")

    @property
    def now_s(self) -> float:
        """Simulated seconds since the start."""
        return (self._clock() - self._origin) * self._speed

    def step(self) -> None:
        t_s = self.now_s
        for served in self._devices:
            snapshot = served.model.snapshot(t_s)
            if snapshot.result_id != served.result_id:
                served.server.set_image(served.spec.unit_id,
                                        {**snapshot.result, **snapshot.live})
            elif snapshot.live != served.live:
                served.server.set_image(served.spec.unit_id, snapshot.live)
            served.result_id, served.live = snapshot.result_id, snapshot.live

    def run(self, stop: threading.Event | SignalEvent, tick_s: float = TICK_S) -> None:
        while not stop.wait(tick_s):
            self.step()

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()
        for pty in self._ptys:
            pty.close()
        self._ptys.clear()


def run_simulate(args: argparse.Namespace) -> int:
    """The command: check the file, serve until Ctrl-C/SIGTERM, return the exit status."""
    try:
        config = load_sim_config(args.config)
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        print(f"{args.config}: {len(err.issues)} problem{'s' * (len(err.issues) != 1)} "
              "found; nothing was started", file=sys.stderr)
        return EXIT_USAGE
    if args.check:
        print(f"OK: {args.config}: {len(config.devices)} devices on "
              f"{len(config.servers)} servers")
        return EXIT_OK
    logging.getLogger("pymodbus").setLevel(logging.WARNING)  # no line per connection
    stop = SignalEvent()  # set by the handlers: no lock to deadlock on (stopsignals.py)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        simulation = Simulation(config, speed=args.speed).start()
    except (OSError, ValueError, TimeoutError) as err:
        print(f"edge-agent simulate: cannot serve: {err}", file=sys.stderr)
        return EXIT_LINK
    try:
        for spec in config.servers:
            names = ", ".join(f"{d.id} (unit {d.unit_id}, {d.profile})"
                              for d in config.devices if d.server == spec.name)
            print(f"{spec.name}: {simulation.where[spec.name]}: {names or 'no devices'}")
            for device in (d for d in config.devices if d.server == spec.name):
                print(f"  unit {device.unit_id} ({device.id}): "
                      f"{simulation.served_ranges(device.id)}")
        print(f"simulating {len(config.devices)} devices from {args.config} "
              f"(speed {args.speed:g}); Ctrl-C stops", flush=True)
        simulation.run(stop)
    finally:
        simulation.stop()
    return EXIT_OK
