"""Per-thread CPU and context switches of either pipeline at a given offered rate.

Run: ``.venv/bin/python -m bench.threads --rate 8000 --rate 16000 [--kinds agent,bare]``.
For each rate and pipeline it starts the short form's simulators (4 endpoints x 5 units x
25 float32 tags), a private Mosquitto and the pipeline, as ``python -m bench`` does, and
reads ``/proc/PID/task/TID/{stat,status}`` at the start and end of one window: each
thread's CPU (% of one core) and its voluntary and involuntary context switches per
second, named by the thread's ``comm`` (the agent names its threads ``poll-<link>``,
``outbox-writer``, ...). It also prints the stored rate (from the outbox's
``device_seq``) and the CPU of the simulator and broker processes, which share the
machine: on two cores the sustained rate is a question of who gets the CPU.

Why it exists: the sustained-rate search says *that* a pipeline falls behind, this says
which of its threads spend the CPU and where they wait (a thread that switches
voluntarily once per sample waits once per sample). Issue 11; docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

from bench.measure import Arrivals
from bench.pipelines import PipelineProcess, accepted_seqs
from bench.runner import BROKER_OPTIONS, PROFILES, SimHost, _spec
from edge_agent.tools.sim.broker import Mosquitto

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def thread_counters(pid: int) -> dict[tuple[int, str], tuple[float, int, int]]:
    """Per (tid, comm): CPU seconds, voluntary and involuntary context switches so far."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        base = f"/proc/{pid}/task/{tid}"
        try:
            comm = Path(f"{base}/comm").read_text().strip()
            fields = Path(f"{base}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"{base}/status").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        switches = {key: int(rest) for key, _, rest in
                    (line.partition(":") for line in status.splitlines())
                    if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")}
        found[(int(tid), comm)] = ((int(fields[11]) + int(fields[12])) / TICKS_PER_S,
                                   switches["voluntary_ctxt_switches"],
                                   switches["nonvoluntary_ctxt_switches"])
    return found


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def measure(kind: str, rate: float, window_s: float, warmup_s: float) -> list[str]:
    """One run of ``kind`` offered ``rate`` tags/s; the report's lines."""
    profile = PROFILES["short"]
    devices = profile.links * profile.units_per_link
    interval_s = devices * profile.tags / rate
    work = Path(tempfile.mkdtemp(prefix=f"threads-{kind}-"))
    sim = SimHost(profile.links, profile.units_per_link, profile.tags)
    broker = Mosquitto(work / "broker", listener_options=BROKER_OPTIONS).start()
    arrivals = Arrivals(broker.port, f"count-{uuid.uuid4().hex[:8]}").start()
    spec = _spec(sim, profile, profile.units_per_link, interval_s, broker.port,
                 work / "outbox.sqlite3")
    proc = PipelineProcess(kind, spec, work)
    others = {"simulator": sim.process.pid, "broker": broker.process.pid,
              "subscriber": os.getpid()}
    try:
        proc.wait_ready()
        time.sleep(warmup_s)
        before = thread_counters(proc.pid)
        others0 = {k: process_cpu_s(p) for k, p in others.items()}
        stored0, t0 = sum(accepted_seqs(spec.db).values()), time.monotonic()
        time.sleep(window_s)
        after = thread_counters(proc.pid)
        others1 = {k: process_cpu_s(p) for k, p in others.items()}
        stored1, t1 = sum(accepted_seqs(spec.db).values()), time.monotonic()
    finally:
        proc.stop()
        arrivals.stop()
        broker.stop()
        sim.stop()
    span = t1 - t0
    stored = (stored1 - stored0) * profile.tags / span
    rows = []
    for key, (cpu, vol, invol) in after.items():
        cpu0, vol0, invol0 = before.get(key, (0.0, 0, 0))
        rows.append((cpu - cpu0, (vol - vol0) / span, (invol - invol0) / span, key[1]))
    rows.sort(reverse=True)
    total = sum(row[0] for row in rows)
    samples_per_s = stored / profile.tags
    lines = [f"{kind} offered {rate:.0f} tags/s: stored {stored:.0f} tags/s "
             f"({samples_per_s:.0f} samples/s), CPU {100 * total / span:.1f} % of a core, "
             f"{1e6 * total / max(samples_per_s * span, 1):.0f} us per sample; "
             + ", ".join(f"{k} {100 * (others1[k] - others0[k]) / span:.1f} %" for k in others),
             f"   {'thread':<22} {'CPU %':>6} {'us/sample':>9} {'vol cs/s':>9} "
             f"{'invol cs/s':>10} {'vol cs/sample':>13}"]
    for cpu, vol, invol, comm in rows:
        if cpu == 0 and vol < 1:
            continue
        lines.append(f"   {comm:<22} {100 * cpu / span:6.1f} "
                     f"{1e6 * cpu / max(samples_per_s * span, 1):9.1f} {vol:9.0f} "
                     f"{invol:10.0f} {vol / max(samples_per_s, 1):13.2f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, action="append",
                        help="offered tags/s (repeatable; default 8000, 16000, 30000)")
    parser.add_argument("--kinds", default="agent,bare")
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args()
    for rate in args.rate or [8000.0, 16000.0, 30000.0]:
        for kind in args.kinds.split(","):
            print("\n".join(measure(kind, rate, args.window, args.warmup)), flush=True)


if __name__ == "__main__":
    main()
