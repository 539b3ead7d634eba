"""``python -m bench [--short|--tiny] [--json FILE]``: the issue-11 workloads, agent vs bare.

Every workload runs both pipelines in turn on fresh simulators, a fresh private Mosquitto
and a fresh outbox, the order rotated each round (agent first in even rounds, bare first
in odd ones); the sustained-rate searches of both run in lockstep, step by step
(``side_by_side``). Figures are medians over rounds with the spread [min-max]; the ratio
column is agent / bare from the same run. See docs/performance.md for the method.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bench.measure import Arrivals, cpu_seconds, latency_ms, memory_mib
from bench.pipelines import ROOT, PipelineProcess, accepted_seqs, outbox_rows, waiting_keys
from bench.prefill import agent_backlog
from bench.report import header, table
from bench.spec import STATION, Link, Spec
from edge_agent.tools.sim.broker import Mosquitto

KINDS = ("agent", "bare")
BACKLOG_DEVICE = "backlog"
# Mosquitto's default caps a subscriber's queue at 1000 messages and drops the rest; the
# counting subscriber must see everything, however fast a drain publishes.
# The live device during a drain: 20 samples a second, so that even a drain of a few
# seconds gives its live-latency median tens of samples, not one or two.
DRAIN_LIVE_INTERVAL_S = 0.05
BROKER_OPTIONS = "max_queued_messages 0\nmax_queued_bytes 0\n"


@dataclass(frozen=True)
class Profile:
    """Sizes of one form of the bench."""

    name: str
    rounds: int            # W1
    step_rounds: int       # the sustained-rate search and overload
    drain_rounds: int      # drains and W1 with a backlog
    warmup_s: float
    window_s: float
    step_window_s: float
    links: int
    units_per_link: int
    tags: int
    w1_interval_s: float
    rates: tuple[float, ...]  # tags/s tried, in order, for the sustained rate
    backlog_readings: int      # each drain shape holds this many readings
    settle_s: float
    # the 25-reading drain's backlog when it must be larger than ``backlog_readings`` to
    # last long enough for a live-latency median (0: ``backlog_readings``)
    drain25_readings: int = 0


PROFILES = {
    "full": Profile("full", 3, 2, 2, 10, 30, 15, 4, 5, 25, 1.0,
                    (1000, 2000, 4000, 8000, 12000, 16000, 24000, 32000, 48000, 64000,
                     96000),
                    1_000_000, 60),
    # The short form's ladder starts at 16 000 (both pipelines pass everything below it
    # here, and W1 covers the low rates) and is finer at the top, where the limits are:
    # issue 11 wants it under five minutes (docs/performance.md, "Running the bench").
    "short": Profile("short", 2, 1, 1, 3, 8, 5, 4, 5, 25, 1.0,
                     (16000, 48000, 64000, 80000, 96000), 50_000, 20, 250_000),
    # Only proves every workload runs (tests/test_bench_smoke.py): the shortest warm-up and
    # W1 window that still hold a few polls; the step window stays 2 s, since a 1 s one
    # counts too few polls to judge "sustained" and would run the step again.
    "tiny": Profile("tiny", 1, 1, 1, 0.5, 1, 2, 1, 2, 5, 0.5, (40,), 500, 20),
}


class SimHost:
    """bench/simhost.py in a child process."""

    def __init__(self, links: int, units: int, tags: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.simhost", str(links), str(units), str(tags)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, text=True)
        assert self.process.stdout is not None
        self.ports = json.loads(self.process.stdout.readline())

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _spec(sim: SimHost, profile: Profile, units: int, interval_s: float, broker_port: int,
          db: Path, settings: dict | None = None) -> Spec:
    links = tuple(Link(port, tuple(range(1, units + 1))) for port in sim.ports)
    return Spec(links, profile.tags, interval_s, broker_port, str(db), **(settings or {}))


def _prefill(kind: str, spec: Spec, workdir: Path, samples: int, readings: int) -> float:
    acquired_at = time.time() - 3600
    if kind == "agent":
        return agent_backlog(Path(spec.db), samples, readings, BACKLOG_DEVICE, acquired_at)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "bench.bare_pipeline",
                    str(spec.save(workdir / "spec.json")), "--prefill", str(samples),
                    "--readings", str(readings), "--device", BACKLOG_DEVICE,
                    "--acquired-at", str(acquired_at)], cwd=ROOT, check=True)
    return time.monotonic() - started


def _account(proc: PipelineProcess, arrivals: Arrivals) -> dict:
    """After the process stopped: accepted, delivered, still waiting, lost (by id). The
    pipeline has exited, so what it published is in the broker: half a second without an
    arrival means the subscriber has it all."""
    arrivals.wait_quiet(quiet_s=0.5)
    accepted = accepted_seqs(proc.spec.db)
    waiting = waiting_keys(proc.spec.db)
    delivered = {(a.device, a.seq) for a in arrivals.snapshot()}
    lost = sum(1 for device, last in accepted.items() for seq in range(1, last + 1)
               if (device, seq) not in delivered and (device, seq) not in waiting)
    return {"accepted": sum(accepted.values()), "delivered": len(delivered),
            "waiting_after_stop": len(waiting), "lost": lost,
            "duplicates": arrivals.duplicates}


def run_steady(kind: str, profile: Profile, workdir: Path, interval_s: float, units: int,
               window_s: float, backlog_samples: int = 0, settle: bool = True,
               settings: dict | None = None) -> dict:
    """Poll ``units`` devices per link every ``interval_s`` and measure one window."""
    workdir.mkdir(parents=True)
    sim = SimHost(profile.links, units, profile.tags)
    broker = Mosquitto(workdir / "broker", listener_options=BROKER_OPTIONS).start()
    arrivals = Arrivals(broker.port, f"count-{uuid.uuid4().hex[:8]}").start()
    spec = _spec(sim, profile, units, interval_s, broker.port, workdir / "outbox.sqlite3",
                 settings)
    result: dict = {"offered_tags_per_s": spec.offered_tags_per_s(), "tags": profile.tags}
    if backlog_samples:
        result["prefill_s"] = _prefill(kind, spec, workdir, backlog_samples, 1)
    proc = PipelineProcess(kind, spec, workdir)
    try:
        proc.wait_ready()
        time.sleep(profile.warmup_s)
        live = set(spec.device_ids())
        cpu0, rows0, acc0 = cpu_seconds(proc.pid), outbox_rows(spec.db), accepted_seqs(spec.db)
        t0 = time.time()
        time.sleep(window_s)
        t1 = time.time()
        cpu1, (rss, hwm) = cpu_seconds(proc.pid), memory_mib(proc.pid)
        rows1, acc1 = outbox_rows(spec.db), accepted_seqs(spec.db)
        acc1_live = {d: n for d, n in acc1.items() if d in live}
        deadline = time.monotonic() + (profile.settle_s if settle else 0)
        while arrivals.missing(acc1_live) and time.monotonic() < deadline:
            time.sleep(0.2)
        result["behind_at_window_end"] = arrivals.missing(acc1_live)
    finally:
        proc.stop()
    result.update(_account(proc, arrivals))
    in_window = [a for a in arrivals.snapshot() if t0 <= a.at < t1 and a.device in live]
    median, p99 = latency_ms(in_window)
    stored = sum(acc1_live.values()) - sum(n for d, n in acc0.items() if d in live)
    result.update({
        "cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0), "rss_mib": rss, "hwm_mib": hwm,
        "latency_median_ms": median, "latency_p99_ms": p99,
        "stored_tags_per_s": stored * profile.tags / (t1 - t0),
        "delivered_tags_per_s": sum(a.readings for a in in_window) / (t1 - t0),
        "outbox_growth_per_s": (rows1 - rows0) / (t1 - t0),
        "outbox_rows_at_window_end": rows1,
    })
    arrivals.stop()
    broker.stop()
    sim.stop()
    return result


def sustained(run: dict) -> bool:
    """Keeping up: stores and delivers what is offered, the outbox does not grow, and
    samples arrive within a second."""
    offered = run["offered_tags_per_s"]
    return (run["stored_tags_per_s"] >= 0.95 * offered
            and run["delivered_tags_per_s"] >= 0.95 * run["stored_tags_per_s"]
            and run["outbox_growth_per_s"] * run["tags"] <= max(0.05 * offered, run["tags"])
            and run["latency_median_ms"] < 1000)


REFINE_STEPS = 2  # halvings between the last sustained step and the first failed one


def sustained_search(rates: tuple[float, ...]) -> Generator[float, bool, float]:
    """The search for the highest sustained rate, one step at a time: yields each rate
    to try and is sent whether it was sustained; returns the rate found. Up the profile's
    steps until one fails, then ``REFINE_STEPS`` halvings of the interval between the last
    sustained step and the failed one, so the figure is not the coarse step below the
    limit (8 000 for a pipeline that sustains 12 000 when the steps are 8 000 and 16 000).
    0 when even the first step fails; the last step when none fails."""
    low, high = 0.0, None
    for rate in rates:
        if not (yield rate):
            high = rate
            break
        low = rate
    if high is None or low == 0.0:
        return low
    for _ in range(REFINE_STEPS):
        middle = float(round((low + high) / 2))
        if middle in (low, high):
            break
        if (yield middle):
            low = middle
        else:
            high = middle
    return low


def highest_sustained(rates: tuple[float, ...], step: Callable[[float], bool]) -> float:
    """The highest rate ``step`` sustains (``sustained_search``, for one pipeline)."""
    return side_by_side(rates, {"only": step}, ("only",))["only"]


def side_by_side(rates: tuple[float, ...], steps: dict[str, Callable[[float], bool]],
                 order: tuple[str, ...]) -> dict[str, float]:
    """Each pipeline's highest sustained rate (``sustained_search``), the searches run in
    lockstep: at each turn every pipeline still searching runs its next step, back to back
    with the others', who goes first alternating turn by turn (``order`` first).

    Why: on a shared machine the speed left to a pipeline changes from one minute to the
    next. Run one whole search after the other, a slow spell decided a whole search, and
    the ratio with it: two short benches ten minutes apart on the same code gave 80 000
    against 60 000 and 64 000 against 88 000 tags/s, each pipeline reaching 86 000-88 000
    tags/s in its fast spell (docs/performance.md). In lockstep both meet the same spells,
    as long as both search: once one search has ended, the other's last steps run alone.
    """
    searches = {kind: sustained_search(rates) for kind in order}
    pending: dict[str, float] = {}
    found: dict[str, float] = {}
    for kind, search in searches.items():
        try:
            pending[kind] = next(search)
        except StopIteration as done:  # no rate to try
            found[kind] = done.value
    turn = 0
    while pending:
        kinds = [kind for kind in (order if turn % 2 == 0 else order[::-1])
                 if kind in pending]
        for kind in kinds:
            result = steps[kind](pending.pop(kind))
            try:
                pending[kind] = searches[kind].send(result)
            except StopIteration as done:
                found[kind] = done.value
        turn += 1
    return found


def run_drain(kind: str, profile: Profile, workdir: Path, readings_per_sample: int,
              settings: dict | None = None) -> dict:
    """A backlog in place, broker down; start the pipeline with one live device, start
    the broker, time until the last backlog sample has arrived."""
    workdir.mkdir(parents=True)
    readings = profile.backlog_readings
    if readings_per_sample > 1 and profile.drain25_readings:
        readings = profile.drain25_readings
    samples = readings // readings_per_sample
    broker = Mosquitto(workdir / "broker", persistence=True,
                       listener_options=BROKER_OPTIONS).start()
    client_id = f"count-{uuid.uuid4().hex[:8]}"
    Arrivals(broker.port, client_id).start().stop()  # the session, kept by the broker
    sim = SimHost(1, 1, profile.tags)
    spec = _spec(sim, profile, 1, DRAIN_LIVE_INTERVAL_S, broker.port,
                 workdir / "outbox.sqlite3", settings)
    # The platform's view of the live device: its own subscription, so that its latency
    # is the pipeline's, not the wait behind backlog messages the broker has queued for
    # the counting subscriber (which takes every message of the drain).
    live_topic = f"edge/{STATION}/{spec.device_ids()[0]}/#"
    live_id = f"live-{uuid.uuid4().hex[:8]}"
    Arrivals(broker.port, live_id, live_topic).start().stop()
    broker.stop()
    result: dict = {"samples": samples, "readings": samples * readings_per_sample,
                    "prefill_s": _prefill(kind, spec, workdir, samples, readings_per_sample)}
    proc = PipelineProcess(kind, spec, workdir)
    try:
        proc.wait_ready()
        t0 = time.time()
        broker.start()
        arrivals = Arrivals(broker.port, client_id).start()
        live_arrivals = Arrivals(broker.port, live_id, live_topic).start()
        deadline = time.monotonic() + max(120.0, samples / 500)
        while (arrivals.count({BACKLOG_DEVICE}) < samples and time.monotonic() < deadline
               and proc.process.poll() is None):
            time.sleep(0.05)
        # Live samples accepted by now must arrive too (behind a FIFO they come last).
        live_accepted = {d: n for d, n in accepted_seqs(spec.db).items() if d != BACKLOG_DEVICE}
        deadline = time.monotonic() + profile.settle_s
        while arrivals.missing(live_accepted) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.stop()
    backlog = [a for a in arrivals.snapshot() if a.device == BACKLOG_DEVICE]
    t_end = max((a.at for a in backlog), default=time.time())
    t_first = min((a.at for a in backlog), default=t0)
    drain_s = t_end - t0
    # Live samples acquired while the backlog drained (from its first message on: before
    # it, the pipeline is still connecting to the broker just started, and every sample
    # waits for the connection, lane or not), whenever they arrived: behind a FIFO (bare)
    # they wait for the backlog, in a live lane they do not.
    live = [a for a in live_arrivals.snapshot()
            if t_first <= a.at - a.latency_s <= t_end]
    median, p99 = latency_ms(live)
    result.update({"drain_s": drain_s, "readings_per_s": result["readings"] / drain_s,
                   "backlog_delivered": len(backlog), "live_median_ms": median,
                   "live_p99_ms": p99, "live_samples": len(live),
                   "connect_s": t_first - t0})
    result.update(_account(proc, arrivals))
    arrivals.stop()
    live_arrivals.stop()
    broker.stop()
    sim.stop()
    return result


def _order(round_index: int) -> tuple[str, ...]:
    return KINDS if round_index % 2 == 0 else KINDS[::-1]


WORKLOADS = ("w1", "steps", "overload", "drain25", "drain1", "backlog")


def run_all(profile: Profile, workdir: Path, log=print,
            only: tuple[str, ...] = WORKLOADS) -> dict:
    """Every workload of ``only`` (all by default; overload needs steps), every round;
    returns raw results per workload and pipeline."""
    results: dict[str, dict[str, list[dict]]] = {}

    def record(workload: str, kind: str, run: dict) -> None:
        results.setdefault(workload, {}).setdefault(kind, []).append(run)
        log(f"  {workload} {kind}: " + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in run.items()))

    def where(*parts: object) -> Path:
        return workdir / "-".join(str(p) for p in parts)

    p = profile
    for r in range(p.rounds if "w1" in only else 0):
        for kind in _order(r):
            record("w1", kind, run_steady(kind, p, where("w1", kind, r), p.w1_interval_s,
                                          p.units_per_link, p.window_s))
    devices = p.links * p.units_per_link
    best: dict[str, list[float]] = {}
    for r in range(p.step_rounds if "steps" in only else 0):
        def step(rate: float, kind: str, r: int = r) -> bool:
            """One offered rate; a failed step is run once more: on a shared machine one
            slow window is not yet a limit."""
            interval = devices * p.tags / rate
            for attempt in range(2):
                run = run_steady(kind, p, where("step", kind, r, int(rate), attempt),
                                 interval, p.units_per_link, p.step_window_s,
                                 settle=False)
                run["sustained"] = sustained(run)
                record(f"step-{int(rate)}", kind, run)
                if run["sustained"]:
                    return True
            return False

        # both searches in lockstep, so both meet the machine's same spells
        found = side_by_side(p.rates, {kind: functools.partial(step, kind=kind)
                                       for kind in KINDS}, _order(r))
        for kind in KINDS:
            best.setdefault(kind, []).append(found[kind])
    if best:
        # at_top: every step passed, so the figure is a lower bound, not a limit
        results["sustained"] = {kind: [{"tags_per_s": v, "at_top": v >= p.rates[-1]}
                                       for v in values]
                                for kind, values in best.items()}
    agent_top = statistics.median(best["agent"]) if best else 0.0
    for factor in (1.5, 2.0) if agent_top and "overload" in only else ():
        for r in range(p.step_rounds):
            for kind in _order(r):
                interval = devices * p.tags / (factor * agent_top)
                run = run_steady(kind, p, where("over", factor, kind, r), interval,
                                 p.units_per_link, p.step_window_s, settle=False)
                run["sustained_tags_per_s"] = statistics.median(best[kind])
                record(f"overload-{factor}", kind, run)
    for shape, readings in (("drain25", p.tags), ("drain1", 1)):
        for r in range(p.drain_rounds if shape in only else 0):
            for kind in _order(r):
                record(shape, kind, run_drain(kind, p, where(shape, kind, r), readings))
    for r in range(p.drain_rounds if "backlog" in only else 0):
        for kind in _order(r):
            record("backlog", kind, run_steady(kind, p, where("backlog", kind, r),
                                               p.w1_interval_s, p.units_per_link, p.window_s,
                                               backlog_samples=p.backlog_readings))
    return results


# What each setting costs or buys, agent only: (setting, values, workload). The default
# comes first. W1 figures for settings on the acquisition side, drain figures for those
# that shape forwarding.
SETTINGS = (
    ("synchronous", ("FULL", "NORMAL"), "w1"),
    ("synchronous", ("FULL", "NORMAL"), "drain1"),
    ("max_samples_per_message", (50, 1, 10, 200), "drain1"),
    ("max_inflight", (20, 1, 100), "drain1"),
    ("interval_s", (1.0, 0.25), "w1"),
)


def sizes(p: Profile) -> str:
    return (f"sizes: W1 {p.links * p.units_per_link} devices x {p.tags} tags every "
            f"{p.w1_interval_s} s on {p.links} simulated endpoints; backlogs of "
            f"{p.drain25_readings or p.backlog_readings} readings (25-reading samples) and "
            f"{p.backlog_readings} (one-reading samples); windows {p.window_s} s "
            f"(steps {p.step_window_s} s); "
            f"rounds W1 {p.rounds}, steps {p.step_rounds}, drains {p.drain_rounds}")


def run_settings(profile: Profile, workdir: Path, log=print) -> list[dict]:
    """The agent with one setting changed at a time; one run per value."""
    rows = []
    for setting, values, workload in SETTINGS:
        for value in values:
            where = workdir / f"setting-{setting}-{value}-{workload}"
            if setting == "interval_s":
                run = run_steady("agent", profile, where, float(value), profile.units_per_link,
                                 profile.window_s)
            elif workload == "w1":
                run = run_steady("agent", profile, where, profile.w1_interval_s,
                                 profile.units_per_link, profile.window_s,
                                 settings={setting: value})
            else:
                run = run_drain("agent", profile, where, 1, settings={setting: value})
            rows.append({"setting": setting, "value": value, "workload": workload, **run})
            log(f"  {setting}={value} {workload}: {run}")
    return rows


def settings_table(rows: list[dict]) -> str:
    lines = [f"{'setting':<26} {'value':>8} {'workload':<8} {'CPU %':>7} {'lat. med':>9} "
             f"{'lat. p99':>9} {'drain readings/s':>17} {'lost':>5}"]
    for row in rows:
        cpu = f"{row['cpu_pct']:.1f}" if "cpu_pct" in row else "-"
        med = row.get("latency_median_ms", row.get("live_median_ms", float("nan")))
        p99 = row.get("latency_p99_ms", row.get("live_p99_ms", float("nan")))
        rate = f"{row['readings_per_s']:.0f}" if "readings_per_s" in row else "-"
        lines.append(f"{row['setting']:<26} {row['value']!s:>8} {row['workload']:<8} "
                     f"{cpu:>7} {med:>9.1f} {p99:>9.1f} {rate:>17} {row['lost']:>5}")
    lines.append("agent only, one run per value (no rounds): compare values within this table; "
                 "drain rows: latency of the live device during the drain")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="The issue-11 workloads, edge-agent against a bare pipeline, side by "
                    "side; prints medians, spread, ratios and targets (docs/performance.md). "
                    "Without --short or --tiny: the full form (about 40 minutes). The scaling "
                    "benches are subcommands: python -m bench station-output --help, "
                    "python -m bench broker-intake --help (docs/scaling.md).")
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--short", action="store_const", const="short", dest="profile",
                      help="the developer's form: under 5 minutes")
    form.add_argument("--tiny", action="store_const", const="tiny", dest="profile",
                      help="about a minute; only proves the bench runs (the smoke test)")
    parser.add_argument("--json", type=Path, help="also write the raw runs here")
    parser.add_argument("--keep", type=Path, help="keep logs and databases in this folder")
    parser.add_argument("--quiet", action="store_true", help="print only the table")
    parser.add_argument("--only", help="comma-separated workloads to run, of "
                        f"{','.join(WORKLOADS)} (default: all; overload needs steps)")
    parser.add_argument("--rounds", type=int,
                        help="rounds of every workload instead of the form's own counts")
    parser.add_argument("--settings", action="store_true",
                        help="instead: what each agent setting costs or buys (agent only)")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile or "full"]
    if args.rounds:
        profile = replace(profile, rounds=args.rounds, step_rounds=args.rounds,
                          drain_rounds=args.rounds)
    only = tuple(args.only.split(",")) if args.only else WORKLOADS
    if unknown := set(only) - set(WORKLOADS):
        parser.error(f"--only: unknown workload(s) {', '.join(sorted(unknown))}; "
                     f"known: {', '.join(WORKLOADS)}")
    started = time.monotonic()
    head = header(profile.name)  # the commit and load as the run starts, not as it ends
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.settings:
            rows = run_settings(profile, workdir, log)
        else:
            results = run_all(profile, workdir, log, only)
    if args.settings:
        text = "\n".join([*head, settings_table(rows)])
        results = {"settings": rows}  # type: ignore[dict-item]
    else:
        text = table(results, [*head, sizes(profile)])
    print(text)
    print(f"bench took {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"profile": asdict(profile), "results": results,
                                         "table": text}, indent=1, default=str))
