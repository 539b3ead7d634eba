"""What an uplink lets go unsent is visible (issue 16): ``/metrics``
(``edge_agent_uplink_skipped_total{uplink, reason}``), ``/status`` (``uplinks[].skipped``)
and ``edge-agent status`` (a line per uplink with non-zero counts, English and Chinese).

``edge-agent run`` as a child process with real parts: a pymodbus simulator with ``dev-1``
answering and ``dev-2`` muted, a Mosquitto for the ``mqtt:`` uplink and one for a
Sparkplug uplink, and the HJ 212 platform simulator. The HJ 212 uplink maps only
``dev-1``, so every ``dev-2`` sample is ``unmapped``, and ``dev-1`` polled ten times a
second is thinned to one 2011 per 30 s real-time interval (``rtd_thinned``); the Sparkplug
uplink gives ``dev-2`` a DDEATH after its third failed poll and lets its later failed
polls go (``while_dead``). The JSON uplink sends everything and has no such series.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.health import Scrape, scrape, status
from support.station import AgentProcess
from support.uplinks_station import FAST_MQTT, write_uplinks_station
from support.waiting import wait_until

from edge_agent.tools.hj212platform.log import PlatformLog
from edge_agent.tools.hj212platform.server import Behaviour, Platform
from edge_agent.tools.sim.broker import Mosquitto, free_port
from edge_agent.tools.sim.simserver import SimServer, SimUnit

pytestmark = pytest.mark.real_parts

MN = "010000A8900016F000169DC0"
ENV = {**os.environ, "PROV_PW": "123456"}  # the platform's password, as the service has it


@dataclass
class Seen:
    """The endpoint's and the status command's views, taken while the agent ran."""

    status: dict
    metrics: Scrape
    text_en: str
    text_zh: str


def _skipped(port: int, uplink: str) -> dict[str, int]:
    return next(u for u in status(port)["uplinks"] if u["name"] == uplink)["skipped"]


def _status_text(config: Path, *lang: str) -> str:
    done = subprocess.run([sys.executable, "-m", "edge_agent", *lang, "status", str(config)],
                          capture_output=True, text=True, timeout=60, env=ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seen]:
    tmp = tmp_path_factory.mktemp("skip-counts")
    sim = SimServer([SimUnit(1, holding={0: 11}), SimUnit(2, muted=True)]).start()
    json_broker = Mosquitto(tmp / "json").start()
    sp_broker = Mosquitto(tmp / "sparkplug").start()
    platform = Platform("127.0.0.1", 0, Behaviour(), PlatformLog(io.StringIO(), None))
    serving = threading.Thread(target=platform.server.serve_forever, daemon=True)
    serving.start()
    prov = {"kind": "hj212", "host": "127.0.0.1", "port": platform.port, "mn": MN,
            "st": "22", "password_env": "PROV_PW", "version": 2025, "encrypt": False,
            "timeout_s": 1, "retries": 1, "heartbeat_s": 2, "realtime_interval_s": 30,
            "channels": [{"device": "dev-1", "channel": "value", "code": "a21028"}]}
    scada = {"kind": "sparkplug", "group_id": "plant", "edge_node_id": "test-station",
             "host": "127.0.0.1", "port": sp_broker.port, **FAST_MQTT}
    health_port = free_port()
    config = write_uplinks_station(tmp / "station.yaml", sim, {"prov": prov, "scada": scada},
                                   mqtt_port=json_broker.port, health_port=health_port)
    agent = AgentProcess(config, tmp / "agent.log", ENV).start()
    try:
        agent.wait_running()
        wait_until(lambda: all(_skipped(health_port, "prov").get(reason, 0) > 0
                               for reason in ("unmapped", "rtd_thinned")), 60,
                   "the HJ 212 uplink to skip unmapped and thinned samples")
        wait_until(lambda: _skipped(health_port, "scada").get("while_dead", 0) > 0, 60,
                   "the Sparkplug uplink to let dev-2's failed polls go after its DDEATH")
        yield Seen(status(health_port), scrape(health_port), _status_text(config),
                   _status_text(config, "--lang", "zh"))
    finally:
        agent.terminate()
        platform.server.shutdown()
        platform.server.server_close()
        sp_broker.stop()
        json_broker.stop()
        sim.stop()
    assert "Traceback" not in agent.log()


def test_status_json_lists_every_skip_reason_of_the_hj212_and_sparkplug_uplinks(
        seen: Seen) -> None:
    uplinks = {u["name"]: u["skipped"] for u in seen.status["uplinks"]}
    assert set(uplinks["prov"]) == {"gaps_skipped", "alarms_skipped", "unmapped",
                                    "unit_mismatches", "unreadable", "rtd_thinned"}
    assert set(uplinks["scada"]) == {"gaps_skipped", "alarms_skipped", "while_dead",
                                     "unreadable"}
    assert uplinks["default"] == {}  # the JSON uplink sends everything
    kinds = {u["name"]: u["kind"] for u in seen.status["uplinks"]}
    assert kinds == {"prov": "hj212", "scada": "sparkplug", "default": "mqtt"}


def test_metrics_carry_one_skipped_counter_family_by_uplink_and_reason(seen: Seen) -> None:
    name = "edge_agent_uplink_skipped_total"
    assert seen.metrics.types["edge_agent_uplink_skipped"] == "counter"
    series = seen.metrics.series(name)
    assert {dict(labels)["uplink"] for labels in series} == {"prov", "scada"}
    assert seen.metrics.value(name, uplink="prov", reason="unmapped") > 0
    assert seen.metrics.value(name, uplink="prov", reason="rtd_thinned") > 0
    assert seen.metrics.value(name, uplink="scada", reason="while_dead") > 0
    assert seen.metrics.value(name, uplink="scada", reason="gaps_skipped") == 0


def test_status_command_shows_a_line_per_uplink_with_nonzero_skips(seen: Seen) -> None:
    lines = [line for line in seen.text_en.splitlines() if line.startswith("Not sent:")]
    assert len(lines) == 2, seen.text_en
    prov = next(line for line in lines if "uplink prov" in line)
    assert "unmapped " in prov and "rtd_thinned " in prov and "gaps_skipped" not in prov
    scada = next(line for line in lines if "uplink scada" in line)
    assert "while_dead " in scada and "unreadable" not in scada


def test_status_command_says_it_in_chinese(seen: Seen) -> None:
    lines = [line for line in seen.text_zh.splitlines()
             if "prov" in line and "unmapped" in line]
    assert len(lines) == 1, seen.text_zh
    assert "Not sent" not in lines[0] and "未发送" in lines[0]
