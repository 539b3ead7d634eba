"""``python -m bench station-output``: what one station sends, at the default settings.

The station is the repo's own simulated one: ``edge-agent simulate`` serving
config/simulate.example.yaml (two GCs and an FTIR on Modbus TCP, two gas detectors on a
virtual RS-485 bus), polled by ``edge-agent run`` with every setting at its default and
each device at its profile's poll interval, publishing to a private Mosquitto. A
subscriber on ``edge/#`` counts every message and its bytes, per device kind.

Time is compressed: the simulator runs ``speed`` times faster (analysis cycles,
measurements) and every poll interval is divided by the same factor, so a window of
``span_s`` seconds holds ``span_s * speed`` seconds of the station's life; every rate
printed is per second of station time (measured count / (span x speed)). Nothing else
changes with it: one sample still makes one message on a station this slow, and the
bytes of a message do not depend on time.

Bytes on the wire are estimated from the packet formats (bench/wire.py): a subscriber
sees topics and payloads, not the agent's packets.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from bench import wire
from bench.pipelines import ROOT
from bench.report import header
from edge_agent.tools.sim.broker import Mosquitto

EXAMPLE = ROOT / "config" / "simulate.example.yaml"
KIND = {"generic-gc": "GC (generic-gc)", "daniel-enron-gc": "GC (daniel-enron-gc)",
        "generic-ftir": "FTIR", "generic-gas-detector": "gas detector"}
# The simulator's default cycle when the file gives none (docs/simulate.md).
DEFAULT_CYCLE_S = {"generic-gc": 300.0, "daniel-enron-gc": 300.0, "generic-ftir": 30.0}
STATION = "st01"


@dataclass(frozen=True)
class Form:
    """One size of the run: time compression, warm-up and measured window (wall s)."""

    name: str
    speed: float
    warmup_s: float
    span_s: float


FORMS = {"full": Form("full", 2, 10, 600), "short": Form("short", 4, 5, 75),
         "tiny": Form("tiny", 4, 2, 4)}  # the detectors send every 0.5 s of wall time


@dataclass
class Tally:
    """Messages of one device kind seen in the window."""

    messages: int = 0
    samples: int = 0
    payload_bytes: int = 0
    publish_bytes: int = 0
    ip_up_bytes: int = 0
    ip_down_bytes: int = 0
    devices: set[str] = field(default_factory=set)

    def add(self, topic: str, payload: bytes, samples: int, device: str | None) -> None:
        self.messages += 1
        self.samples += samples
        self.payload_bytes += len(payload)
        self.publish_bytes += wire.publish_bytes(topic, len(payload)) + wire.PUBACK_BYTES
        self.ip_up_bytes += wire.ip_bytes_up(topic, len(payload))
        self.ip_down_bytes += wire.ip_bytes_down()
        if device:
            self.devices.add(device)


def profile_intervals() -> dict[str, float]:
    """Each shipped profile's own ``interval_s`` (drivers/**/profile.yaml and profiles/)."""
    found = {}
    for path in [*ROOT.glob("drivers/*/profile.yaml"), *ROOT.glob("drivers/*/profiles/*.yaml")]:
        doc = yaml.safe_load(path.read_text())
        if isinstance(doc, dict) and "profile" in doc and "interval_s" in doc:
            found[doc["profile"]] = float(doc["interval_s"])
    return found


def simulation_file(workdir: Path) -> tuple[Path, list[dict]]:
    """The example simulation with its TCP server on a free port; its devices."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    for server in doc["servers"].values():
        if "listen" in server:
            server["listen"] = "127.0.0.1:0"
    path = workdir / "simulate.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path, doc["devices"]


def nominal_per_s(device: dict, intervals: dict[str, float]) -> float:
    """Samples per second the device should give: one per analysis or measurement
    (GCs, FTIR: triggered) but never more than one per poll; one per poll (detectors)."""
    interval = intervals[device["profile"]]
    if device["profile"] in DEFAULT_CYCLE_S:
        cycle = float(device.get("cycle_s", DEFAULT_CYCLE_S[device["profile"]]))
        return 1 / max(cycle, interval)
    return 1 / interval


class Simulator:
    """``edge-agent simulate FILE --speed X`` in a child process; where it serves."""

    def __init__(self, path: Path, speed: float) -> None:
        self.log_path = path.with_suffix(".log")
        with open(self.log_path, "w") as log:  # the child keeps its own copy open
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "simulate", str(path), "--speed",
                 str(speed)], stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT)
        assert self.process.stdout is not None
        self.where: dict[str, str] = {}
        for line in self.process.stdout:
            if line.startswith("simulating "):
                break
            served = re.match(r"^(\w[\w-]*): modbus-\w+ on (\S+?)(?::(\d+))?(?: \(|:)", line)
            if served:
                self.where[served.group(1)] = (served.group(3) and
                                               f"{served.group(2)}:{served.group(3)}"
                                               or served.group(2))
        else:
            self.stop()
            raise RuntimeError(f"edge-agent simulate did not start: "
                               f"{self.log_path.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def station_doc(devices: list[dict], where: dict[str, str], intervals: dict[str, float],
                speed: float, broker_port: int, db: Path) -> dict:
    """The agent's station file: defaults everywhere except the compressed poll interval,
    the GC's local clock (as the simulation serves it) and the flag GC's ``clear_flag``
    (this agent is the simulated GC's only master)."""
    links = {}
    for name, address in where.items():
        if address.startswith("/dev/"):
            links[name] = {"type": "serial", "port": address, "baudrate": 9600}
        else:
            host, port = address.rsplit(":", 1)
            links[name] = {"type": "tcp", "host": host, "port": int(port)}
    station_devices = []
    for device in devices:
        entry = {"id": device["id"], "link": device["server"], "unit_id": device["unit_id"],
                 "profile": device["profile"],
                 "interval_s": intervals[device["profile"]] / speed}
        if device["profile"] == "generic-gc":
            entry["clock"] = {"format": "fields", "utc_offset": device.get("utc_offset",
                                                                           "+00:00"),
                              "channels": ["year", "month", "day", "hour", "minute", "second"]}
        if device["profile"] == "daniel-enron-gc":
            entry["trigger"] = {"kind": "flag", "channel": "new_data", "clear_flag": True}
        station_devices.append(entry)
    return {"station": {"id": STATION}, "links": links, "devices": station_devices,
            "store": {"path": str(db)},
            "mqtt": {"host": "127.0.0.1", "port": broker_port,
                     "client_id": f"edge-agent-{STATION}"},
            "health": {"port": 0}}


class Counter:
    """Subscribes to ``edge/#`` and tallies every message in the window, per kind."""

    def __init__(self, port: int, kinds: dict[str, str]) -> None:
        self.kinds = kinds
        self.tallies: dict[str, Tally] = defaultdict(Tally)
        self.counting = False
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                   client_id=f"count-{uuid.uuid4().hex[:8]}")
        self._client.on_connect = lambda c, *a: c.subscribe("edge/#", qos=1)
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        if not self._subscribed.wait(20):
            raise RuntimeError(f"no SUBACK from the broker on port {port}")

    def _on_message(self, client, userdata, message) -> None:
        try:
            doc = json.loads(message.payload)
        except ValueError:
            doc = {}
        device = doc.get("device") if isinstance(doc, dict) else None
        samples = len(doc.get("samples") or []) if isinstance(doc, dict) else 0
        if samples:
            kind = self.kinds.get(device, "unknown device")
        else:
            kind = "gap events" if doc.get("type") == "gap" else "station status"
        with self._lock:
            if self.counting:
                self.tallies[kind].add(message.topic, message.payload, samples, device)

    def window(self, span_s: float) -> float:
        """Count for ``span_s`` seconds; the measured wall time."""
        with self._lock:
            self.counting = True
        started = time.monotonic()
        time.sleep(span_s)
        with self._lock:
            self.counting = False
        return time.monotonic() - started

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def measure(form: Form, workdir: Path) -> dict:
    """One run: simulator, broker, agent, counter; returns per-kind tallies and rates."""
    intervals = profile_intervals()
    sim_path, devices = simulation_file(workdir)
    kinds = {d["id"]: KIND.get(d["profile"], d["profile"]) for d in devices}
    broker = Mosquitto(workdir / "broker").start()
    sim = counter = agent = None
    try:
        sim = Simulator(sim_path, form.speed)
        counter = Counter(broker.port, kinds)
        station = workdir / "station.yaml"
        doc = station_doc(devices, sim.where, intervals, form.speed, broker.port,
                          workdir / "outbox.sqlite3")
        station.write_text(json.dumps(doc, indent=1))
        log = open(workdir / "agent.log", "ab")  # noqa: SIM115 - closed below
        agent = subprocess.Popen([str(Path(sys.executable).parent / "edge-agent"), "run",
                                  str(station)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        log.close()
        time.sleep(form.warmup_s)  # connect, first polls, the analyses served at second 0
        if agent.poll() is not None:
            raise RuntimeError(f"the agent exited: {(workdir / 'agent.log').read_text()[-2000:]}")
        wall_s = counter.window(form.span_s)
    finally:
        if agent is not None:
            agent.terminate()
            try:
                agent.wait(60)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        if counter is not None:
            counter.stop()
        if sim is not None:
            sim.stop()
        broker.stop()
    station_s = wall_s * form.speed
    nominal: dict[str, float] = defaultdict(float)
    for device in devices:
        nominal[kinds[device["id"]]] += nominal_per_s(device, intervals)
    return {"form": asdict(form), "station_s": station_s, "wall_s": wall_s,
            "devices": devices, "intervals": intervals, "nominal_msgs_per_s": dict(nominal),
            "tallies": {kind: {**asdict(t), "devices": sorted(t.devices)}
                        for kind, t in counter.tallies.items()}}


def table(result: dict, head: list[str]) -> str:
    """The figures: per kind and total, per second of station time."""
    seconds = result["station_s"]
    form = result["form"]
    lines = list(head)
    devices = result["devices"]
    polls = ", ".join(f"{p} {s:g} s" for p, s in sorted(result["intervals"].items())
                      if any(d["profile"] == p for d in devices))
    lines.append(f"station: {EXAMPLE.relative_to(ROOT)} ({len(devices)} devices), polled at "
                 f"each profile's interval_s ({polls}); mqtt, store, polling: defaults "
                 f"(MQTT 3.1.1, QoS 1, max_inflight 20, max_samples_per_message 50)")
    lines.append(f"time compressed x{form['speed']:g}: {result['wall_s']:.0f} s measured = "
                 f"{seconds:.0f} s of station time; rates per second of station time")
    lines.append(f"{'kind':<22} {'dev':>3} {'msgs':>5} {'msgs/s':>8} {'nominal':>8} "
                 f"{'smp/msg':>7} {'B/msg':>6} {'payload B/s':>11} {'MQTT B/s':>9} "
                 f"{'IP B/s up':>9} {'IP B/s down':>11}")
    total = Tally()
    empty = {**asdict(Tally()), "devices": []}
    per_kind = defaultdict(int)
    for device in devices:
        per_kind[KIND.get(device["profile"], device["profile"])] += 1
    for kind in sorted(set(result["tallies"]) | set(per_kind)):
        t = result["tallies"].get(kind, empty)
        nominal = result["nominal_msgs_per_s"].get(kind)
        lines.append(_row(kind, t, seconds, nominal, per_kind.get(kind)))
        for key in ("messages", "samples", "payload_bytes", "publish_bytes", "ip_up_bytes",
                    "ip_down_bytes"):
            setattr(total, key, getattr(total, key) + t[key])
        total.devices.update(t["devices"])
    lines.append(_row("total", {**asdict(total), "devices": sorted(total.devices)}, seconds,
                      sum(result["nominal_msgs_per_s"].values()), len(devices)))
    day = 86400 / seconds
    lines.append(f"per day at the measured rate: {total.messages * day:,.0f} messages, "
                 f"{total.payload_bytes * day / 1e6:.1f} MB payload, "
                 f"{(total.ip_up_bytes + total.ip_down_bytes) * day / 1e6:.1f} MB IP both ways")
    lines.append("nominal: msgs/s the devices should give (one per analysis/measurement, "
                 "one per detector poll); MQTT B/s: PUBLISH + PUBACK packets; IP: + 52 B "
                 "TCP/IPv4 per segment, no TLS (bench/wire.py)")
    return "\n".join(lines)


def _row(kind: str, t: dict, seconds: float, nominal: float | None,
         devices: int | None) -> str:
    messages = t["messages"]
    per_msg = t["payload_bytes"] / messages if messages else 0
    samples = t["samples"] / messages if messages and t["samples"] else 0
    nominal_text = f"{nominal:.3f}" if nominal else "-"
    return (f"{kind:<22} {devices or '-':>3} {messages:>5} "
            f"{messages / seconds:>8.3f} {nominal_text:>8} {samples or '-':>7} "
            f"{per_msg:>6.0f} {t['payload_bytes'] / seconds:>11.1f} "
            f"{t['publish_bytes'] / seconds:>9.1f} {t['ip_up_bytes'] / seconds:>9.1f} "
            f"{t['ip_down_bytes'] / seconds:>11.1f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench station-output",
        description="What one station sends at the default settings: messages and bytes "
                    "per second, per device kind and in total (docs/scaling.md). Without "
                    "--short or --tiny: the full form (about 11 minutes).")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--short", action="store_const", const="short", dest="form",
                      help="about 1.5 minutes: 300 s of station time")
    size.add_argument("--tiny", action="store_const", const="tiny", dest="form",
                      help="a few seconds of counting; only proves it runs (smoke test)")
    parser.add_argument("--json", type=Path, help="also write the raw counts here")
    args = parser.parse_args(argv)
    form = FORMS[args.form or "full"]
    head = header(f"station output, {form.name}")
    with tempfile.TemporaryDirectory(prefix="edge-bench-output-") as tmp:
        result = measure(form, Path(tmp))
    text = table(result, head)
    print(text, flush=True)
    if args.json:
        args.json.write_text(json.dumps({**result, "table": text}, indent=1, default=str))
