"""``edge-agent demo --sparkplug``: the demo station with a Sparkplug B uplink beside its
MQTT JSON one (docs/sparkplug.md, "Try it").

Two private Mosquittos: the ``mqtt:`` section's, and a SCADA broker where
``edge-agent sparkplug-host`` runs as the station's primary host and prints every birth,
data and death message it decodes. The host is started first and the agent only once the
host says it is online, as a SCADA system is up before its edge nodes. At the end a
summary counts what reached the SCADA broker, message by message (a DDATA per sample
that changed something: report by exception), beside the samples the JSON uplink
delivered.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import IO, TextIO

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.forward.mqtt import Subscriber
from edge_agent.i18n import _
from edge_agent.tools.demo.children import stop_child
from edge_agent.tools.demo.station import run_until_stopped, station_yaml
from edge_agent.tools.sim.broker import Mosquitto
from edge_agent.tools.sim.instruments import DemoInstruments
from edge_agent.tools.sparkplughost.hostmodel import HostModel

GROUP_ID, EDGE_NODE_ID, HOST_ID = "demo", "demo-station", "demo-host"
_HOST_READY_S = 30.0  # the host's own connect timeout is 10 s


def sparkplug_yaml(port: int) -> str:
    """The ``uplinks:`` section the demo adds to its station file."""
    return f"""
uplinks:                         # a SCADA host speaking Sparkplug B (docs/sparkplug.md)
  scada:
    kind: sparkplug
    group_id: {GROUP_ID}
    edge_node_id: {EDGE_NODE_ID}
    primary_host_id: {HOST_ID}   # data only while this host says it is online
    host: 127.0.0.1
    port: {port}
    keepalive_s: 10
"""


class ScadaTally:
    """Counts each Sparkplug message on the SCADA broker by verb, and the DDATA whose
    metrics are historical; decoded by the host simulator's own model."""

    def __init__(self) -> None:
        self._model = HostModel()
        self._lock = threading.Lock()
        self.verbs: Counter[str] = Counter()
        self.historical = 0

    def __call__(self, topic: str, payload: bytes, _retained: bool) -> None:
        levels = topic.split("/")
        if len(levels) < 4 or levels[1] == "STATE":
            return
        events = self._model.receive(topic, payload)
        with self._lock:
            self.verbs[levels[2]] += 1
            if levels[2] == "DDATA" and any(event.historical for event in events):
                self.historical += 1


class JsonTally:
    """Counts the samples the JSON uplink delivered to the ``mqtt:`` broker."""

    def __init__(self) -> None:
        self.samples = 0

    def __call__(self, _topic: str, payload: bytes, _retained: bool) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if isinstance(message, dict):
            self.samples += len(message.get("samples") or [])


class HostProcess:
    """``edge-agent sparkplug-host`` as a child process; its lines copied to ``out``."""

    def __init__(self, port: int, out: TextIO, lock: threading.Lock) -> None:
        self._out, self._lock = out, lock
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "sparkplug-host", "--port", str(port),
             "--host-id", HOST_ID], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1)
        self._copier = threading.Thread(target=self._copy, args=(self.process.stdout,),
                                        name="demo-sparkplug-host", daemon=True)
        self._copier.start()

    def _copy(self, stream: IO[str] | None) -> None:
        for text in stream or ():
            if text.startswith("READY"):
                self.ready.set()
            with self._lock:
                self._out.write(text if text.endswith("\n") else text + "\n")
                self._out.flush()

    def wait_ready(self) -> bool:
        """True once the host is online; False when it ended or did not get there."""
        waited = 0.0
        while not self.ready.wait(0.2):
            waited += 0.2
            if self.process.poll() is not None or waited >= _HOST_READY_S:
                return False
        return True

    def stop(self) -> None:
        """SIGTERM: the host publishes its offline STATE and prints STOPPED."""
        stop_child(self.process, timeout_s=15)
        self._copier.join(timeout=5)


def run_sparkplug_demo(duration_s: float | None, workdir: Path | None, out: TextIO) -> int:
    """Run the Sparkplug demo until Ctrl-C or ``duration_s``; 1 when the host never came
    online."""
    base = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="edge-agent-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    brokers: list[Mosquitto] = []
    instruments, lock = DemoInstruments(), threading.Lock()
    scada, home = ScadaTally(), JsonTally()
    subscribers: list[Subscriber] = []
    host: HostProcess | None = None
    agent = None
    try:
        brokers.append(Mosquitto(base / "broker").start())
        brokers.append(Mosquitto(base / "broker-scada").start())
        json_port, scada_port = brokers[0].port, brokers[1].port
        ends = instruments.start()
        config_path = base / "station.yaml"
        config_path.write_text(station_yaml(ends, [json_port], base / "outbox.sqlite3")
                               + sparkplug_yaml(scada_port))
        config = load_config(config_path)
        out.write(_("demo: broker on 127.0.0.1:{port}, station file {path}").format(
            port=json_port, path=config_path) + "\n")
        out.write(_("demo: Sparkplug B uplink scada: SCADA broker on 127.0.0.1:{port}, "
                    "edge node {group}/{node}, primary host {host} (edge-agent "
                    "sparkplug-host, its lines below); Ctrl-C stops").format(
            port=scada_port, group=GROUP_ID, node=EDGE_NODE_ID, host=HOST_ID) + "\n")
        out.flush()
        subscribers.append(Subscriber("127.0.0.1", json_port, "edge/#", home).start())
        subscribers.append(Subscriber("127.0.0.1", scada_port, "spBv1.0/#", scada).start())
        host = HostProcess(scada_port, out, lock)
        if not host.wait_ready():
            out.write(_("demo: the Sparkplug host did not come online; see its lines "
                        "above") + "\n")
            return 1
        agent = Agent(config)
        run_until_stopped(agent, duration_s)
    finally:
        if agent is not None:
            agent.stop()
        if host is not None:
            host.stop()
        for subscriber in subscribers:
            subscriber.stop()
        instruments.stop()
        for broker in brokers:
            broker.stop()
    verbs = scada.verbs
    out.write(_("demo: the SCADA broker got {nbirth} NBIRTH, {dbirth} DBIRTH, {ddata} DDATA "
                "({historical} historical), {ddeath} DDEATH, {ndeath} "
                "NDEATH; the JSON uplink delivered {samples} samples; files kept in "
                "{path}").format(
        nbirth=verbs["NBIRTH"], dbirth=verbs["DBIRTH"], ddata=verbs["DDATA"],
        historical=scada.historical, ddeath=verbs["DDEATH"], ndeath=verbs["NDEATH"],
        samples=home.samples, path=base) + "\n")
    return 0
