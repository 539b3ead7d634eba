"""``edge-agent demo --hj212``: the worked VOC station of docs/hj212.md feeding two HJ 212
platforms and an MQTT broker, all on this machine.

It is ``config/hj212-voc-station.example.yaml`` with local addresses and the demo's
simulated instruments: the demo GC (``instruments.py``), an NMHC analyzer on Modbus TCP
and H2S/Cl2 toxic-gas detectors on an RS-485 pseudo-terminal (``VocInstruments``), a
private Mosquitto, and two ``edge-agent hj212-platform`` processes (``platforms.py``), one
HJ 212-2025 with SM4, one HJ 212-2017. The minute period is 1 minute so that a run of
about 80 s shows a 2051. At the end each platform's packets are summed up from its
JSON-lines log.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
from pathlib import Path
from typing import TextIO

from edge_agent_drivers.modbus.settings import RegisterKind

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.forward.mqtt import Subscriber
from edge_agent.i18n import _
from edge_agent.tools.demo.platforms import DemoPlatform, PlatformTally
from edge_agent.tools.demo.station import MessagePrinter, run_until_stopped
from edge_agent.tools.sim.broker import Mosquitto
from edge_agent.tools.sim.images import float32_words
from edge_agent.tools.sim.instruments import DemoInstruments
from edge_agent.tools.sim.ptypair import PtyPair
from edge_agent.tools.sim.simserver import SimServer, SimUnit

# The demo's secrets: what /etc/edge-agent/edge-agent.env holds at a real station.
SM4_KEY_HEX = "30" * 16  # HJ 212-2025 Appendix A.2's example key, 16 × '0'
SECRETS = {"CITY_HJ212_PW": "123456", "CITY_HJ212_SM4": SM4_KEY_HEX,
           "PARK_HJ212_PW": "654321"}
TOXIC_UNITS = {"h2s-1": 1, "cl2-1": 2}  # RS-485 addresses of the two detectors


class VocInstruments:
    """The NMHC analyzer (Modbus TCP, float32 at register 0) and the two toxic-gas
    detectors (Modbus RTU on a pseudo-terminal, the toxic-gas-detector profile's map),
    their values moving a little every second."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._pty = PtyPair()
        self.nmhc = SimServer([SimUnit(1)])
        self.detectors = SimServer([SimUnit(unit) for unit in TOXIC_UNITS.values()],
                                   serial_port=self._pty.device_path, baudrate=9600)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._animate, daemon=True, name="demo-voc")

    def start(self) -> tuple[int, str]:
        """Start both; (the NMHC analyzer's TCP port, the detectors' serial path)."""
        self.nmhc.start()
        self.detectors.start()
        self._update()
        self._thread.start()
        return self.nmhc.tcp_port, self._pty.agent_path

    def _animate(self) -> None:
        while not self._stop.wait(1.0):
            self._update()

    def _update(self) -> None:
        nmhc_mg_m3 = round(0.8 + self._rng.uniform(0, 0.3), 3)
        self.nmhc.set_words(1, RegisterKind.HOLDING, 0, float32_words(nmhc_mg_m3))
        for base, unit in ((20, TOXIC_UNITS["h2s-1"]), (3, TOXIC_UNITS["cl2-1"])):
            tenths = base + self._rng.randint(0, 4)  # 0.1 mg/m3 steps, as the profile scales
            self.detectors.set_words(unit, RegisterKind.HOLDING, 0, [0, tenths, 0])

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.nmhc.stop()
        self.detectors.stop()
        self._pty.close()


def voc_station_yaml(gc_port: int, nmhc_port: int, serial_port: str, broker_port: int,
                     city_port: int, park_port: int, store_path: Path) -> str:
    """config/hj212-voc-station.example.yaml on this machine: local addresses, polls every
    2 s, a 1-minute minute period and short HJ 212 timeouts (a local platform answers in
    milliseconds)."""
    return f"""# Written by `edge-agent demo --hj212`: config/hj212-voc-station.example.yaml with
# local addresses, simulated instruments and a 1-minute minute period (2051 every minute).
station:
  id: PARK-07-VOC

links:
  gc-net:   {{type: tcp, host: 127.0.0.1, port: {gc_port}, timeout_ms: 500}}
  nmhc-net: {{type: tcp, host: 127.0.0.1, port: {nmhc_port}, timeout_ms: 500}}
  rs485-1:  {{type: serial, port: {serial_port}, baudrate: 9600, timeout_ms: 300}}

devices:
  - id: gc-1                       # the demo GC: one analysis every 8 s, Beijing time
    link: gc-net
    unit_id: 1
    profile: generic-gc
    interval_s: 2
    clock: {{format: fields, channels: [year, month, day, hour, minute, second],
            utc_offset: "+08:00"}}
    channels:
      - {{name: benzene, unit: ug/m3}}
      - {{name: toluene, unit: ug/m3}}
      - {{name: xylenes, unit: ug/m3}}
      - {{name: ethylbenzene, enabled: false}}
  - id: nmhc-1
    link: nmhc-net
    unit_id: 1
    interval_s: 2
    channels:
      - {{name: nmhc, address: 0, type: float32, unit: mg/m3, sentinels: [-9999]}}
  - id: h2s-1
    link: rs485-1
    unit_id: {TOXIC_UNITS["h2s-1"]}
    profile: toxic-gas-detector
    channels:
      - {{name: gas, unit: mg/m3}}
  - id: cl2-1
    link: rs485-1
    unit_id: {TOXIC_UNITS["cl2-1"]}
    profile: toxic-gas-detector
    channels:
      - {{name: gas, unit: mg/m3}}

store:
  path: {store_path}

mqtt:
  host: 127.0.0.1
  port: {broker_port}
  client_id: edge-agent-demo
  keepalive_s: 10

uplinks:
  city-hj212:                      # HJ 212-2025 with SM4
    kind: hj212
    host: 127.0.0.1
    port: {city_port}
    mn: 010000A8900016F000169DC0
    st: "31"
    password_env: CITY_HJ212_PW
    version: 2025
    sm4_key_env: CITY_HJ212_SM4
    minute_interval_min: 1
    timeout_s: 2
    retries: 1
    channels:
      - {{device: gc-1, channel: benzene, code: a25002}}
      - {{device: gc-1, channel: toluene, code: a25003}}
      - {{device: gc-1, channel: xylenes, code: a25005}}
      - {{device: nmhc-1, channel: nmhc, code: a24088}}
      - {{device: h2s-1, channel: gas, code: a21028}}
      - {{device: cl2-1, channel: gas, code: a21022}}
  park-2017:                       # HJ 212-2017
    kind: hj212
    devices: [gc-1, h2s-1]
    host: 127.0.0.1
    port: {park_port}
    mn: LD130133000015
    st: "22"
    password_env: PARK_HJ212_PW
    version: 2017
    minute_interval_min: 1
    timeout_s: 2
    retries: 1
    codes:
      x90001: {{zh: 苯（园区旧编码）, en: benzene (park legacy code), unit: ug/m3,
               versions: [2017]}}
    channels:
      - {{device: gc-1, channel: benzene, code: x90001}}
      - {{device: h2s-1, channel: gas, code: a21028, unit: ug/m3}}

health:
  port: 0
"""


def run_hj212_demo(duration_s: float | None, workdir: Path | None, out: TextIO) -> int:
    """Run the VOC station with two platform simulators until Ctrl-C or ``duration_s``;
    print where each platform's log is, and each platform's tally at the end. 0."""
    base = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="edge-agent-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    platforms = [DemoPlatform("city-hj212", "2025", base, ("--sm4-key", SM4_KEY_HEX)),
                 DemoPlatform("park-2017", "2017", base, ())]
    broker = instruments = voc = subscriber = agent = None
    printer = MessagePrinter(out)
    try:
        for platform in platforms:
            platform.start()
        broker = Mosquitto(base / "broker").start()
        instruments = DemoInstruments()
        voc = VocInstruments()
        ends = instruments.start()
        nmhc_port, serial_port = voc.start()
        config_path = base / "station.yaml"
        config_path.write_text(voc_station_yaml(
            ends.gc_port, nmhc_port, serial_port, broker.port, platforms[0].port,
            platforms[1].port, base / "outbox.sqlite3"), encoding="utf-8")
        config = load_config(config_path, env={**os.environ, **SECRETS})
        out.write(_("demo: HJ 212 VOC station file {path}; broker on 127.0.0.1:{port}").format(
            path=config_path, port=broker.port) + "\n")
        for platform in platforms:
            out.write(_("demo: platform {name} (HJ 212-{version}) on 127.0.0.1:{port}, "
                        "decoded log {log}").format(name=platform.name,
                                                     version=platform.version,
                                                     port=platform.port,
                                                     log=platform.log_path) + "\n")
        out.write(_("demo: a minute record (2051) goes out about 10 s after each minute "
                    "ends; Ctrl-C stops") + "\n")
        subscriber = Subscriber("127.0.0.1", broker.port, "edge/#", printer).start()
        agent = Agent(config)
        run_until_stopped(agent, duration_s)
    finally:
        if agent is not None:
            agent.stop()
        if subscriber is not None:
            subscriber.stop()
        for parts in (voc, instruments, broker):
            if parts is not None:
                parts.stop()
        for platform in platforms:
            platform.stop()
    for platform in platforms:
        out.write(format_tally(platform.name, platform.tally()) + "\n")
    out.write(_("demo: MQTT received {messages} messages with {samples} samples; files kept "
                "in {path}").format(messages=printer.messages, samples=printer.samples,
                                    path=base) + "\n")
    return 0


def format_tally(name: str, tally: PlatformTally) -> str:
    """One summary line per platform, e.g. ``2011 ×42, 2051 ×2, 2061 ×0``."""
    return _("demo: platform {name} received 2011 ×{rtd}, 2051 ×{minute}, 2061 ×{hour}; "
             "acknowledged {acked} (9014); re-sent RF=1 ×{rf}; rejected {rejected}").format(
        name=name, rtd=tally.by_cn.get("2011", 0), minute=tally.by_cn.get("2051", 0),
        hour=tally.by_cn.get("2061", 0), acked=tally.acknowledged, rf=tally.resent,
        rejected=tally.rejected)
