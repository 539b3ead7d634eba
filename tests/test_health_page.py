"""The page's JSON (/status with last values and wire counters), the page's files, and who
may read the endpoint: real HTTP requests to the real endpoint of a built agent.

The agent is built but not started: its endpoint serves (a thread, no process), and each
test sets the device state its poller would have written (the last sample, the counters),
so what is checked is exactly what the endpoint makes of it.
"""

from __future__ import annotations

import base64
import json
import math
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.station import write_station

from edge_agent.agent import Agent
from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config
from edge_agent.config.schema import HealthConfig, Secret
from edge_agent.health import page
from edge_agent.link import ExchangeCounts
from edge_agent.model import Quality, Reading, Sample
from edge_agent.tools.ops.common import AgentUnreachable, ask_agent
from edge_agent.tools.sim.broker import free_port

TOKEN = "s3cret-t0ken-for-the-page"
AT = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _station(tmp_path: Path, health: dict) -> Path:
    return write_station(
        tmp_path / "station.yaml", broker_port=free_port(), health={"port": 0, **health},
        links={"gw": {"type": "tcp", "host": "127.0.0.1", "port": free_port(),
                      "timeout_ms": 200}},
        devices=[{"id": "det-1", "link": "gw", "unit_id": 1, "interval_s": 60,
                  "channels": [{"name": "co", "address": 0, "unit": "ppm"}]}])


def _serving(tmp_path: Path, health: dict, env: dict | None = None) -> Iterator[Agent]:
    agent = Agent(load_config(_station(tmp_path, health), env=env or {}))
    agent.health.start()
    try:
        yield agent
    finally:
        agent.stop()


def _port(agent: Agent) -> int:
    from support.waiting import wait_until

    wait_until(lambda: agent.health.port is not None, 10, "the endpoint to listen")
    port = agent.health.port
    assert port is not None
    return port


def get(port: int, path: str, authorization: str | None = None
        ) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with OPENER.open(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _no_constants(name: str) -> None:
    raise AssertionError(f"/status holds {name}, which is not JSON (JSON.parse refuses it)")


def test_status_json_carries_each_channels_last_reading_and_the_wire_counters(tmp_path):
    for agent in _serving(tmp_path, {}):
        state = agent.pollers[0].devices[0]
        state.last_sample = Sample("det-1", AT, (
            Reading("det-1", "co", 12.5, "ppm", Quality.GOOD, AT),
            Reading("det-1", "h2s", None, "ppm", Quality.BAD, AT, "exception_02"),
            Reading("det-1", "temp", math.nan, "degC", Quality.SUSPECT, AT, "out_of_range"),
            Reading("det-1", "mode", "MEAS", "", Quality.GOOD, AT, None, AT),
            Reading("det-1", "alarm", True, "", Quality.GOOD, AT)))
        state.exchanges = ExchangeCounts(requests=9, answers=7, timeouts=2, exceptions=1)
        state.last_error, state.last_error_at = "no_connection: gw: connection refused", 1.0e9
        code, headers, body = get(_port(agent), "/status")
    assert code == 200 and headers["Content-Type"] == "application/json"
    device = json.loads(body, parse_constant=_no_constants)["devices"][0]
    assert device["values"] == [
        {"channel": "co", "value": 12.5, "unit": "ppm", "quality": "GOOD", "reason": None,
         "acquired_at": "2026-03-01T08:00:00.000Z", "instrument_time": None},
        {"channel": "h2s", "value": None, "unit": "ppm", "quality": "BAD",
         "reason": "exception_02", "acquired_at": "2026-03-01T08:00:00.000Z",
         "instrument_time": None},
        {"channel": "temp", "value": "nan", "unit": "degC", "quality": "SUSPECT",
         "reason": "out_of_range", "acquired_at": "2026-03-01T08:00:00.000Z",
         "instrument_time": None},
        {"channel": "mode", "value": "MEAS", "unit": "", "quality": "GOOD", "reason": None,
         "acquired_at": "2026-03-01T08:00:00.000Z",
         "instrument_time": "2026-03-01T08:00:00.000Z"},
        {"channel": "alarm", "value": True, "unit": "", "quality": "GOOD", "reason": None,
         "acquired_at": "2026-03-01T08:00:00.000Z", "instrument_time": None}]
    assert device["counters"] == {"requests": 9, "answers": 7, "timeouts": 2,
                                  "exceptions": 1, "split_reads": 0}
    assert device["last_error"] == "no_connection: gw: connection refused"
    assert device["last_error_at"] == "2001-09-09T01:46:40.000Z"


def test_a_device_never_polled_has_no_values_yet(tmp_path):
    for agent in _serving(tmp_path, {}):
        _, _, body = get(_port(agent), "/status")
    assert json.loads(body)["devices"][0]["values"] == []


def test_the_page_and_its_files_are_served_from_the_package_with_no_outside_source(tmp_path):
    for agent in _serving(tmp_path, {}):
        port = _port(agent)
        answers = {route: get(port, route) for route in page.ROUTES}
    code, headers, html = answers["/"]
    assert code == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Security-Policy"] == page.CSP
    assert "script-src 'self'" in page.CSP and "unsafe-inline" not in page.CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert set(re.findall(rb'(?:src|href)="([^"]+)"', html)) == {
        b"/page/style.css", b"/page/texts.js", b"/page/app.js"}
    for route, (code, _headers, body) in answers.items():
        assert code == 200, route
        assert body, route
        assert b"http://" not in body and b"https://" not in body, f"{route} reaches outside"
    # app.js writes device text as text, never as markup
    app = answers["/page/app.js"][2]
    assert b"innerHTML" not in app and b"insertAdjacentHTML" not in app
    assert b"document.write" not in app


def test_every_text_of_the_page_is_in_the_texts_table(tmp_path):
    """One place for every word (a translation adds a table): each t("id") in app.js has
    an entry, and no entry is left unused."""
    app = (Path(page.__file__).parent / "page" / "app.js").read_text()
    texts = (Path(page.__file__).parent / "page" / "texts.js").read_text()
    defined = set(re.findall(r"^\s+(\w+): \"", texts, re.M))
    used = set(re.findall(r"\bt\(\"(\w+)\"", app))
    used |= {f"quality_{q}" for q in Quality} | {f"state_{s}" for s in ("ok", "degraded", "down")}
    used |= {"channel", "value", "unit", "quality", "reason", "read_at", "requests", "answers",
             "timeouts", "exceptions", "split_reads"}
    assert used - defined == set()
    assert defined - used == set()


def test_on_loopback_without_a_token_everything_is_open(tmp_path):
    for agent in _serving(tmp_path, {}):
        port = _port(agent)
        assert [get(port, route)[0] for route in ("/healthz", "/status", "/metrics", "/")] \
            == [200, 200, 200, 200]


def test_with_a_token_the_endpoint_wants_it_as_bearer_or_basic_password(tmp_path):
    env = {"EDGE_AGENT_HEALTH_TOKEN": TOKEN}
    for agent in _serving(tmp_path, {"token_env": "EDGE_AGENT_HEALTH_TOKEN"}, env):
        port = _port(agent)
        refused = get(port, "/status")
        wrong = get(port, "/status", f"Bearer {TOKEN}x")
        almost = get(port, "/metrics", basic("tech", TOKEN[:-1]))
        bearer = get(port, "/status", f"Bearer {TOKEN}")
        browser = get(port, "/", basic("anyone", TOKEN))
        metrics = get(port, "/metrics", f"bearer {TOKEN}")
        garbled = get(port, "/status", "Basic %%%not-base64")
        healthz = get(port, "/healthz")
        everything = [refused, wrong, almost, bearer, browser, metrics, garbled, healthz]
    assert refused[0] == wrong[0] == almost[0] == garbled[0] == 401
    assert refused[1]["WWW-Authenticate"].startswith('Basic realm="edge-agent"')
    assert bearer[0] == browser[0] == metrics[0] == 200
    assert json.loads(bearer[2])["station"] == "test-station"
    assert healthz[:1] == (200,) and healthz[2] == b"ok\n"  # a liveness probe needs none
    assert all(TOKEN.encode() not in body for _, _, body in everything)


def test_beyond_loopback_without_a_token_only_healthz_answers(tmp_path):
    for agent in _serving(tmp_path, {"host": "0.0.0.0"}):
        port = _port(agent)
        status, healthz, page_answer = get(port, "/status"), get(port, "/healthz"), get(port, "/")
    assert status[0] == page_answer[0] == 403
    assert b"health.token_env" in status[2] and b"/etc/edge-agent/edge-agent.env" in status[2]
    assert healthz[0] == 200


def test_beyond_loopback_with_a_token_file_the_token_opens_it(tmp_path):
    (tmp_path / "health-token").write_text(TOKEN + "\n")
    for agent in _serving(tmp_path, {"host": "0.0.0.0", "token_file": "health-token"}):
        port = _port(agent)
        without, with_token = get(port, "/status"), get(port, "/status", f"Bearer {TOKEN}")
    assert (without[0], with_token[0]) == (401, 200)


def test_status_command_sends_the_token_and_says_when_it_is_refused(tmp_path):
    env = {"EDGE_AGENT_HEALTH_TOKEN": TOKEN}
    for agent in _serving(tmp_path, {"token_env": "EDGE_AGENT_HEALTH_TOKEN"}, env):
        port = _port(agent)
        document = ask_agent(HealthConfig(port=port, token=Secret(TOKEN)))
        with pytest.raises(AgentUnreachable, match="wants its token") as refused:
            ask_agent(HealthConfig(port=port, token=Secret("wrong")))
        with pytest.raises(AgentUnreachable, match="none is set"):
            ask_agent(HealthConfig(port=port))
    assert document["station"] == "test-station"
    assert "wrong" not in str(refused.value)


@pytest.mark.parametrize(("health", "env", "expected"), [
    ({"token_env": "EDGE_AGENT_HEALTH_TOKEN"}, {},
     "health.token_env: environment variable 'EDGE_AGENT_HEALTH_TOKEN' is not set; put "
     "EDGE_AGENT_HEALTH_TOKEN=... in /etc/edge-agent/edge-agent.env"),
    ({"token_env": TOKEN}, {}, "health.token_env: expected the NAME of an environment variable"),
    ({"token": TOKEN}, {}, "never write the token in the station file"),
    ({"token_file": "missing-token"}, {}, "health.token_file: cannot read"),
    ({"token_env": "T", "token_file": "x"}, {"T": "y"},
     "health.token_file: give either token_env or token_file, not both"),
])
def test_a_token_setting_that_cannot_work_is_refused_with_where_and_why(
        tmp_path, health, env, expected):
    with pytest.raises(ConfigError) as err:
        load_config(_station(tmp_path, health), env=env)
    assert expected in str(err.value)
    assert TOKEN not in str(err.value)  # a secret put in the wrong place is not repeated
