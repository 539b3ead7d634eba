"""What ``edge-agent run`` and ``check`` keep out of memory (issue 11, RSS at W1).

Each test runs the real command line (``edge_agent.cli.main``) in a fresh interpreter and
reads that interpreter's ``sys.modules``: a module imported once stays for the life of
the process, so what a long-running agent holds is what these lists show. Why each
module is kept out, and what it costs, is in docs/performance.md (Memory).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.station import write_station

from edge_agent.config.loader import load_config
from edge_agent.config.schema import Retention
from edge_agent.store.outbox import Outbox
from edge_agent.tools.sim.simserver import SimServer, SimUnit

#: Loaded by the driver and the forwarder; none of it is needed to read a station file.
PROTOCOL_STACK = ("pymodbus", "paho", "asyncio", "ssl", "edge_agent.agent",
                  "edge_agent.forward", "edge_agent.health", "edge_agent.store.outbox",
                  "edge_agent_drivers.modbus.driver", "edge_agent_drivers.serialtext.driver")
#: Never needed by an agent whose devices and broker answer, on an outbox it created before.
NOT_AT_STEADY_STATE = ("tenacity", "sqlite_utils", "click", "pluggy", "dateutil",
                       "edge_agent.tools", "edge_agent.hj212", "edge_agent.sparkplug",
                       "edge_agent.config.jsonschema", "jsonschema", "google.protobuf",
                       "edge_agent_drivers.serialtext.driver",
                       "edge_agent_drivers.serialtext.config_text",
                       "edge_agent_drivers.serialtext.config_record",
                       "edge_agent_drivers.serialtext.protocol.parse",
                       # a text link's client and a text device's settings; Modbus
                       # links and devices need none of it
                       "edge_agent_drivers.serialtext.protocol.settings",
                       "edge_agent_drivers.serialtext.protocol.checksums",
                       "edge_agent_drivers.serialtext.protocol.client",
                       "edge_agent_drivers.serialtext.protocol.framing",
                       "edge_agent_drivers.serialtext.protocol.escapes",
                       # "did you mean" hints, for a file with a mistake only
                       "difflib",
                       # the health page's files, read when the page is first served
                       "importlib.resources",
                       # the alarm engine and outputs, for a station with alarms
                       "edge_agent.alarms.runtime", "edge_agent.alarms.engine",
                       "edge_agent.alarms.action", "edge_agent.alarms.conditions",
                       "edge_agent.alarms.honesty", "edge_agent.alarms.tally",
                       # the port listing, for the message about a missing serial port
                       "serial.tools",
                       # what the health endpoint computes for a request (none was made)
                       "edge_agent.health.snapshot", "edge_agent.health.metrics",
                       # the alarm reader (no alarms written) and the reload planner
                       # (no SIGHUP)
                       "edge_agent.config.validate_alarms", "edge_agent.reload",
                       "edge_agent.alarms.changes")
#: What a polling, forwarding agent must have loaded: the report comes from a real one.
AT_STEADY_STATE = ("pymodbus", "paho.mqtt.client", "edge_agent.agent",
                   "edge_agent_drivers.modbus.driver")

# Run in a fresh interpreter: ``loaded(names)`` lists the loaded modules that are, or are
# inside, one of ``names``; "present" is which of AT_STEADY_STATE are loaded. The station
# is loaded through a wrapper that notes what was already imported; a thread waits until
# three samples were committed and the broker acknowledged all of them, reports, and
# stops the agent the way systemd does (SIGTERM).
RUN_AND_REPORT = """\
import json, os, signal, sqlite3, sys, threading, time
import edge_agent.cli as cli

def loaded(names):
    return sorted(m for m in sys.modules if any(m == n or m.startswith(n + ".") for n in names))

report = {{}}
load_station = cli.load_station

def noting_load(path):
    report.setdefault("at_load", loaded({before!r}))
    return load_station(path)

def delivered_three():
    if not os.path.exists({db!r}):  # the agent creates it (the new-outbox case)
        return False
    conn = sqlite3.connect("file:{db}?mode=ro", uri=True)
    try:
        seq = dict(conn.execute("SELECT device_id, last_seq FROM device_seq")).get("dev", 0)
        return seq >= 3 and conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
    except sqlite3.OperationalError:  # its schema is not committed yet
        return False
    finally:
        conn.close()

def report_when_steady():
    while not delivered_three():
        time.sleep(0.05)
    report["absent"] = loaded({absent!r})
    report["present"] = sorted(m for m in {present!r} if m in sys.modules)
    print("REPORT " + json.dumps(report), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

cli.load_station = noting_load
threading.Thread(target=report_when_steady, daemon=True).start()
sys.exit(cli.main(["run", {station!r}]))
"""

CHECK_AND_REPORT = """\
import sys
from edge_agent.cli import main
status = main(["check", {station!r}])
print("LOADED", sorted(m for m in sys.modules if any(
    m == n or m.startswith(n + ".") for n in {names!r})), flush=True)
sys.exit(status)
"""


def _station(tmp_path, broker_port: int, device_port: int):
    return write_station(
        tmp_path / "station.yaml", broker_port=broker_port,
        links={"lan": {"type": "tcp", "host": "127.0.0.1", "port": device_port}},
        devices=[{"id": "dev", "link": "lan", "unit_id": 1, "interval_s": 0.2,
                  "channels": [{"name": "co", "address": 0, "register": "input",
                                "type": "float32", "unit": "ppm"}]}])


@pytest.mark.real_parts
def test_check_loads_no_protocol_client(tmp_path):
    """``check`` reads every driver kind's settings through the registry, but imports no
    driver class, so neither pymodbus (with asyncio and ssl) nor paho."""
    station = _station(tmp_path, 9, 9)  # nothing is contacted
    result = subprocess.run(
        [sys.executable, "-c", CHECK_AND_REPORT.format(station=str(station),
                                                       names=PROTOCOL_STACK)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "LOADED []"


@pytest.mark.parametrize("outbox_exists", [True, False], ids=["existing-outbox", "new-outbox"])
def test_run_loads_the_station_first_and_keeps_tool_and_retry_code_out(tmp_path, broker,
                                                                       outbox_exists):
    """The station file is loaded before the agent's modules are imported (they reuse the
    memory the YAML load frees); once polling and forwarding, the agent holds no
    retry library (no failure needed it), no sqlite-utils (not even when the agent created
    its outbox: a new file's schema is plain SQL, issue 11), no tool, HJ 212 or Sparkplug
    code, no serial-text driver, settings, config reader or link client (no such device
    or link),
    no alarm engine (no alarms), no difflib (a valid file needs no suggestion), no
    serial port listing (no port is missing), no alarm reader or reload planner (no
    alarms written, no SIGHUP), and neither the health endpoint's snapshot and metrics
    nor importlib.resources (nobody asked the endpoint or opened the page)."""
    server = SimServer([SimUnit(1, input={0: 0x41C8, 1: 0x0000})]).start()
    try:
        station = _station(tmp_path, broker.port, server.tcp_port)
        db = tmp_path / "outbox.sqlite3"
        if outbox_exists:
            Outbox(db, Retention()).close()  # created earlier, as by the first start
        code = RUN_AND_REPORT.format(before=PROTOCOL_STACK, absent=NOT_AT_STEADY_STATE,
                                     present=AT_STEADY_STATE, db=str(db),
                                     station=str(station))
        result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                text=True, timeout=120)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    [line] = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    report = json.loads(line.removeprefix("REPORT "))
    assert report == {"at_load": [], "absent": [],
                      "present": sorted(AT_STEADY_STATE)}, result.stderr[-3000:]


def test_names_and_units_repeated_on_every_device_are_kept_once(tmp_path):
    """The config objects a running agent keeps hold one string per distinct channel
    name and unit, not one per device (W1: 500 channels, 25 names, one unit)."""
    channels = [{"name": f"t{i}", "address": 2 * i, "register": "input", "type": "float32",
                 "unit": "ppm"} for i in range(3)]
    path = write_station(tmp_path / "station.yaml", broker_port=9,
                         links={"lan": {"type": "tcp", "host": "127.0.0.1", "port": 9}},
                         devices=[{"id": f"dev-{n}", "link": "lan", "unit_id": n, "interval_s": 1,
                                   "channels": channels} for n in (1, 2)])
    first, second = (device.settings.channels for device in load_config(path).devices)
    for one, other in zip(first, second, strict=True):
        assert one.name == other.name and one.name is other.name
        assert one.unit is other.unit is first[0].unit


@pytest.mark.real_parts
def test_the_memory_bench_measures_every_case(tmp_path):
    """``python -m bench.memory --tiny`` runs every case on live pipelines (each stored
    samples) and prints a row per case; no figure is judged here, only that they exist."""
    raw = tmp_path / "memory.json"
    result = subprocess.run([sys.executable, "-m", "bench.memory", "--tiny", "--quiet",
                             "--json", str(raw)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(raw.read_text())["results"]
    assert sorted(results) == ["agent-existing", "agent-new", "bare", "demo"]
    for case, runs in results.items():
        [run] = runs
        assert run["stored"] > 0, case
        assert 0 < run["RssAnon"] < run["VmRSS"] <= run["VmHWM"], (case, run)
    assert "agent, existing outbox: VmRSS" in result.stdout
