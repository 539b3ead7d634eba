"""The bench's search for the highest sustained rate (bench/runner.py), as a pure
function of which offered rates a pipeline keeps up with: no process, no time.

The short form's steps are 2 000, 4 000, 8 000, 16 000 ... tags/s; before the search was
refined, a pipeline sustaining anything from 8 000 to 15 999 was reported as 8 000.
"""

from __future__ import annotations

import pytest

from bench.report import table
from bench.runner import PROFILES, highest_sustained, side_by_side

STEPS = (2000.0, 4000.0, 8000.0, 16000.0, 24000.0, 32000.0)


def keeps_up_to(limit: float, tried: list[float]):
    def step(rate: float) -> bool:
        tried.append(rate)
        return rate <= limit
    return step


@pytest.mark.parametrize(("limit", "found", "tried"), [
    # limit between two steps: two halvings between the last passed and the first failed
    (12_500, 12_000, [2000, 4000, 8000, 16000, 12000, 14000]),
    (9_000, 8_000, [2000, 4000, 8000, 16000, 12000, 10000]),
    (15_000, 14_000, [2000, 4000, 8000, 16000, 12000, 14000]),
    (26_000, 26_000, [2000, 4000, 8000, 16000, 24000, 32000, 28000, 26000]),
    # every step sustained: the last step, nothing above it is guessed
    (1e9, 32_000, list(STEPS)),
    # the first step already fails: 0, no halving below it
    (1_000, 0, [2000]),
])
def test_the_search_refines_between_the_last_sustained_and_the_first_failed_step(
        limit, found, tried):
    seen: list[float] = []
    assert highest_sustained(STEPS, keeps_up_to(limit, seen)) == found
    assert seen == tried


def test_both_searches_run_in_lockstep_each_finding_what_it_finds_alone():
    """Every turn runs each searching pipeline's next step back to back, who goes first
    alternating, so a slow spell of the machine meets both; each pipeline's result and
    steps are those of its search alone."""
    calls: list[tuple[str, float]] = []

    def keeps_up(kind: str, limit: float):
        def step(rate: float) -> bool:
            calls.append((kind, rate))
            return rate <= limit
        return step

    found = side_by_side(STEPS, {"agent": keeps_up("agent", 12_500),
                                 "bare": keeps_up("bare", 26_000)}, ("agent", "bare"))
    assert found == {"agent": 12_000, "bare": 26_000}
    assert [rate for kind, rate in calls if kind == "agent"] == \
        [2000, 4000, 8000, 16000, 12000, 14000]
    assert [rate for kind, rate in calls if kind == "bare"] == \
        [2000, 4000, 8000, 16000, 24000, 32000, 28000, 26000]
    # turns of two while both search, the first of each turn alternating; then bare alone
    assert [kind for kind, _ in calls[:12]] == ["agent", "bare", "bare", "agent"] * 3
    assert [kind for kind, _ in calls[12:]] == ["bare", "bare"]


def test_no_rate_to_try_finds_nothing_without_a_step():
    assert side_by_side((), {"agent": lambda rate: 1 / 0}, ("agent",)) == {"agent": 0.0}
    assert highest_sustained((), lambda rate: 1 / 0) == 0.0


def test_the_short_form_goes_past_bare_pipelines_earlier_cap():
    assert max(PROFILES["short"].rates) > 32_000


def test_the_short_form_goes_past_bare_pipelines_48000_cap():
    # bare passed every step up to 48 000 on a faster machine (2026-12-03, 22:37 UTC):
    # the ratio then compared the agent with a cap, not with bare's limit
    assert max(PROFILES["short"].rates) > 48_000
    assert max(PROFILES["full"].rates) > 48_000


def sustained_line(agent: tuple[float, bool], bare: tuple[float, bool]) -> str:
    results = {"sustained": {kind: [{"tags_per_s": rate, "at_top": at_top}]
                             for kind, (rate, at_top) in (("agent", agent), ("bare", bare))}}
    return next(line for line in table(results, []).splitlines()
                if line.startswith("highest sustained rate"))


def test_a_pass_against_bare_at_the_top_step_is_not_called_met():
    # bare's figure is a lower bound: agent/bare is an upper bound of the true ratio
    line = sustained_line((96_000, True), (96_000, True))
    assert "not measured: bare passed the top step" in line
    assert "(met)" not in line and "MISSED" not in line


def test_a_miss_stays_a_miss_against_bare_at_the_top_step():
    # an upper bound below 0.9 is a miss whatever bare's true limit
    assert sustained_line((40_000, False), (96_000, True)).endswith("(MISSED)")


def test_a_miss_with_the_agent_at_the_top_step_is_not_called_missed():
    results = {"sustained": {"agent": [{"tags_per_s": 96_000, "at_top": True},
                                       {"tags_per_s": 40_000, "at_top": False}],
                             "bare": [{"tags_per_s": 80_000, "at_top": False}] * 2}}
    line = next(line for line in table(results, []).splitlines()
                if line.startswith("highest sustained rate"))
    assert "not measured: the agent passed the top step" in line


def test_a_ratio_below_the_top_step_is_judged_as_before():
    assert sustained_line((44_000, False), (48_000, False)).endswith("ratio >= 0.9 (met)")
    assert sustained_line((40_000, False), (48_000, False)).endswith("ratio >= 0.9 (MISSED)")
    # the agent at the top, bare below it: the ratio is a lower bound, so met stands
    assert sustained_line((96_000, True), (80_000, False)).endswith("(met)")


def test_overload_is_not_judged_when_the_agent_passed_the_top_step():
    run = {"delivered_tags_per_s": 90_000.0, "sustained_tags_per_s": 96_000.0,
           "latency_median_ms": 20.0, "latency_p99_ms": 40.0, "outbox_growth_per_s": 0.0}
    results = {"sustained": {"agent": [{"tags_per_s": 96_000, "at_top": True}],
                             "bare": [{"tags_per_s": 96_000, "at_top": True}]},
               "overload-1.5": {"agent": [dict(run)], "bare": [dict(run)]}}
    line = next(line for line in table(results, []).splitlines()
                if "delivered / own sustained" in line)
    assert "not measured: the agent passed the top step" in line
