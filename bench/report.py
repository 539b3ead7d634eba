"""The table of issue 11 from raw runs: median [min-max] per pipeline, ratio, target."""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.pipelines import ROOT

Results = dict[str, dict[str, list[dict]]]


@dataclass(frozen=True)
class Row:
    label: str
    workload: str
    key: str
    target: str = ""
    # (agent median, bare median, ratio) -> met?; None: no target
    check: Callable[[float, float, float], bool] | None = None
    digits: int = 1


def _ratio_at_most(limit: float) -> Callable[[float, float, float], bool]:
    return lambda agent, bare, ratio: ratio <= limit


def _ratio_at_least(limit: float) -> Callable[[float, float, float], bool]:
    return lambda agent, bare, ratio: ratio >= limit


ROWS = (
    Row("W1 500 tags/s: CPU, % of one core", "w1", "cpu_pct", "ratio <= 1.3",
        _ratio_at_most(1.3)),
    Row("W1: RSS (VmRSS), MiB", "w1", "rss_mib", "agent <= 36 MiB",
        lambda agent, bare, ratio: agent <= 36),
    Row("W1: peak RSS (VmHWM), MiB", "w1", "hwm_mib"),
    Row("W1: latency median, ms", "w1", "latency_median_ms", "agent <= bare + 3 ms",
        lambda agent, bare, ratio: agent <= bare + 3),
    Row("W1: latency p99, ms", "w1", "latency_p99_ms", "ratio <= 2", _ratio_at_most(2)),
    Row("highest sustained rate, tags/s", "sustained", "tags_per_s", "ratio >= 0.9",
        _ratio_at_least(0.9), 0),
    Row("drain: backlog as 25-reading samples, s", "drain25", "drain_s", "", None, 2),
    Row("  same: readings/s", "drain25", "readings_per_s", "ratio >= 0.8",
        _ratio_at_least(0.8), 0),
    Row("  same: live latency median, ms", "drain25", "live_median_ms", "agent < 50 ms",
        lambda agent, bare, ratio: agent < 50),
    Row("  same: live samples in the median", "drain25", "live_samples", "", None, 0),
    Row("drain: backlog as one-reading samples, s", "drain1", "drain_s", "", None, 2),
    Row("  same: readings/s", "drain1", "readings_per_s", "ratio >= 0.8",
        _ratio_at_least(0.8), 0),
    Row("  same: live latency median, ms", "drain1", "live_median_ms", "agent < 50 ms",
        lambda agent, bare, ratio: agent < 50),
    Row("  same: live samples in the median", "drain1", "live_samples", "", None, 0),
    Row("overload 1.5x: delivered tags/s", "overload-1.5", "delivered_tags_per_s",
        "", None, 0),
    Row("  same: delivered / own sustained", "overload-1.5", "delivered_share",
        "agent >= 0.8", lambda agent, bare, ratio: agent >= 0.8, 2),
    Row("  same: live latency median, ms", "overload-1.5", "latency_median_ms",
        "bounded"),
    Row("  same: live latency p99, ms", "overload-1.5", "latency_p99_ms", "bounded"),
    Row("  same: outbox growth, samples/s", "overload-1.5", "outbox_growth_per_s"),
    Row("overload 2x: delivered tags/s", "overload-2.0", "delivered_tags_per_s",
        "", None, 0),
    Row("  same: delivered / own sustained", "overload-2.0", "delivered_share",
        "agent >= 0.8", lambda agent, bare, ratio: agent >= 0.8, 2),
    Row("  same: live latency median, ms", "overload-2.0", "latency_median_ms",
        "bounded"),
    Row("  same: live latency p99, ms", "overload-2.0", "latency_p99_ms", "bounded"),
    Row("  same: outbox growth, samples/s", "overload-2.0", "outbox_growth_per_s"),
    Row("W1 with the backlog in the outbox: CPU %", "backlog", "cpu_pct", "flat vs W1"),
    Row("  same: RSS (VmRSS), MiB", "backlog", "rss_mib", "flat vs W1"),
    Row("  same: latency median, ms", "backlog", "latency_median_ms", "flat vs W1"),
    Row("  same: latency p99, ms", "backlog", "latency_p99_ms", "flat vs W1"),
    Row("readings lost, all runs (by id)", "all", "lost", "0",
        lambda agent, bare, ratio: agent == 0 and bare == 0, 0),
)


def derive(results: Results) -> None:
    """Fill in figures computed from others (delivered share of own sustained rate)."""
    for workload, runs in results.items():
        if workload.startswith("overload"):
            for kind_runs in runs.values():
                for run in kind_runs:
                    own = run.get("sustained_tags_per_s") or float("nan")
                    run["delivered_share"] = run["delivered_tags_per_s"] / own
    results["all"] = {kind: [{"lost": sum(run.get("lost", 0) for workload, runs in
                                          results.items() if workload != "all"
                                          for run in runs.get(kind, []))}]
                      for kind in ("agent", "bare")}


def _values(results: Results, row: Row, kind: str) -> list[float]:
    return [float(run[row.key]) for run in results.get(row.workload, {}).get(kind, [])
            if row.key in run]


def _cell(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    middle = f"{statistics.median(values):.{digits}f}"
    if len(values) == 1:
        return middle
    return f"{middle} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def header(profile: str) -> list[str]:
    """Machine, date and commit: a figure without them means nothing."""
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
                 platform.processor())
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    return [f"edge-agent bench ({profile}), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
            f"commit {commit}",
            f"machine: {os.cpu_count()} cores, {model}, load average "
            f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}, Python "
            f"{platform.python_version()}"]


def _at_top(results: Results) -> set[str]:
    """The pipelines whose every step of the sustained-rate search passed: their figure
    is the top step, a lower bound of their limit (bench/runner.py)."""
    return {kind for kind, runs in results.get("sustained", {}).items()
            if any(run.get("at_top") for run in runs)}


def _verdict(row: Row, agent: list[float], bare: list[float], ratio: float,
             at_top: set[str]) -> str:
    """" (met)", " (MISSED)", or " (not measured: ...)" when a figure at the top step
    leaves the answer open: bare's lower bound makes agent/bare an upper bound (a miss
    is still a miss), the agent's makes it a lower bound (a pass is still a pass); and
    an agent that passed every step was never offered past its limit in "overload"."""
    if row.check is None or not agent or not bare:
        return ""
    if row.workload.startswith("overload") and "agent" in at_top:
        return " (not measured: the agent passed the top step, so this was not past its limit)"
    met = row.check(statistics.median(agent), statistics.median(bare), ratio)
    if row.workload == "sustained" and ("bare" if met else "agent") in at_top:
        return (f" (not measured: {'bare' if met else 'the agent'} passed the top step; "
                "add a higher one)")
    return " (met)" if met else " (MISSED)"


def table(results: Results, head: list[str]) -> str:
    """``head``: the header lines, taken when the run started (the commit measured)."""
    derive(results)
    lines = list(head)
    lines.append(f"{'workload':<44} {'edge-agent':>24} {'bare pipeline':>24} "
                 f"{'agent/bare':>10}  target")
    for row in ROWS:
        agent, bare = _values(results, row, "agent"), _values(results, row, "bare")
        ratio = (statistics.median(agent) / statistics.median(bare)
                 if agent and bare and statistics.median(bare) else math.nan)
        verdict = _verdict(row, agent, bare, ratio, _at_top(results))
        ratio_text = f"{ratio:.2f}x" if not math.isnan(ratio) else "-"
        lines.append(f"{row.label:<44} {_cell(agent, row.digits):>24} "
                     f"{_cell(bare, row.digits):>24} {ratio_text:>10}  {row.target}{verdict}")
    lines.append("cells: median [min-max] over rounds; ratio: of the medians, this run only")
    return "\n".join(lines)
