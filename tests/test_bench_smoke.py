"""The bench runs end to end at a tiny size, so its code cannot rot unnoticed.

Nothing here is timed: the test proves that every row of the issue-11 table is printed
and that both pipelines delivered every reading they accepted (counted by id), not how
fast they were. Figures come from ``python -m bench --short`` (docs/performance.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
