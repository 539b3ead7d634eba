"""The profile simulators' models, by tables: what each instrument's registers hold at a
given simulated second (analysis cycles, counters, flags and streams, measurement times,
warm-up, faults, ramps and seeded noise), decoded here with ``struct``; and the file that
configures them, refused with every problem named by line."""

from __future__ import annotations

import struct
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from edge_agent_drivers.modbus.settings import RegisterKind

from edge_agent.config.errors import ConfigError
from edge_agent.tools.sim.models import (
    Common,
    DanielGcModel,
    DetectorModel,
    Fault,
    FtirModel,
    GcModel,
    Signal,
)
from edge_agent.tools.sim.simconfig import load_sim_config
from edge_agent.tools.sim.simulate import Simulation

HOLDING, INPUT = RegisterKind.HOLDING, RegisterKind.INPUT
START = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


def common(**kwargs) -> Common:  # noqa: ANN003 - Common's fields
    return Common("dev", START, **kwargs)


def words(image, kind: RegisterKind, start: int, count: int) -> list[int]:
    return [image[(kind, start + i)] for i in range(count)]


def cdab(image, address: int) -> float:
    low, high = words(image, HOLDING, address, 2)
    return struct.unpack(">f", struct.pack(">HH", high, low))[0]


@pytest.mark.parametrize(("t_s", "cycle", "stream", "finished", "benzene"), [
    (0.0, 1, 1, (2026, 11, 29, 10, 0, 0), 1.0),
    (299.9, 1, 1, (2026, 11, 29, 10, 0, 0), 1.0),
    (300.0, 2, 2, (2026, 11, 29, 10, 5, 0), 1.5),
    (900.0, 4, 2, (2026, 11, 29, 10, 15, 0), 2.5),
    (1200.0, 5, 1, (2026, 11, 29, 10, 20, 0), 3.0),
])
def test_gc_completes_an_analysis_per_cycle_on_its_streams_in_turn(t_s, cycle, stream,
                                                                  finished, benzene):
    model = GcModel(common(utc_offset_min=480, values={"benzene": Signal(1.0, 6.0)}),
                    cycle_s=300, streams=(1, 2))
    snapshot = model.snapshot(t_s)
    image = {**snapshot.result, **snapshot.live}
    assert snapshot.result_id == cycle
    assert words(image, HOLDING, 1, 8) == [cycle, stream, *finished]
    assert cdab(image, 12) == pytest.approx(benzene)  # 6 ppb an hour, at the analysis time
    assert (HOLDING, 0) not in snapshot.result  # the status word is live


@pytest.mark.parametrize(("t_s", "status"), [(0, 0b1000), (59, 0b1000), (60, 0), (100, 0b10),
                                             (130, 0b11), (150, 0b01), (200, 0)])
def test_gc_status_shows_warm_up_and_fault_windows(t_s, status):
    faults = (Fault("calibrating", 100, 140), Fault("fault", 130, 160))
    snapshot = GcModel(common(warmup_s=60, faults=faults)).snapshot(t_s)
    assert snapshot.live == {(HOLDING, 0): status}


def test_noise_is_seeded_bounded_and_new_with_each_analysis():
    def benzene(seed: str, t_s: float) -> float:
        values = {"benzene": Signal(0.2, noise=1.0, low=0.0, high=1.0)}
        return cdab(GcModel(common(values=values, seed=seed), cycle_s=10).snapshot(t_s)
                    .result, 12)

    draws = [benzene("a", 10.0 * n) for n in range(50)]
    assert draws == [benzene("a", 10.0 * n) for n in range(50)]  # same seed, same values
    assert draws != [benzene("b", 10.0 * n) for n in range(50)]
    assert all(0.0 <= value <= 1.0 for value in draws) and len(set(draws)) > 10
    assert benzene("a", 3.0) == benzene("a", 7.0)  # one value per analysis


def test_daniel_gc_sets_its_flag_with_each_analysis_in_enron_registers():
    model = DanielGcModel(common(values={"methane": Signal(91.5)}, faults=(
        Fault("calibrating", 250, 260),)), cycle_s=240, streams=(3, 4))
    first, second = model.snapshot(10), model.snapshot(255)
    assert (first.result_id, second.result_id) == (1, 2)
    assert first.result[(HOLDING, 3001)] == 1 and first.result[(HOLDING, 3003)] == 3
    assert second.result[(HOLDING, 3003)] == 4 and second.result[(HOLDING, 5001)] == 240
    methane = struct.unpack(">f", struct.pack(">I", first.result[(HOLDING, 7001)]))[0]
    assert methane == pytest.approx(91.5)
    assert first.live == {(HOLDING, 3002): 0} and second.live == {(HOLDING, 3002): 0b10}


@pytest.mark.parametrize(("t_s", "measurement", "status"), [
    (0, 1, 0), (30, 2, 0), (60, 3, 1), (95, 4, 0x100), (125, 5, 0)])
def test_ftir_measures_every_cycle_with_its_time_and_background_every_third(
        t_s, measurement, status):
    model = FtirModel(common(faults=(Fault("concentration_alarm", 90, 100),)), cycle_s=30,
                      background_every=3)
    snapshot = model.snapshot(t_s)
    assert snapshot.result_id == measurement
    high, low = words(snapshot.result, INPUT, 0, 2)
    assert high << 16 | low == int(START.timestamp()) + 30 * (measurement - 1)
    assert snapshot.live == {(INPUT, 2): status}


@pytest.mark.parametrize(("t_s", "state", "faults", "gases"), [
    (0, 1, 0, [209, 3, 5, 0]),         # warming up
    (30, 0, 0, [209, 3, 5, 0]),
    (60, 0, 0b100, [209, 3, 65535, 0]),  # H2S sensor broken: sentinel and its fault bit
    (95, 0, 0b010, [209, 3, 5, 0]),    # CO sensor faulty, its reading still shown
    (130, 3, 0, [209, 3, 5, 0]),       # calibrating
    (200, 0, 0, [209, 3, 5, 0]),
])
def test_detector_warms_up_and_fails_sensor_by_sensor(t_s, state, faults, gases):
    values = {"o2": Signal(20.9), "co": Signal(3), "h2s": Signal(0.5), "lel": Signal(0)}
    model = DetectorModel(common(warmup_s=30, values=values,
                                 faults=(Fault("broken", 60, 90, "h2s"),
                                         Fault("sensor_fault", 90, 120, "co"),
                                         Fault("calibrating", 120, 150))))
    snapshot = model.snapshot(t_s)
    image = snapshot.live
    assert snapshot.result_id is None
    assert words(image, HOLDING, 0, 6) == [state, faults, *gases]
    assert words(image, HOLDING, 16, 2) == [0x4D47, 0x4434]  # "MGD4"


def test_a_cleared_new_result_flag_stays_cleared_until_the_next_analysis(tmp_path):
    path = tmp_path / "sim.yaml"
    path.write_text("servers: {lan: {listen: '127.0.0.1:0'}}\n"
                    "devices:\n"
                    "  - {id: ng, server: lan, unit_id: 2, profile: daniel-enron-gc,\n"
                    "     cycle_s: 100, faults: [{kind: fault, from_s: 20, to_s: 30}]}\n")
    now = [0.0]
    simulation = Simulation(load_sim_config(path), clock=lambda: now[0]).start()
    server = simulation.servers["lan"]
    try:
        assert server.get_words(2, HOLDING, 3001, 3) == [1, 0, 1]
        server.set_words(2, HOLDING, 3001, [0])  # what a master's clear_flag writes
        now[0] = 25.0
        simulation.step()  # the alarm word changes, the analysis does not
        assert server.get_words(2, HOLDING, 3001, 3) == [0, 1, 1]
        now[0] = 100.0
        simulation.step()
        assert server.get_words(2, HOLDING, 3001, 2) == [1, 0]
        assert server.get_words(2, HOLDING, 5001)[0] == 100
    finally:
        simulation.stop()


BROKEN = """\
servers:
  lan: {listen: "127.0.0.1:99999"}
  bus: {pty: true, port: /dev/ttyUSB0}
  ok: {listen: "127.0.0.1:0", baudrate: 9600}
devices:
  - id: gc-1
    server: lam
    unit_id: 1
    profile: generic-gc
    streams: [1, 0]
    background_every: 3
    values:
      benzen: {base: 1}
      toluene: {base: 1, min: 5, max: 2}
  - id: det
    server: ok
    unit_id: 300
    profile: generic-gas-detector
    utc_offset: "8"
    faults:
      - {kind: broken, from_s: 10, to_s: 5}
      - {kind: calibrating, channel: co, from_s: 1, to_s: 2}
  - id: x
    server: ok
    unit_id: 1
    profile: generic-fitr
"""


def test_a_broken_simulate_file_is_refused_with_every_problem_by_line(tmp_path):
    path = tmp_path / "sim.yaml"
    path.write_text(BROKEN)
    with pytest.raises(ConfigError) as refused:
        load_sim_config(path)
    assert str(refused.value).replace(str(path), "F").splitlines() == EXPECTED_PROBLEMS


EXPECTED_PROBLEMS = [
    'F:2: servers.lan.listen: expected HOST:PORT, e.g. 127.0.0.1:1502 or 0.0.0.0:502 '
    "(port 0: a free one), found '127.0.0.1:99999'",
    'F:3: servers.bus: give exactly one of listen: HOST:PORT (Modbus TCP), pty: true '
    '(a virtual serial port) or port: /dev/ttyUSB1 (found pty, port)',
    'F:4: servers.ok.baudrate: a baud rate is for pty or port servers, not listen',
    "F:7: devices[0].server: 'lam' is not defined (known: lan, bus, ok) (did you mean"
    " 'lan'?)",
    'F:10: devices[0].streams: expected stream numbers 1..65535, e.g. [1, 2], found 0',
    "F:11: devices[0].background_every: 'background_every' is a setting of "
    "generic-ftir; this device's profile is generic-gc",
    "F:13: devices[0].values.benzen: unknown setting (did you mean 'benzene'?)",
    'F:14: devices[0].values.toluene.max: must not be below min (5)',
    'F:17: devices[1].unit_id: expected an integer 0..255, found 300',
    'F:19: devices[1].utc_offset: expected an offset from UTC such as "+08:00" or '
    '"-05:00" (in quotes), found \'8\'',
    'F:21: devices[1].faults[0].to_s: must be after from_s (10)',
    'F:21: devices[1].faults[0].channel: required setting is missing (the gas whose '
    'sensor fails: o2, co, h2s or lel)',
    'F:22: devices[1].faults[1].channel: a calibrating fault is the whole '
    "instrument's; channel is for broken or sensor_fault",
    'F:26: devices[2].profile: expected generic-gc, daniel-enron-gc, generic-ftir or '
    "generic-gas-detector, found 'generic-fitr' (did you mean 'generic-ftir'?)",
]


@pytest.mark.real_parts
def test_the_example_simulate_file_is_valid():
    result = subprocess.run([sys.executable, "-m", "edge_agent", "simulate",
                             str(ROOT / "config" / "simulate.example.yaml"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("5 devices on 2 servers")


def test_one_process_serves_many_devices_each_with_its_own_values(tmp_path):
    from edge_agent_drivers.modbus.protocol.transport import ModbusLinkClient

    from edge_agent.config.schema import TcpLink

    path = tmp_path / "load.yaml"
    path.write_text("servers: {lan: {listen: '127.0.0.1:0'}}\ndevices:\n" + "".join(
        f"  - {{id: det-{n}, server: lan, unit_id: {n}, profile: generic-gas-detector,\n"
        f"     values: {{co: {{base: {n}}}, o2: {{base: 20.9}}}}}}\n" for n in range(1, 101)))
    simulation = Simulation(load_sim_config(path)).start()
    client = ModbusLinkClient(TcpLink("lan", "127.0.0.1", simulation.servers["lan"].tcp_port))
    try:
        readings = {n: client.read_registers(n, HOLDING, 0, 4) for n in range(1, 101)}
    finally:
        client.close()
        simulation.stop()
    assert readings == {n: [0, 0, 209, n] for n in range(1, 101)}
