"""bench/handover_cost.py runs a real writer and gives a figure (no time is asserted)."""

from __future__ import annotations

import math

from bench.handover_cost import cpu_per_submit_us


def test_handover_cost_submits_through_a_real_writer_and_reports_cpu_per_submit() -> None:
    figure = cpu_per_submit_us(200)
    assert math.isfinite(figure) and figure > 0
