"""``edge-agent demo``: a whole station on one machine, for a newcomer's first run.

Starts simulated instruments (GC and FTIR on Modbus TCP, two gas detectors on Modbus RTU
over a pseudo-terminal pair), a private Mosquitto on a free port, writes a station file
for them, loads it exactly as ``edge-agent run`` would, runs the agent, and prints what a
subscriber on the broker receives. With ``--uplinks N`` it starts N brokers, one per
uplink (``mqtt:`` and N-1 under ``uplinks:``), and prints what each one receives, so a
newcomer sees every platform fed on its own.
"""

from __future__ import annotations

import json
import logging
import signal
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import TextIO

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.forward.mqtt import Subscriber
from edge_agent.i18n import _
from edge_agent.stopsignals import SignalEvent
from edge_agent.tools.sim.broker import Mosquitto
from edge_agent.tools.sim.instruments import DETECTOR_UNITS, DemoEndpoints, DemoInstruments

log = logging.getLogger(__name__)


def uplink_names(count: int) -> list[str]:
    """The demo's uplinks: ``default`` (the ``mqtt:`` section) and ``uplink-2`` on."""
    return ["default", *(f"uplink-{n}" for n in range(2, count + 1))]


def station_yaml(ends: DemoEndpoints, broker_ports: list[int], store_path: Path) -> str:
    """The demo's station file: an ordinary config a technician could start from. The
    first broker is the ``mqtt:`` section's; each further one is an uplink of its own."""
    broker_port = broker_ports[0]
    named = "".join(f"  {name}: {{host: 127.0.0.1, port: {port}, keepalive_s: 10}}\n"
                    for name, port in zip(uplink_names(len(broker_ports))[1:],
                                          broker_ports[1:], strict=True))
    uplinks = f"""
uplinks:                         # more platforms, each fed and acknowledged on its own
{named}""" if named else ""
    detectors = "\n".join(
        f"  - {{id: detector-{unit}, link: rs485-1, unit_id: {unit}, "
        f"profile: generic-gas-detector}}" for unit in DETECTOR_UNITS)
    return f"""# Written by `edge-agent demo`: simulated instruments on this machine.
# Each device names the profile of its model (drivers/*/profile.yaml) and overrides
# what differs here.
station:
  id: demo-station

links:
  gc-lan:        {{type: tcp, host: 127.0.0.1, port: {ends.gc_port}, timeout_ms: 500}}
  ftir-lan:      {{type: tcp, host: 127.0.0.1, port: {ends.ftir_port}, timeout_ms: 500}}
  rs485-1:
    {{type: serial, port: {ends.detector_serial_port}, baudrate: 9600, timeout_ms: 300}}

devices:
  - id: gc-1                     # one sample per analysis, streams 1 and 2
    link: gc-lan
    unit_id: 1
    profile: generic-gc
    interval_s: 2
    clock: {{format: fields, channels: [year, month, day, hour, minute, second],
            utc_offset: "+08:00"}}   # this GC runs Beijing time
  - id: ftir-1                   # one sample per measurement; background -> SUSPECT
    link: ftir-lan
    unit_id: 1
    profile: generic-ftir
    interval_s: 1
{detectors}

store:
  path: {store_path}

mqtt:
  host: 127.0.0.1
  port: {broker_port}
  client_id: edge-agent-demo
  keepalive_s: 10
{uplinks}
health:
  port: 0                        # any free port: never in the way of a station's service
"""


class MessagePrinter:
    """Prints one line per received sample, like a tiny dashboard."""

    def __init__(self, out: TextIO, lock: threading.Lock | None = None,
                 label: str = "") -> None:
        """``label`` starts each line (the uplink's name when there are several);
        printers of several brokers share ``lock`` so their lines never interleave."""
        self._out = out
        self._lock = lock or threading.Lock()
        self._label = f"{label} " if label else ""
        self.messages = 0
        self.samples = 0

    def __call__(self, topic: str, payload: bytes, retained: bool) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        with self._lock:
            self.messages += 1
            text = self._format(topic, message)
            self._out.write("".join(f"{self._label}{line}\n" for line in text.split("\n")))
            self._out.flush()

    def _format(self, topic: str, message: dict) -> str:
        if "state" in message:
            return _("[{topic}] station {station} is {state}").format(
                topic=topic, station=message["station"], state=message["state"])
        if message.get("type") == "gap":
            return _("[{topic}] GAP {gaps}").format(topic=topic, gaps=message["gaps"])
        lines = []
        for sample in message.get("samples", []):
            self.samples += 1
            lines.append(_format_sample(message, sample))
        return "\n".join(lines)


_SHOWN_VALUES = 5


def _format_sample(message: dict, sample: dict) -> str:
    """One line: time, device, seq, analysis time and stream, the first few values."""
    shown = [_format_value(name, value) for name, value in sample["values"].items()
             if name not in _BOOKKEEPING][:_SHOWN_VALUES]
    more = len(sample["values"]) - len(shown)
    context = ""
    if sample.get("instrument_time"):
        context += _(" analysed {time}Z").format(time=sample["instrument_time"][11:19])
    if "stream" in sample:
        context += _(" stream {stream}").format(stream=sample["stream"])
    flag = _(" (historical)") if message.get("historical") else ""
    tail = _("  (+{count} more)").format(count=more) if more > 0 else ""
    return (f"{sample['acquired_at'][11:23]}  {message['device']:<11} #{sample['seq']:<4}"
            f"{context}  {'  '.join(shown)}{tail}{flag}")


# Channels that describe the analysis rather than measure something (shown as context).
_BOOKKEEPING = {"cycle", "stream", "year", "month", "day", "hour", "minute", "second",
                "measured_at", "status", "state", "sensor_faults"}


def _format_value(name: str, value: dict) -> str:
    if value["quality"] != "GOOD":
        return f"{name}={value['quality']}({value['reason']})"
    number = value["value"]
    shown = f"{number:.3f}" if isinstance(number, float) else str(number)
    return f"{name}={shown}{(' ' + value['unit']) if value['unit'] else ''}"


def run_demo(duration_s: float | None, workdir: Path | None, out: TextIO,
             uplinks: int = 1) -> int:
    """Run the demo until Ctrl-C or ``duration_s``, feeding ``uplinks`` private brokers;
    returns the exit status."""
    base = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="edge-agent-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    names = uplink_names(uplinks)
    brokers = _start_brokers(base, uplinks)
    instruments = DemoInstruments()
    lock = threading.Lock()
    printers = [MessagePrinter(out, lock, name if uplinks > 1 else "") for name in names]
    subscribers: list[Subscriber] = []
    agent = None
    try:
        ends = instruments.start()
        config_path = base / "station.yaml"
        config_path.write_text(station_yaml(ends, [b.port for b in brokers],
                                            base / "outbox.sqlite3"))
        config = load_config(config_path)
        out.write(_("demo: broker on 127.0.0.1:{port}, station file {path}").format(
            port=brokers[0].port, path=config_path) + "\n")
        for name, broker in zip(names[1:], brokers[1:], strict=True):
            out.write(_("demo: uplink {name}: broker on 127.0.0.1:{port}").format(
                name=name, port=broker.port) + "\n")
        out.write(_("demo: GC and FTIR on Modbus TCP, detectors on {port} (Modbus RTU); Ctrl-C "
                    "stops").format(port=ends.detector_serial_port) + "\n")
        for broker, printer in zip(brokers, printers, strict=True):
            subscribers.append(Subscriber("127.0.0.1", broker.port, "edge/#", printer).start())
        agent = Agent(config)
        run_until_stopped(agent, duration_s)
    finally:
        if agent is not None:
            agent.stop()
        for subscriber in subscribers:
            subscriber.stop()
        instruments.stop()
        for broker in brokers:
            broker.stop()
    for name, printer in zip(names, printers, strict=True) if uplinks > 1 else ():
        out.write(_("demo: uplink {name} received {messages} messages with {samples} "
                    "samples").format(name=name, messages=printer.messages,
                                      samples=printer.samples) + "\n")
    out.write(_("demo: received {messages} messages with {samples} samples; files kept in "
                "{path}").format(messages=sum(p.messages for p in printers),
                                 samples=sum(p.samples for p in printers), path=base)
              + "\n")
    return 0


def _start_brokers(base: Path, count: int) -> list[Mosquitto]:
    """``count`` private brokers (``broker``, ``broker-2``, ...); none left running when
    one cannot start."""
    brokers: list[Mosquitto] = []
    try:
        for index in range(count):
            folder = base / ("broker" if index == 0 else f"broker-{index + 1}")
            brokers.append(Mosquitto(folder).start())
    except BaseException:
        for broker in brokers:
            broker.stop()
        raise
    return brokers


def run_until_stopped(agent: Agent, duration_s: float | None) -> None:
    """Start ``agent`` and return after ``duration_s`` (None: never) or at SIGINT/SIGTERM,
    the caller stopping it; the previous signal handlers are put back."""
    stop = SignalEvent()  # set by the handlers: no lock to deadlock on (stopsignals.py)

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        agent.start()
        stop.wait(duration_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
