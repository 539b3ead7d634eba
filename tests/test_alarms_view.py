"""Active alarms where people look (issue 17 item 6): /status, /metrics and
``edge-agent status`` (English and Chinese) of a running agent (a real process) polling
pymodbus detectors show an alarm while its limit is crossed, unconfirmed with the reason
during calibration, and nothing once it has cleared. The pure parts (the tally, the
/status list, the metric families, the status block) are checked by table first."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from edge_agent_drivers.modbus.settings import RegisterKind
from support.alarmstation import CALIBRATING, CL2, H2S, alarm_station, detector_bus
from support.health import Scrape, scrape, status, status_when_up
from support.station import AgentProcess
from support.waiting import wait_until

from edge_agent import i18n
from edge_agent.alarms.events import AlarmEvent, EventKind
from edge_agent.alarms.tally import AlarmTally
from edge_agent.health import metrics
from edge_agent.health.alarms_view import alarm_families, alarms_json, alarms_seen
from edge_agent.tools.ops.alarmlines import alarm_lines
from edge_agent.tools.sim.broker import free_port
from edge_agent.tools.sim.simserver import SimServer

HOLDING = RegisterKind.HOLDING
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def event(kind: EventKind, level: int, value: object, minutes: int, *, device: str = "h2s-1",
          rule: str = "high", threshold: float | None = 10.0, confirmed: bool = True,
          reason: str | None = None) -> AlarmEvent:
    return AlarmEvent(kind, device, "gas", "high", rule, level, value, "ppm", threshold,
                      T0 + timedelta(minutes=minutes), confirmed, reason)


class Kept:
    """The inner sink: keeps what it was handed, to show the tally passes all on."""

    def __init__(self) -> None:
        self.events: list[AlarmEvent] = []

    def emit(self, events: list[AlarmEvent]) -> None:
        self.events.extend(events)


# -- the pure parts ---------------------------------------------------------------------

def test_tally_counts_every_kind_and_keeps_the_raise_time_through_an_escalation() -> None:
    kept = Kept()
    tally = AlarmTally(kept)
    raised = event(EventKind.RAISED, 1, 15.0, 0)
    escalated = event(EventKind.ESCALATED, 2, 25.0, 3, rule="high_high", threshold=20.0)
    tally.emit([raised])
    tally.emit([escalated])
    assert kept.events == [raised, escalated]
    assert tally.since(escalated) == T0  # raised at T0, not escalated at T0 + 3 min
    assert tally.counts() == {"raised": 1, "escalated": 1, "lowered": 0, "confirmed": 0,
                              "cleared": 0}
    tally.emit([event(EventKind.CLEARED, 0, 5.0, 9)])
    restored = event(EventKind.ESCALATED, 2, 25.0, 12)  # active before this run: not seen
    assert tally.since(restored) == restored.at
    assert tally.counts()["cleared"] == 1


def test_status_list_puts_the_highest_level_first_with_value_limit_since_and_reason() -> None:
    h2s = event(EventKind.RAISED, 1, 15.0, 0)
    cl2 = event(EventKind.RAISED, 2, 5.0, 1, device="cl2-1", rule="high_high",
                threshold=3.0, confirmed=False, reason="calibrating")
    nan = event(EventKind.RAISED, 1, float("nan"), 2, device="o2-1", threshold=None)
    seen = alarms_seen([h2s, nan, cl2], lambda e: e.at, {"raised": 3})
    assert alarms_json(seen) == [
        {"device": "cl2-1", "channel": "gas", "rule": "high_high", "level": 2, "value": 5.0,
         "unit": "ppm", "limit": 3.0, "since": "2026-03-01T08:01:00.000Z",
         "confirmed": False, "reason": "calibrating"},
        {"device": "h2s-1", "channel": "gas", "rule": "high", "level": 1, "value": 15.0,
         "unit": "ppm", "limit": 10.0, "since": "2026-03-01T08:00:00.000Z",
         "confirmed": True, "reason": None},
        {"device": "o2-1", "channel": "gas", "rule": "high", "level": 1, "value": "nan",
         "unit": "ppm", "limit": None, "since": "2026-03-01T08:02:00.000Z",
         "confirmed": True, "reason": None}]


def test_alarm_metrics_parse_as_prometheus_text_with_one_series_per_label_set() -> None:
    high = event(EventKind.RAISED, 1, 15.0, 0)
    rate = AlarmEvent(EventKind.RAISED, "h2s-1", "gas", "rate_of_rise", "rate_of_rise", 1,
                      3.0, "ppm/min", 2.0, T0, True)
    cl2 = event(EventKind.RAISED, 2, 5.0, 1, device="cl2-1", confirmed=False,
                reason="calibrating")
    seen = alarms_seen([high, rate, cl2], lambda e: e.at,
                       {"raised": 3, "escalated": 0, "lowered": 0, "confirmed": 0,
                        "cleared": 1})
    out: list[str] = []
    for family in alarm_families(seen):
        metrics._family(out, *family)
    parsed = Scrape("\n".join(out) + "\n")
    assert parsed.types == {"edge_agent_alarms_active": "gauge",
                            "edge_agent_alarm_events": "counter"}
    assert parsed.series("edge_agent_alarms_active") == {
        frozenset({"device": "h2s-1", "channel": "gas", "level": "1",
                   "confirmed": "true"}.items()): 2.0,  # two rules of one channel
        frozenset({"device": "cl2-1", "channel": "gas", "level": "2",
                   "confirmed": "false"}.items()): 1.0}
    assert parsed.value("edge_agent_alarm_events_total", kind="raised") == 3
    assert parsed.value("edge_agent_alarm_events_total", kind="cleared") == 1


def test_status_block_is_empty_without_alarms_and_speaks_chinese_with_zh() -> None:
    assert alarm_lines({"alarms": []}, 0.0) == []
    assert alarm_lines({}, 0.0) == []  # an agent older than the alarms list
    doc = {"alarms": alarms_json(alarms_seen(
        [event(EventKind.RAISED, 2, 5.0, 0, device="cl2-1", rule="high_high",
               threshold=3.0, confirmed=False, reason="calibrating\x1b[2J")],
        lambda e: e.at, {}))}
    now = (T0 + timedelta(minutes=5)).timestamp()
    english = alarm_lines(doc, now)
    assert english[0] == "ALARMS: 1 active alarm"
    row = re.split(r" {2,}", english[2].strip())
    assert row[:4] == ["LEVEL 2", "cl2-1/gas", "high_high", "5 ppm (limit 3)"]
    assert row[4].endswith("(5 min ago)")
    assert row[5] == "UNCONFIRMED: calibrating\\x1b[2J"  # no escape reaches the terminal
    i18n.use("zh")
    try:
        chinese = alarm_lines(doc, now)
    finally:
        i18n.use("en")
    assert chinese[0] == "报警：1 个报警未解除"
    assert "2 级" in chinese[2] and "5 ppm（限值 3）" in chinese[2]
    assert "未确认：calibrating" in chinese[2]


# -- a running agent ---------------------------------------------------------------------

@pytest.fixture
def bus() -> Iterator[SimServer]:
    server = detector_bus()
    yield server
    server.stop()


def edge_agent(*args: str) -> str:
    """``edge-agent ARGS`` as a technician runs it; its printed lines."""
    result = subprocess.run([sys.executable, "-m", "edge_agent", *map(str, args)],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "LANG": "C.UTF-8"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def alarms_of(port: int) -> list[dict]:
    return status(port)["alarms"]


def test_detector_over_its_limit_shows_in_status_metrics_and_the_status_command_until_cleared(
        tmp_path: Path, broker, bus: SimServer) -> None:
    port = free_port()
    config = alarm_station(tmp_path, broker.port, bus.tcp_port, port)
    agent = AgentProcess(config, tmp_path / "agent.log").start().wait_running()
    try:
        wait_until(lambda: status_when_up(port).get("devices"), 30, "the endpoint")
        assert alarms_of(port) == []
        assert edge_agent("status", config).count("ALARMS") == 0

        bus.set_words(H2S, HOLDING, 1, [150])  # 15.0 ppm: above high (10)
        bus.set_words(CL2, HOLDING, 0, [CALIBRATING, 50])  # span gas, 5.0 ppm
        wait_until(lambda: len(alarms_of(port)) == 2, 30, "both alarms in /status")
        active = alarms_of(port)
        scraped = scrape(port)
        english = edge_agent("status", config)
        chinese = edge_agent("--lang", "zh", "status", config)

        bus.set_words(H2S, HOLDING, 1, [50])  # 5.0 ppm: below 10 - deadband 1
        bus.set_words(CL2, HOLDING, 0, [0, 2])  # calibration over, 0.2 ppm
        wait_until(lambda: alarms_of(port) == [], 30, "the alarms gone from /status")
        cleared = scrape(port)
        after = edge_agent("status", config)
    finally:
        assert agent.terminate() == 0

    since = {a["device"]: a.pop("since") for a in active}
    assert active == [
        {"device": "cl2-1", "channel": "gas", "rule": "high_high", "level": 2, "value": 5.0,
         "unit": "ppm", "limit": 3.0, "confirmed": False, "reason": "calibrating"},
        {"device": "h2s-1", "channel": "gas", "rule": "high", "level": 1, "value": 15.0,
         "unit": "ppm", "limit": 10.0, "confirmed": True, "reason": None}]
    assert all(datetime.fromisoformat(at).tzinfo is not None for at in since.values())

    assert scraped.series("edge_agent_alarms_active") == {
        frozenset({"device": "cl2-1", "channel": "gas", "level": "2",
                   "confirmed": "false"}.items()): 1.0,
        frozenset({"device": "h2s-1", "channel": "gas", "level": "1",
                   "confirmed": "true"}.items()): 1.0}
    assert scraped.value("edge_agent_alarm_events_total", kind="raised") == 2

    lines = english.splitlines()
    title = lines.index("ALARMS: 2 active alarms")
    assert title < next(i for i, line in enumerate(lines) if line.startswith("Agent:"))
    assert lines[title + 2].startswith("LEVEL 2") and "cl2-1/gas" in lines[title + 2]
    assert "5 ppm (limit 3)" in lines[title + 2]
    assert lines[title + 2].endswith("UNCONFIRMED: calibrating")
    assert "h2s-1/gas" in lines[title + 3] and "15 ppm (limit 10)" in lines[title + 3]
    assert lines[title + 3].endswith("confirmed")
    assert "报警：2 个报警未解除" in chinese and "未确认：calibrating" in chinese

    assert cleared.series("edge_agent_alarms_active") == {}
    assert cleared.value("edge_agent_alarm_events_total", kind="cleared") == 2
    assert "ALARMS" not in after
