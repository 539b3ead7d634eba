"""``python -m bench broker-intake``: how many messages a broker, or a broker cluster,
takes in from N stations, each publishing as the agent does.

For each N: N publisher clients (bench/intake_clients.py: QoS 1, the agent's message
size and topic shape, at most ``max_inflight`` = 20 waiting for PUBACK each, sending the
next one when a PUBACK arrives, so as fast as the broker acknowledges) and one platform
subscriber on ``edge/#`` (QoS 1). After a warm-up, one window: acknowledged messages/s,
PUBACK latency median and p99, messages delivered to the subscriber, and the CPU the
broker processes used (utime + stime from /proc), as % of one core and as messages per
broker CPU-second.

Against (a) one private Mosquitto, the baseline, and (b) a three-node RabbitMQ cluster
with its MQTT plugin (tests/support/rabbitmq.py), publishers spread round-robin over the
nodes and the subscriber on the first. Ratios are against Mosquitto at the same N, in
the same run. Also probes, on each broker, shared subscriptions
(``$share/platform/edge/#``, two members) and where a retained station status reaches a
subscriber that comes later (same node or another, exact topic or wildcard).

The clients are Python (paho) and run on the same machine as the brokers: on a small
machine they, not the broker, can set the pace. The broker CPU columns say how much of
a core the broker needed for the rate seen; messages per broker CPU-second is the figure
that carries over to other machines best, and still only roughly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bench.intake_clients import Load, probe_retained, probe_shared
from bench.measure import cpu_seconds, percentile
from bench.pipelines import ROOT
from bench.report import header
from edge_agent.tools.sim.broker import Mosquitto

# Mean payload of the messages of the example station (python -m bench station-output
# --short, 2026-12-03, docs/scaling.md): most are gas-detector messages of ~700 bytes.
PAYLOAD_BYTES = 754
WINDOW = 20  # the agent's default mqtt.max_inflight
# A subscriber that falls behind must not make Mosquitto drop messages (its default
# queue limit is 1000 per client), or "delivered" would mean nothing.
MOSQUITTO_OPTIONS = "max_queued_messages 0\nmax_queued_bytes 0\n"


@dataclass(frozen=True)
class Form:
    name: str
    stations: tuple[int, ...]
    warmup_s: float
    window_s: float
    subscriber: bool = True


FORMS = {"full": Form("full", (1, 10, 50, 100, 200), 3, 15),
         "short": Form("short", (1, 10, 50, 100), 2, 6),
         "tiny": Form("tiny", (1, 3), 0.5, 1)}


def _rabbit_cluster():
    """tests/support/rabbitmq.py, which the failover tests use too: one way to start a
    private cluster in this repo."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support.rabbitmq import RabbitCluster, cluster_processes
    return RabbitCluster, cluster_processes


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):  # a helper that ended meanwhile
            total += cpu_seconds(pid)
    return total


def run_load(ports: list[int], subscribe_port: int | None, stations: int, form: Form,
             broker_pids: Callable[[], list[int]]) -> dict:
    """N publishers spread over ``ports``, one subscriber; one measured window."""
    load = Load(stations, ports, subscribe_port, PAYLOAD_BYTES, WINDOW)
    try:
        time.sleep(form.warmup_s)
        pids = broker_pids()
        cpu0, clients0 = _cpu(pids), _cpu(load.pids)
        t0 = time.monotonic()
        load.start()
        time.sleep(form.window_s)
        load.stop_counting()
        t1 = time.monotonic()
        cpu1, clients1 = _cpu(pids), _cpu(load.pids)
        received, per_station = load.results()
    finally:
        load.stop()
    latencies = [latency * 1000 for _, acks in per_station for _, latency in acks]
    seconds = t1 - t0
    broker_cpu = (cpu1 - cpu0) / seconds
    rate = len(latencies) / seconds
    return {"stations": stations, "msgs_per_s": rate,
            "puback_median_ms": statistics.median(latencies) if latencies else float("nan"),
            "puback_p99_ms": percentile(latencies, 0.99),
            "delivered_per_s": received / seconds if received is not None else None,
            "broker_cpu_pct": 100 * broker_cpu,
            "msgs_per_broker_cpu_s": rate / broker_cpu if broker_cpu > 0 else float("nan"),
            "clients_cpu_pct": 100 * (clients1 - clients0) / seconds,
            "slowest_station_msgs_per_s": min((len(acks) / seconds for _, acks in per_station),
                                              default=0.0)}


def run_mosquitto(form: Form, workdir: Path, log: Callable[[str], None]) -> dict:
    rows = []
    for stations in form.stations:
        broker = Mosquitto(workdir / f"mosquitto-{stations}",
                           listener_options=MOSQUITTO_OPTIONS).start()
        try:
            pids = [broker.process.pid]  # type: ignore[union-attr]
            row = run_load([broker.port], broker.port if form.subscriber else None,
                           stations, form, pids.copy)
        finally:
            broker.stop()
        log(f"  mosquitto N={stations}: {row}")
        rows.append(row)
    probe_broker = Mosquitto(workdir / "mosquitto-shared").start()
    try:
        shared = probe_shared(probe_broker.port, (probe_broker.port, probe_broker.port))
        retained = probe_retained(probe_broker.port, probe_broker.port)
    finally:
        probe_broker.stop()
    return {"rows": rows, "shared": shared.text(), "retained": retained}


def run_rabbitmq(form: Form, workdir: Path, log: Callable[[str], None]) -> dict:
    cluster_class, cluster_processes = _rabbit_cluster()
    cluster = cluster_class(workdir / "rabbitmq").start()
    log(f"  rabbitmq cluster of {len(cluster.nodes)} started in {cluster.started_in_s:.0f} s")
    try:
        ports = [node.mqtt_port for node in cluster.nodes]
        rows = []
        for stations in form.stations:
            row = run_load(ports, ports[0] if form.subscriber else None, stations, form,
                           lambda: cluster_processes(cluster.epmd_port))
            log(f"  rabbitmq N={stations}: {row}")
            rows.append(row)
        shared = probe_shared(ports[1], (ports[0], ports[2]))
        retained = probe_retained(ports[0], ports[1])
        version = cluster.ctl(cluster.nodes[0], "version").strip()
    finally:
        cluster.stop()
    return {"rows": rows, "shared": shared.text(), "retained": retained, "version": version,
            "nodes": len(cluster.nodes)}


def table(results: dict, head: list[str], form: Form) -> str:
    lines = list(head)
    lines.append(f"load: N stations = N paho clients, MQTT 3.1.1, QoS 1, {PAYLOAD_BYTES}-byte "
                 f"payloads, at most {WINDOW} in flight each (as fast as PUBACKs return); "
                 f"{'one subscriber on edge/# (QoS 1)' if form.subscriber else 'NO subscriber'}"
                 f", clients in {3 if form.subscriber else 2} processes; warm-up "
                 f"{form.warmup_s:g} s, window {form.window_s:g} s per N; clients and brokers "
                 f"on this machine")
    lines.append(f"{'broker':<20} {'N':>4} {'msgs/s':>8} {'vs mosq.':>8} {'PUBACK med':>10} "
                 f"{'p99 ms':>8} {'slowest/s':>9} {'delivered/s':>11} {'broker CPU%':>11} "
                 f"{'msgs/CPU-s':>10} {'clients CPU%':>12}")
    baseline = {row["stations"]: row["msgs_per_s"] for row in results["mosquitto"]["rows"]}
    names = {"mosquitto": "Mosquitto, 1 node"}
    if "rabbitmq" in results:
        names["rabbitmq"] = f"RabbitMQ, {results['rabbitmq']['nodes']} nodes"
    for key, name in names.items():
        for row in results[key]["rows"]:
            base = baseline.get(row["stations"])
            ratio = f"{row['msgs_per_s'] / base:.2f}x" if base else "-"
            lines.append(f"{name:<20} {row['stations']:>4} {row['msgs_per_s']:>8.0f} "
                         f"{ratio:>8} {row['puback_median_ms']:>10.1f} "
                         f"{row['puback_p99_ms']:>8.1f} "
                         f"{row['slowest_station_msgs_per_s']:>9.0f} "
                         f"{_number(row['delivered_per_s']):>11} "
                         f"{row['broker_cpu_pct']:>11.0f} "
                         f"{row['msgs_per_broker_cpu_s']:>10.0f} "
                         f"{row['clients_cpu_pct']:>12.0f}")
    for key, name in names.items():
        version = f" ({results[key]['version']})" if "version" in results[key] else ""
        lines.append(f"shared subscriptions, {name}{version}: {results[key]['shared']}")
        lines.append(f"retained status to a new subscriber, {name}: {results[key]['retained']}")
    lines.append("msgs/s: PUBACKs in the window; vs mosq.: against Mosquitto at the same N, "
                 "this run; broker CPU%: of one core, all broker processes; msgs/CPU-s: "
                 "msgs/s per broker core fully used")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench broker-intake",
        description="How many messages one Mosquitto and a 3-node RabbitMQ cluster take in "
                    "from N simulated stations (docs/scaling.md). Without --short or --tiny: "
                    "the full form (about 5 minutes).")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--short", action="store_const", const="short", dest="form",
                      help="about 2 minutes")
    size.add_argument("--tiny", action="store_const", const="tiny", dest="form",
                      help="only proves it runs (the smoke test)")
    parser.add_argument("--no-rabbitmq", action="store_true",
                        help="Mosquitto only (RabbitMQ not installed, or no time for it)")
    parser.add_argument("--no-subscriber", action="store_true",
                        help="without the platform subscriber: intake alone, nothing routed "
                             "to a subscription (delivered/s shows '-')")
    parser.add_argument("--json", type=Path, help="also write the raw rows here")
    parser.add_argument("--quiet", action="store_true", help="print only the table")
    args = parser.parse_args(argv)
    form = FORMS[args.form or "full"]
    if args.no_subscriber:
        form = replace(form, subscriber=False)
    head = header(f"broker intake, {form.name}")
    log = (lambda text: None) if args.quiet else (lambda text: print(text, flush=True))
    started = time.monotonic()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="edge-bench-intake-") as tmp:
        workdir = Path(tmp)
        results["mosquitto"] = run_mosquitto(form, workdir, log)
        if not args.no_rabbitmq:
            results["rabbitmq"] = run_rabbitmq(form, workdir, log)
    text = table(results, head, form)
    print(text)
    print(f"bench took {time.monotonic() - started:.0f} s ({os.cpu_count()} cores)")
    if args.json:
        args.json.write_text(json.dumps({"form": asdict(form), "payload_bytes": PAYLOAD_BYTES,
                                         "results": results, "table": text}, indent=1))
