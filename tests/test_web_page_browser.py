"""The technician's page in a real browser (headless Chromium from Debian's packages),
against a running agent (a real process) polling simulated instruments and publishing to a
real Mosquitto: the values shown are the values published, a device stopped goes down on
the page and comes back without a reload, the filter and the per-device page work, and
hostile device text stays text. Screenshots are saved under tests/artifacts/.

With EDGE_AGENT_DOCS_SCREENSHOT=1 the overview screenshot is also written to
docs/web-page.png (how that picture is made; normal runs never touch docs/).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from edge_agent_drivers.modbus.settings import RegisterKind
from selenium import webdriver
from support.alarmstation import CALIBRATING, CL2, GAS, H2S, alarm_station, detector_bus
from support.browser import chromium, screenshot, wait_for
from support.health import logged_port
from support.pageagent import agent_showing
from support.station import AgentProcess, write_station
from support.waiting import wait_until

from edge_agent.model import Quality
from edge_agent.tools.sim.simserver import SimServer, SimUnit

DOCS_PICTURE = Path(__file__).resolve().parent.parent / "docs" / "web-page.png"

# What the page shows, read in one go (no element can go stale between two reads).
READ_PAGE = """
const page = {marker: window.__sameDocument || null, devices: {}, station: null,
              backlog: null, broker: null};
const station = document.getElementById("station-id");
page.station = station ? station.textContent : null;
const backlog = document.querySelector('[data-field="backlog"]');
page.backlog = backlog ? backlog.textContent : null;
const broker = document.querySelector('[data-field="broker"]');
page.broker = broker ? broker.textContent : null;
for (const card of document.querySelectorAll("[data-device]")) {
  const values = {};
  for (const row of card.querySelectorAll("tr[data-channel]")) {
    const cell = (f) => row.querySelector(`[data-field="${f}"]`).textContent;
    values[row.dataset.channel] = [cell("value"), cell("unit"), cell("quality"),
                                   cell("reason"), getComputedStyle(
                                     row.querySelector(".quality")).color];
  }
  page.devices[card.dataset.device] = {
    state: card.querySelector('[data-field="state"]').textContent,
    lastError: card.querySelector('[data-field="last-error"]').textContent, values};
}
return page;
"""
GREEN, RED = "rgb(27, 127, 59)", "rgb(179, 38, 30)"


def _station(tmp_path: Path, sim_port: int, broker_port: int) -> Path:
    links = {"gw": {"type": "tcp", "host": "127.0.0.1", "port": sim_port, "timeout_ms": 200}}
    devices = [
        {"id": "det-ok", "link": "gw", "unit_id": 1, "interval_s": 0.3,
         "channels": [{"name": "co", "address": 0, "unit": "ppm"},
                      {"name": "h2s", "address": 1, "unit": "ppm"}]},
        {"id": "det-2", "link": "gw", "unit_id": 2, "interval_s": 0.3,
         "channels": [{"name": "o2", "address": 0, "unit": "%vol", "scale": 0.1}]},
    ]
    return write_station(tmp_path / "station.yaml", broker_port=broker_port, links=links,
                         devices=devices, station_id="cp-east-03",
                         polling={"backoff_initial_s": 0.2, "backoff_max_s": 0.5})


def _published(collector, device: str) -> dict:
    """The values of the newest sample of ``device`` that reached the broker."""
    received = collector.first_deliveries(device)
    assert received, f"nothing published for {device}"
    return received[-1].sample["values"]


@contextmanager
def page_of(agent: AgentProcess) -> Iterator[webdriver.Chrome]:
    """The running agent's page open in Chromium, marked (``window.__sameDocument``) so
    that a test can tell it was never reloaded."""
    wait_until(lambda: logged_port(agent.log()) is not None, 30, "the endpoint")
    with chromium() as browser:
        browser.get(f"http://127.0.0.1:{logged_port(agent.log())}/")
        browser.execute_script("window.__sameDocument = 'loaded once'")
        yield browser


def _shown(value: object) -> str:
    """As the page writes a published value (6 significant digits, as `status`)."""
    return "-" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def test_page_shows_published_values_and_a_device_going_down_and_back_without_reload(
        tmp_path, broker, collector):
    server = SimServer([SimUnit(1, holding={0: 5, 1: 0}), SimUnit(2, holding={0: 209})]).start()
    config = _station(tmp_path, server.tcp_port, broker.port)
    agent = AgentProcess(config, tmp_path / "agent.log").start().wait_running()
    try:
        with page_of(agent) as browser:
            read = lambda: browser.execute_script(READ_PAGE)  # noqa: E731
            # A new value at the instrument: the page shows it without being reloaded,
            # and it is what the broker received.
            server.set_words(1, RegisterKind.HOLDING, 0, [42])
            collector.wait_for(lambda c: any(r.sample["values"]["co"]["value"] == 42
                                             for r in c.first_deliveries("det-ok")),
                               30, "co = 42 published")
            wait_for(browser, lambda _: read()["devices"].get("det-ok", {}).get(
                "values", {}).get("co", [None])[0] == "42", 30, "co = 42 on the page")
            first = read()
            published = {device: _published(collector, device)
                         for device in ("det-ok", "det-2")}

            server.mute(2)
            wait_for(browser, lambda _: read()["devices"]["det-2"]["state"] == "down", 60,
                     "det-2 down on the page")
            down = read()
            overview = screenshot(browser, "web-page-overview")
            browser.find_element("id", "only-problems").click()
            only_problems = read()
            screenshot(browser, "web-page-device-down-only-problems")
            browser.find_element("css selector", '[data-device="det-2"] a.details').click()
            wait_for(browser, lambda b: b.find_elements("id", "diagnostics"), 10,
                     "det-2's communication page")
            diagnostics = browser.execute_script(
                "const c = {}; for (const td of document.querySelectorAll("
                "'#diagnostics td[data-field]')) c[td.dataset.field] = td.textContent;"
                "return c;")
            screenshot(browser, "web-page-device-det-2")
            browser.find_element("id", "back").click()
            wait_for(browser, lambda b: b.find_elements("id", "only-problems"), 10,
                     "the overview again")
            browser.find_element("id", "only-problems").click()  # every device again

            server.mute(2, False)
            wait_for(browser, lambda _: read()["devices"].get("det-2", {}).get("state") == "ok",
                     60, "det-2 ok again on the page")
            back = read()
    finally:
        assert agent.terminate() == 0
        server.stop()

    assert first["station"] == "Station cp-east-03"
    assert first["marker"] == back["marker"] == "loaded once"  # never reloaded
    for device, values in published.items():
        for channel, sent in values.items():
            shown = first["devices"][device]["values"][channel]
            assert shown[:4] == [_shown(sent["value"]), sent["unit"], sent["quality"],
                                 sent.get("reason") or ""], (device, channel, shown, sent)
    assert first["devices"]["det-2"]["values"]["o2"][:3] == ["20.9", "%vol", "GOOD"]
    assert first["devices"]["det-ok"]["values"]["co"][4] == GREEN
    assert "connected since" in first["broker"]

    assert down["devices"]["det-2"]["values"]["o2"][2:5] == ["BAD", "timeout", RED]
    assert down["devices"]["det-2"]["lastError"].startswith("timeout: unit 2: no answer")
    assert list(only_problems["devices"]) == ["det-2"]  # det-ok is all GOOD: filtered out
    assert int(diagnostics["timeouts"]) >= 1 and int(diagnostics["requests"]) >= 2
    assert int(diagnostics["answers"]) < int(diagnostics["requests"])
    assert diagnostics["last-error-detail"].startswith("timeout: unit 2")

    assert back["devices"]["det-2"]["state"] == "ok"
    assert back["devices"]["det-2"]["values"]["o2"][2] == "GOOD"
    assert set(back["devices"]) == {"det-ok", "det-2"}
    assert overview.stat().st_size < 200_000
    if os.environ.get("EDGE_AGENT_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(overview, DOCS_PICTURE)


HOSTILE = {
    "channel": "<i>co</i>",
    "value": '<img src=x onerror="window.__pwned = 1">',
    "unit": "<b>ppm</b>",
    "reason": "</td><script>window.__pwned = 2</script>",
    "error": '"><svg onload="window.__pwned = 3">',
}


@pytest.mark.real_parts  # starts Chromium and its driver
def test_hostile_device_text_is_shown_as_text_and_never_runs(tmp_path):
    agent = agent_showing(tmp_path, HOSTILE["channel"], HOSTILE["value"], HOSTILE["unit"],
                          Quality.SUSPECT, HOSTILE["reason"])
    agent.pollers[0].devices[0].last_error = HOSTILE["error"]
    agent.health.start()
    try:
        wait_until(lambda: agent.health.port is not None, 10, "the endpoint")
        with chromium() as browser:
            for route in ("/", "/#device/det-1"):
                browser.get(f"http://127.0.0.1:{agent.health.port}{route}")
                wait_for(browser, lambda b: b.find_elements("css selector", "tr[data-channel]"),
                         30, "the channel row")
                cells = browser.execute_script(
                    "const row = document.querySelector('tr[data-channel]');"
                    "const f = (n) => row.querySelector(`[data-field=\"${n}\"]`).textContent;"
                    "return {channel: f('channel'), value: f('value'), unit: f('unit'),"
                    " reason: f('reason'), error: document.querySelector("
                    "'[data-field=\"last-error\"]').textContent, pwned: window.__pwned || null,"
                    " injected: document.querySelectorAll("
                    "'#main img, #main script, #main svg, #main b, #main i').length};")
                assert cells == {"channel": HOSTILE["channel"], "value": HOSTILE["value"],
                                 "unit": HOSTILE["unit"], "reason": HOSTILE["reason"],
                                 "error": HOSTILE["error"], "pwned": None, "injected": 0}, route
            screenshot(browser, "web-page-hostile-text")
    finally:
        agent.stop()


# The alarm band, read in one go: its place on the page, colour, title and rows.
READ_ALARMS = """
const band = document.getElementById("alarms");
if (!band) return null;
const first = document.querySelector("#main > section, #main > header");
const rows = [...band.querySelectorAll("tr[data-alarm]")].map((row) => [
  row.dataset.alarm,
  ...["level", "where", "rule", "value", "confirmed"].map(
    (f) => row.querySelector(`[data-field="${f}"]`).textContent)]);
return {first: first.id, title: document.getElementById("alarms-title").textContent,
        background: getComputedStyle(band).backgroundColor, rows: rows};
"""


def test_active_alarms_are_first_on_the_page_in_words_and_gone_once_cleared(tmp_path, broker):
    """A detector over its high-high limit and one over its limit while calibrating: both
    in a red band above everything else, level and UNCONFIRMED (with the reason) in words,
    in English and Chinese; cleared at the detectors, the band goes without a reload."""
    bus = detector_bus()
    config = alarm_station(tmp_path, broker.port, bus.tcp_port)
    agent = AgentProcess(config, tmp_path / "agent.log").start().wait_running()
    try:
        with page_of(agent) as browser:
            read = lambda: browser.execute_script(READ_ALARMS)  # noqa: E731
            wait_for(browser, lambda b: b.find_elements("id", "station-id"), 30, "the page")
            quiet = read()
            bus.set_words(H2S, RegisterKind.HOLDING, GAS, [250])  # 25.0 ppm: high-high
            bus.set_words(CL2, RegisterKind.HOLDING, 0, [CALIBRATING, 20])  # 2.0 ppm
            wait_for(browser, lambda _: len((read() or {}).get("rows", [])) == 2, 30,
                     "both alarms on the page")
            english = read()
            screenshot(browser, "web-page-alarms")
            browser.find_element("css selector", 'a[data-lang="zh"]').click()
            wait_for(browser, lambda _: read()["title"].startswith("报警"), 10, "zh")
            chinese = read()
            screenshot(browser, "web-page-alarms-zh")
            bus.set_words(H2S, RegisterKind.HOLDING, GAS, [50])
            bus.set_words(CL2, RegisterKind.HOLDING, 0, [0, 2])
            wait_for(browser, lambda _: read() is None, 30, "the alarm band gone")
            marker = browser.execute_script("return window.__sameDocument || null")
    finally:
        assert agent.terminate() == 0
        bus.stop()

    assert quiet is None  # no alarm: no band at all
    assert english["first"] == "alarms" and english["background"] == RED
    assert english["title"] == "ALARM: 2 active"
    assert english["rows"] == [
        ["h2s-1/gas/high_high", "LEVEL 2", "h2s-1 / gas", "high_high", "25 ppm (limit 20)",
         "confirmed"],
        ["cl2-1/gas/high", "LEVEL 1", "cl2-1 / gas", "high", "2 ppm (limit 1)",
         "UNCONFIRMED: calibrating"]]
    assert chinese["title"] == "报警：2 个报警未解除"
    assert [row[1] for row in chinese["rows"]] == ["2 级", "1 级"]
    assert chinese["rows"][1][4:] == ["2 ppm（限值 1）", "未确认：calibrating"]
    assert marker == "loaded once"  # never reloaded
