"""``python -m bench.memory``: the agent's resident memory, W1 and the demo station, beside
the bare pipeline; a few minutes, instead of the whole bench's forty.

Issue 11 asks for RSS <= 36 MiB at W1 (20 devices x 25 float32 tags every second). The
agent's figure depends on more than the workload, so each case is measured apart:

* ``agent, new outbox``: ``edge-agent run`` on a file it creates, as the whole bench does
  (every run starts on a fresh outbox). Creating the schema loads sqlite-utils (with
  click, pluggy and dateutil), which then stays for the life of the process.
* ``agent, existing outbox``: the same, on an outbox created before the start, as after
  any restart: what a station runs on for months.
* ``bare``: bench/bare_pipeline.py on the same simulators.
* ``agent, demo station``: ``edge-agent run`` on the station file ``edge-agent demo``
  writes (GC and FTIR on Modbus TCP, detectors on Modbus RTU over a pseudo-terminal),
  read after ``--demo-s`` seconds.

The processes load this checkout's code from bytecode compiled before the first round,
as an installed agent does (scripts/install and the .deb run compileall): a module
compiled from source at every start leaves the compiler's transient memory behind, about
0.5 MiB for the agent (the whole bench, on a checkout without bytecode and with
PYTHONDONTWRITEBYTECODE set, as on the development machines, measures that way). Once
bytecode exists beside the sources every process reads it, so there is no switch back.

Each process is read from outside (/proc/PID/status) once its window is over: VmRSS,
VmHWM (peak), RssAnon (the Python heap, SQLite's caches, thread stacks) and RssFile
(mapped libraries), and its thread count. Cases are rotated each round; cells are
medians [min-max]. docs/performance.md (Memory) explains the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.pipelines import READY, ROOT, PipelineProcess, accepted_seqs
from bench.report import header
from bench.runner import BROKER_OPTIONS, PROFILES, SimHost, _spec
from edge_agent.config.schema import Retention
from edge_agent.store.outbox import Outbox
from edge_agent.tools.demo.station import station_yaml
from edge_agent.tools.sim.broker import Mosquitto
from edge_agent.tools.sim.instruments import DemoInstruments

TARGET_MIB = 36.0  # issue 11, item 1: the agent's RSS at W1
FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile")
W1_CASES = ("agent-new", "agent-existing", "bare")
LABELS = {"agent-new": "agent, new outbox", "agent-existing": "agent, existing outbox",
          "bare": "bare pipeline", "demo": "agent, demo station"}


@dataclass(frozen=True)
class Sizes:
    """How long each case runs, and the W1 shape (bench/runner.py's profiles)."""

    profile: str
    rounds: int
    window_s: float
    demo_s: float


FORMS = {"default": Sizes("short", 2, 20.0, 60.0), "tiny": Sizes("tiny", 1, 2.0, 3.0)}


def memory(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon, RssFile in MiB and the thread count, from /proc/PID/status."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in FIELDS:
            found[key] = int(rest.split()[0]) / 1024
        elif key == "Threads":
            found["threads"] = int(rest)
    return found


def run_w1(case: str, sizes: Sizes, workdir: Path) -> dict[str, float]:
    """One W1 case: fresh simulators, broker and outbox folder; memory after the window."""
    profile = PROFILES[sizes.profile]
    workdir.mkdir(parents=True)
    sim = SimHost(profile.links, profile.units_per_link, profile.tags)
    broker = Mosquitto(workdir / "broker", listener_options=BROKER_OPTIONS).start()
    try:
        spec = _spec(sim, profile, profile.units_per_link, profile.w1_interval_s,
                     broker.port, workdir / "outbox.sqlite3")
        if case == "agent-existing":
            Outbox(Path(spec.db), Retention()).close()  # as the first start left it
        proc = PipelineProcess("bare" if case == "bare" else "agent", spec, workdir)
        try:
            proc.wait_ready()
            time.sleep(profile.warmup_s + sizes.window_s)
            figures = memory(proc.pid)
        finally:
            proc.stop()
        figures["stored"] = sum(accepted_seqs(spec.db).values())
        return figures
    finally:
        broker.stop()
        sim.stop()


def run_demo(sizes: Sizes, workdir: Path) -> dict[str, float]:
    """``edge-agent run`` on the demo's station file and instruments, read after demo_s."""
    workdir.mkdir(parents=True)
    broker = Mosquitto(workdir / "broker").start()
    instruments = DemoInstruments()
    try:
        ends = instruments.start()
        db = workdir / "outbox.sqlite3"
        station = workdir / "station.yaml"
        station.write_text(station_yaml(ends, [broker.port], db))
        log_path = workdir / "agent.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "edge-agent"), "run", str(station)],
                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while READY["agent"] not in log_path.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the agent did not start: {log_path.read_text()}")
                time.sleep(0.05)
            time.sleep(sizes.demo_s)
            figures = memory(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        figures["stored"] = sum(accepted_seqs(str(db)).values())
        return figures
    finally:
        instruments.stop()
        broker.stop()


def run_all(sizes: Sizes, workdir: Path, log=print) -> dict[str, list[dict[str, float]]]:
    """Every case, every round, the W1 cases rotated; the demo once per round, last."""
    results: dict[str, list[dict[str, float]]] = {}
    for r in range(sizes.rounds):
        order = W1_CASES[r % len(W1_CASES):] + W1_CASES[:r % len(W1_CASES)]
        for case in order:
            figures = run_w1(case, sizes, workdir / f"{case}-{r}")
            results.setdefault(case, []).append(figures)
            log(f"  {case} round {r}: " + ", ".join(f"{k}={v:.1f}" for k, v in figures.items()))
        figures = run_demo(sizes, workdir / f"demo-{r}")
        results.setdefault("demo", []).append(figures)
        log(f"  demo round {r}: " + ", ".join(f"{k}={v:.1f}" for k, v in figures.items()))
    return results


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def table(results: dict[str, list[dict[str, float]]], head: list[str]) -> str:
    """Cases by rows, figures by columns, then each agent case against bare and the target."""
    columns = (*FIELDS, "threads")
    lines = [*head, f"{'MiB':<24}" + "".join(f"{c:>18}" for c in columns)]
    for case, runs in results.items():
        lines.append(f"{LABELS[case]:<24}" + "".join(
            f"{_cell([run[c] for run in runs]):>18}" for c in columns))
    bare = statistics.median(run["VmRSS"] for run in results["bare"])
    for case in ("agent-new", "agent-existing"):
        rss = statistics.median(run["VmRSS"] for run in results[case])
        verdict = "met" if rss <= TARGET_MIB else "MISSED"
        lines.append(f"{LABELS[case]}: VmRSS {rss:.1f} MiB = bare + {rss - bare:.1f} MiB "
                     f"({rss / bare:.2f}x); target <= {TARGET_MIB:.0f} MiB ({verdict})")
    lines.append("cells: median [min-max] over rounds; W1 read after warm-up and window, "
                 "the demo after --demo-s")
    return "\n".join(lines)


def compile_checkout() -> None:
    """Bytecode for the agent, the drivers and the bench, next to their sources (ignored
    by git), and allowed for the processes started from here (they inherit os.environ)."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "edge_agent", "drivers",
                    "bench"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory",
        description="The agent's resident memory at W1 (new and existing outbox) and on "
                    "the demo station, beside the bare pipeline (docs/performance.md, "
                    "Memory). About 4 minutes; --tiny about 40 s.")
    parser.add_argument("--tiny", action="store_true",
                        help="one short round at the bench's tiny size: proves it runs")
    parser.add_argument("--rounds", type=int, help="rounds (default 2)")
    parser.add_argument("--window-s", type=float, help="W1 seconds after warm-up (default 20)")
    parser.add_argument("--demo-s", type=float, help="demo seconds after start (default 60)")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--quiet", action="store_true", help="print only the table")
    args = parser.parse_args(argv)
    base = FORMS["tiny" if args.tiny else "default"]
    sizes = Sizes(base.profile, args.rounds or base.rounds, args.window_s or base.window_s,
                  args.demo_s or base.demo_s)
    compile_checkout()
    head = header(f"memory, {sizes.profile} W1 sizes, from bytecode")
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    with tempfile.TemporaryDirectory(prefix="edge-bench-memory-") as tmp:
        results = run_all(sizes, Path(tmp), log)
    text = table(results, head)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"sizes": sizes.__dict__, "results": results,
                                         "table": text}, indent=1))


if __name__ == "__main__":
    main()
