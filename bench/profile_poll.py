"""CPU per reading on the poll -> append path: the real driver against a real simulator.

Run: ``.venv/bin/python bench/profile_poll.py [--polls 200] [--profile]``. Prints CPU
seconds per 1 000 readings (``time.process_time`` of this process), split into the polling
thread's (read, decode, judge, build the sample) and the rest (the outbox's writer thread:
encoding, SQL, commit), and, with ``--profile``,
the cProfile top list by own CPU time (``time.thread_time``) of the polling thread and
the outbox's writer thread together. Nothing here asserts a time (shared machines are noisy).

The load is W1-like: ``--devices`` Modbus TCP devices (unit ids of one simulated endpoint)
with ``--tags`` channels each (float32 in both word orders, scaled int16 counts, a uint32
counter and a status word with quality bits), polled one after another through the
poller's own poll step (retry layer, health bookkeeping) into the real outbox on a
temporary file (WAL, synchronous=FULL). The simulator runs in a child process, so its
CPU is not counted; the outbox's writer thread is, because committing is part of the path.
No forwarder runs: the figure is the cost before the broker.

``--split`` also times each ``driver.poll`` (thread CPU, around the call) and prints how
much of the polling thread's figure it is: the Modbus read, decoding, judging and building
the sample, apart from the poller's bookkeeping and the hand-over to the outbox.

``--baseline`` also times, each alone with the outbox idle, the bare pipeline's poll
(bench/bare_pipeline.py: pymodbus's own client reading the same registers, one struct
unpack) and ``driver.poll``, and prints their ratio: what the driver adds over pymodbus
(the agent's transport around it: the capped client, whole-word decoding, the answer's
checks; then decoding, judging and building the sample), on a quiet thread, a figure far
steadier than the sustained rate of a whole pipeline on a shared machine.

``--alarms N`` gives each device high and high-high rules (deadband, on-delay) on N of its
channels and hands every poll to the alarm engine, as the agent does when a station has
alarms (events go to a sink that keeps nothing); without it the poller gets no alarm hook,
which is what a station without alarms runs (docs/alarms.md, "Cost").
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing
import pstats
import struct
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

from edge_agent.alarms.engine import AlarmEngine
from edge_agent.config.loader import load_config
from edge_agent.config.schema import Retention
from edge_agent.driver import load_driver
from edge_agent.link_clients import open_link_client
from edge_agent.model import utc_now
from edge_agent.poller import LinkPoller
from edge_agent.store.outbox import Outbox


def _channels(tags: int) -> list[dict]:
    """``tags`` channels: mostly float32 (ABCD and CDAB), scaled int16, a uint32 counter
    and one status word whose bit 0 would flag the others (it stays clear)."""
    channels: list[dict] = [{"name": "status", "address": 0, "type": "uint16",
                             "quality_bits": {0: {"quality": "SUSPECT",
                                                  "reason": "calibrating"}}},
                            {"name": "cycle", "address": 1, "type": "uint32"}]
    address = 3
    for index in range(tags - len(channels)):
        if index % 5 == 4:
            channels.append({"name": f"count{index}", "address": address, "type": "int16",
                             "scale": 0.1, "unit": "ppm"})
            address += 1
        else:
            channels.append({"name": f"gas{index}", "address": address, "type": "float32",
                             "word_order": "CDAB" if index % 2 else "ABCD",
                             "unit": "mg/m3"})
            address += 2
    return channels[:tags]


def _image(channels: list[dict]) -> dict[int, int]:
    """Register words giving every channel a plausible value."""
    words: dict[int, int] = {0: 0, 1: 0, 2: 42}
    for index, channel in enumerate(channels[2:]):
        address = channel["address"]
        if channel["type"] == "int16":
            words[address] = 100 + index
            continue
        high, low = struct.unpack(">HH", struct.pack(">f", 0.1 * index + 0.635))
        pair = (low, high) if channel.get("word_order") == "CDAB" else (high, low)
        words[address], words[address + 1] = pair
    return words


def _serve(units: int, image: dict[int, int], reply: Connection) -> None:
    """Child process: one simulated Modbus TCP endpoint with ``units`` unit ids."""
    from edge_agent.tools.sim.simserver import SimServer, SimUnit

    server = SimServer([SimUnit(unit, holding=dict(image)) for unit in range(1, units + 1)],
                       tcp_port=0).start()
    reply.send(server.tcp_port)
    reply.recv()  # until the parent is done
    server.stop()


def _alarm_rules(channels: list[dict], count: int) -> dict:
    """High (with deadband and on-delay) and high-high rules on ``count`` gas channels."""
    names = [channel["name"] for channel in channels if channel["name"].startswith("gas")]
    return {name: {"high": {"limit": 50, "deadband": 1, "on_delay": 2}, "high_high": 80}
            for name in names[:count]}


def _station(path: Path, port: int, devices: int, channels: list[dict],
             alarms: int = 0) -> Path:
    rules = {"alarms": _alarm_rules(channels, alarms)} if alarms else {}
    doc = {
        "station": {"id": "bench"},
        "links": {"sim": {"type": "tcp", "host": "127.0.0.1", "port": port,
                          "timeout_ms": 2000}},
        "devices": [{"id": f"dev-{unit}", "link": "sim", "unit_id": unit, "interval_s": 1,
                     "channels": channels, **rules} for unit in range(1, devices + 1)],
        "store": {"path": str(path.parent / "outbox.sqlite3")},
        "mqtt": {"host": "127.0.0.1", "port": 1883},
        "health": {"enabled": False},
    }
    path.write_text(json.dumps(doc))
    return path


class _ThreadProfiles:
    """cProfile of every thread started while installed (the outbox's writer encodes and
    commits there); each measures its own thread's CPU time, not the wall clock."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []

    def install(self) -> None:
        threading.setprofile(self._first_event)

    def _first_event(self, *_args: object) -> None:
        profile = cProfile.Profile(time.thread_time)
        self.profiles.append(profile)
        profile.enable()  # replaces this hook in this thread


class _Discard:
    """An alarm sink that keeps nothing (the bench measures judging, not logging)."""

    def emit(self, events: object) -> None:
        pass


class _DriverClock:
    """Thread CPU spent inside the drivers' ``poll`` (``--split``)."""

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self.polls = 0

    def wrap(self, driver: object) -> None:
        poll = driver.poll  # type: ignore[attr-defined]

        def timed(link: object, now: object) -> object:
            started = time.thread_time()
            try:
                return poll(link, now)
            finally:
                self.cpu_s += time.thread_time() - started
                self.polls += 1

        driver.poll = timed  # type: ignore[attr-defined]


def _bare_poll_us(port: int, drivers: list, polls: int) -> float:
    """Thread CPU per poll of the bare pipeline's way (bench/bare_pipeline.py): pymodbus's
    own sync client reading each device's planned registers, then one struct unpack of
    the words, with nothing else; the same simulator, so a ratio against it says what
    the driver adds over pymodbus (its transport's checks, decoding, quality, the
    sample). Register reads only, as this profile's channels are."""
    from pymodbus.client import ModbusTcpClient

    for driver in drivers:
        for request in driver.requests:
            assert not request.register.is_bit and not request.enron, \
                "the baseline reads plain registers only"

    client = ModbusTcpClient("127.0.0.1", port=port, retries=0, timeout=2)
    client.connect()
    reads = [(client.read_input_registers if request.register.value == "input"
              else client.read_holding_registers, driver.device.unit_id, request.address,
              request.count, struct.Struct(f">{request.count}H"))
             for driver in drivers for request in driver.requests]
    try:
        for read, unit, address, count, words in reads:  # warm up: first answers
            words.pack(*read(address, count=count, device_id=unit).registers)
        started = time.thread_time()
        for _ in range(polls):
            for read, unit, address, count, words in reads:
                words.unpack(words.pack(*read(address, count=count,
                                              device_id=unit).registers))
        return 1e6 * (time.thread_time() - started) / (polls * len(drivers))
    finally:
        client.close()


def _driver_poll_us(client: object, drivers: list, polls: int) -> float:
    """Thread CPU per ``driver.poll`` with nothing else running (``_bare_poll_us``'s
    counterpart: the outbox's writer is idle by then). The class's ``poll``, not the
    instance's: ``--split`` wraps that one in a clock."""
    now = utc_now()  # the poller reads the clock outside driver.poll
    started = time.thread_time()
    for _ in range(polls):
        for driver in drivers:
            type(driver).poll(driver, client, now)
    return 1e6 * (time.thread_time() - started) / (polls * len(drivers))


def run(devices: int, tags: int, polls: int, profile: bool, top: int = 35,
        alarms: int = 0, wait: bool = False, split: bool = False,
        baseline: bool = False) -> None:
    channels = _channels(tags)
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(devices, _image(channels), child), daemon=True)
    server.start()
    port = parent.recv()
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(_station(Path(tmp) / "station.yaml", port, devices, channels,
                                      alarms))
        engine = AlarmEngine({d.id: d.alarms for d in config.devices}, _Discard(),
                             [d.id for d in config.devices]) if alarms else None
        threads = _ThreadProfiles()
        if profile:
            threads.install()
        outbox = Outbox(config.store.path, Retention(None, None, None))
        threading.setprofile(None)
        drivers = [load_driver(d) for d in config.devices]
        clock = _DriverClock()
        if split:
            for driver in drivers:
                clock.wrap(driver)
        poller = LinkPoller(config.links["sim"], drivers,
                            outbox, config.polling, threading.Event(), alarms=engine)
        client = open_link_client(config.links["sim"])
        try:
            for state in poller.devices:  # warm up: connect, plan, first commit
                state.next_due = time.monotonic()
                poller._poll(client, state)
            profiler = cProfile.Profile(time.thread_time) if profile else None
            clock.cpu_s, clock.polls = 0.0, 0
            started, started_thread = time.process_time(), time.thread_time()
            if profiler:
                profiler.enable()
            for _ in range(polls):
                for state in poller.devices:
                    # devices due together: each commit overlaps the next polls
                    # (edge_agent/pollstore.py); --wait settles after each poll, as a link
                    # that sleeps between its polls does
                    state.next_due = time.monotonic()
                    poller._poll(client, state)
                    if wait:
                        poller._samples.settle()
            poller._samples.settle()
            if profiler:
                profiler.disable()
            cpu_s = time.process_time() - started
            poll_s = time.thread_time() - started_thread
            stored = sum(state.samples_stored for state in poller.devices)
            split_s, split_polls = clock.cpu_s, clock.polls  # before the baseline's polls
            if baseline:  # both alone: no writer thread competing for the CPU
                bare_us = _bare_poll_us(port, drivers, polls)
                driver_us = _driver_poll_us(client, drivers, polls)
        finally:
            client.close()
            outbox.close()
    parent.send("stop")
    server.join(10)
    readings = polls * devices * tags
    assert stored == (polls + 1) * devices, f"{stored} samples stored"
    watched = len(_alarm_rules(channels, alarms))
    rules = f", alarm rules on {watched} channels each" if alarms else ", no alarms"
    rules += ", each commit waited for" if wait else ""
    print(f"{devices} devices x {tags} tags{rules}, {polls} polls each: {readings} readings, "
          f"{cpu_s:.2f} CPU s, {1000 * cpu_s / readings:.4f} CPU s per 1 000 readings "
          f"(polling thread {1000 * poll_s / readings:.4f}, outbox writer and the rest "
          f"{1000 * (cpu_s - poll_s) / readings:.4f})")
    if split and split_polls:
        print(f"polling thread split: driver.poll {1000 * split_s / readings:.4f} CPU s "
              f"per 1 000 readings ({1e6 * split_s / split_polls:.0f} us per poll), the "
              f"rest of the thread {1000 * (poll_s - split_s) / readings:.4f} "
              f"({1e6 * (poll_s - split_s) / split_polls:.0f} us per poll)")
    if baseline:
        print(f"baseline, each alone (no outbox): bare pymodbus read + unpack of the same "
              f"registers {bare_us:.1f} us per poll, driver.poll {driver_us:.1f} us: "
              f"{driver_us / bare_us:.2f}x")
    if profiler:
        for other in threads.profiles:
            other.disable()  # harmless from another thread: its stats are complete
        pstats.Stats(profiler, *threads.profiles).sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--tags", type=int, default=25)
    parser.add_argument("--polls", type=int, default=100, help="polls of each device")
    parser.add_argument("--profile", action="store_true", help="print a cProfile top list")
    parser.add_argument("--top", type=int, default=35, help="functions in that list")
    parser.add_argument("--alarms", type=int, default=0,
                        help="channels per device with alarm rules (0: no alarm hook)")
    parser.add_argument("--wait", action="store_true",
                        help="wait for each sample's commit before the next poll (a link that "
                             "sleeps between polls); by default a link's due devices are "
                             "polled while earlier samples commit (edge_agent/pollstore.py)")
    parser.add_argument("--split", action="store_true",
                        help="also print how much of the polling thread is driver.poll")
    parser.add_argument("--baseline", action="store_true",
                        help="also time bare pymodbus reads of the same registers (the bare "
                             "pipeline's poll) and print the ratio")
    args = parser.parse_args()
    run(args.devices, args.tags, args.polls, args.profile, args.top, args.alarms,
        args.wait, args.split, args.baseline)


if __name__ == "__main__":
    main()
