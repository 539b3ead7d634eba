"""The bench runs end to end at a tiny size, so its code cannot rot unnoticed.

Nothing here is timed: the test proves that every row of the issue-11 table is printed
and that both pipelines delivered every reading they accepted (counted by id), not how
fast they were. Figures come from ``python -m bench --short`` (docs/performance.md).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import wire
from bench.report import ROWS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.real_parts
def test_tiny_bench_prints_every_row_and_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--tiny", "--quiet", "--json",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = done.stdout
    for row in ROWS:
        assert row.label in table, f"row missing from the table: {row.label}\n{table}"
    assert "agent/bare" in table and "commit " in table and "cores" in table

    results = json.loads(out.read_text())["results"]
    for workload, runs in results.items():
        if workload in ("all", "sustained"):
            continue
        for kind in ("agent", "bare"):
            assert runs.get(kind), f"{workload}: no {kind} run"
            for run in runs[kind]:
                where = f"{workload} {kind}: {run}"
                assert run["lost"] == 0, where
                assert run["duplicates"] >= 0 and run["accepted"] > 0, where
                if workload in ("w1", "backlog"):
                    # Everything accepted by the window's end arrived before the stop.
                    assert run["behind_at_window_end"] == 0, where
                    assert run["delivered"] + run["waiting_after_stop"] >= run["accepted"]
                if workload.startswith("drain"):
                    assert run["backlog_delivered"] == run["samples"], where


# --- the scaling benches (docs/scaling.md) -----------------------------------------------

def _run_bench(tmp_path: Path, *args: str) -> tuple[str, dict]:
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "bench", *args, "--tiny", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, json.loads(out.read_text())


@pytest.mark.real_parts
def test_station_output_counts_what_the_simulated_station_published(tmp_path: Path) -> None:
    table, raw = _run_bench(tmp_path, "station-output")
    for label in ("GC (generic-gc)", "GC (daniel-enron-gc)", "FTIR", "gas detector", "total",
                  "per day at the measured rate", "time compressed x4", "commit ", "cores"):
        assert label in table, f"missing from the table: {label}\n{table}"
    detectors = raw["tallies"]["gas detector"]
    # Both detectors are polled every 2 s of station time: their samples arrived, one
    # message each, and every message was sized and counted on the wire estimate too.
    assert detectors["devices"] == ["det-1", "det-2"], detectors
    assert detectors["messages"] > 0 and detectors["samples"] == detectors["messages"]
    assert detectors["payload_bytes"] > 300 * detectors["messages"], detectors
    assert detectors["publish_bytes"] > detectors["payload_bytes"]
    assert detectors["ip_up_bytes"] > detectors["publish_bytes"]
    assert raw["nominal_msgs_per_s"]["gas detector"] == pytest.approx(1.0)  # 2 x 1/2 s


@pytest.mark.real_parts
def test_broker_intake_measures_both_brokers_and_probes_shared_subscriptions(
        tmp_path: Path) -> None:
    table, raw = _run_bench(tmp_path, "broker-intake")
    assert "Mosquitto, 1 node" in table and "RabbitMQ, 3 nodes" in table, table
    results = raw["results"]
    for broker in ("mosquitto", "rabbitmq"):
        rows = results[broker]["rows"]
        assert [row["stations"] for row in rows] == [1, 3], rows
        for row in rows:
            # Every station got PUBACKs and the platform subscriber got messages.
            assert row["slowest_station_msgs_per_s"] > 0 and row["delivered_per_s"] > 0, row
            assert row["puback_median_ms"] <= row["puback_p99_ms"], row
    # The facts docs/scaling.md states: Mosquitto shares a $share group's messages out,
    # RabbitMQ's MQTT plugin does not support shared subscriptions (delivers nothing).
    assert results["mosquitto"]["shared"].startswith("supported"), results["mosquitto"]
    assert results["rabbitmq"]["shared"].startswith("not supported"), results["rabbitmq"]
    assert "received 0 + 0 of 20" in results["rabbitmq"]["shared"]
    # Retained messages (the station status): Mosquitto gives them to a wildcard
    # subscription; RabbitMQ keeps them per node and gives none to a wildcard.
    assert results["mosquitto"]["retained"] == (
        "exact topic, same node: got it; edge/+/status, same node: got it")
    assert results["rabbitmq"]["retained"] == (
        "exact topic, same node: got it; exact topic, other node: nothing; "
        "edge/+/status, same node: nothing")


@pytest.mark.parametrize(("length", "size"), [(0, 1), (127, 1), (128, 2), (16_383, 2),
                                              (16_384, 3), (2_097_151, 3), (2_097_152, 4)])
def test_mqtt_remaining_length_takes_the_bytes_the_spec_says(length: int, size: int) -> None:
    assert wire.remaining_length_bytes(length) == size


def test_wire_estimate_of_one_message_adds_up_from_the_packet_format() -> None:
    # PUBLISH QoS 1 on "a/b" with 10 payload bytes: 1 type + 1 length + 2 + 3 topic + 2 id
    assert wire.publish_bytes("a/b", 10) == 19
    assert wire.publish_bytes("a/b", 10, protocol="5") == 20  # + properties length
    assert wire.ip_bytes_up("a/b", 10) == 19 + 52
    # 2 000 payload bytes do not fit one 1448-byte segment: two TCP/IP headers
    assert wire.ip_bytes_up("a/b", 2000) == wire.publish_bytes("a/b", 2000) + 2 * 52
    assert wire.ip_bytes_down() == 4 + 52


@pytest.mark.real_parts
def test_alarm_latency_measures_broker_and_coil_with_and_without_a_backlog(
        tmp_path: Path) -> None:
    table, raw = _run_bench(tmp_path, "alarm-latency")
    for label in ("no backlog", "backlog run, all", "while draining", "broker median",
                  "coil median", "target: alarm median", "commit ", "cores"):
        assert label in table, f"missing from the table: {label}\n{table}"
    for run in ("no backlog", "backlog draining"):
        # one figure per raise, each after its poll (a negative figure is a wrong clock)
        assert len(raw[run]["broker_ms"]) == len(raw[run]["coil_ms"]) == 3
        assert min(raw[run]["broker_ms"] + raw[run]["coil_ms"]) > 0
    assert raw["backlog draining"]["backlog"] == 2000 and raw["no backlog"]["backlog"] == 0
    assert raw["backlog draining"]["seeded_s"] > 0


@pytest.mark.real_parts
def test_poll_profile_prints_the_split_and_the_bare_baseline() -> None:
    done = subprocess.run([sys.executable, "bench/profile_poll.py", "--devices", "2",
                           "--tags", "6", "--polls", "20", "--split", "--baseline"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("2 devices x 6 tags") and "20 polls each: 240 readings" in line
               for line in lines), done.stdout
    # The split counts the measured polls only, not the baseline's that follow them: its
    # two figures (per 1 000 readings, per poll) agree on 6 readings a poll.
    [split] = [line for line in lines if line.startswith("polling thread split")]
    per_thousand, per_poll = (float(x) for x in re.findall(
        r"driver.poll ([\d.]+) CPU s per 1 000 readings \(([\d.]+) us per poll\)", split)[0])
    assert per_poll / per_thousand == pytest.approx(6000, rel=0.1), split
    [baseline] = [line for line in lines if line.startswith("baseline, each alone")]
    bare_us, driver_us, ratio = (float(x) for x in re.findall(
        r"([\d.]+) us per poll, driver.poll ([\d.]+) us: ([\d.]+)x", baseline)[0])
    assert bare_us > 0 and driver_us > 0
    # printed to 0.01 (the ratio) and 0.1 us (each time): the ratio of the printed times
    # may differ from the printed ratio by up to 0.005 + 0.05 * (ratio + 1) / bare_us
    assert ratio == pytest.approx(driver_us / bare_us, abs=0.006 + 0.06 * (ratio + 1) / bare_us)
