"""When a device is due again (``poller.next_due_after``): a poll made late by a hiccup
keeps its device's grid, a device further behind skips the missed slots and starts a
new grid (never a burst), and a failing device waits its backoff. Then over runs of a
hundred slots: hiccups shorter than an interval cost no poll, and a device slower than
its interval is polled back to back."""

from __future__ import annotations

import pytest

from edge_agent.poller import next_due_after

INTERVAL = 10.0  # s


@pytest.mark.parametrize(("due", "now", "backoff", "expected", "why"), [
    (100.0, 100.5, 0.0, 110.0, "on time: the next slot"),
    (100.0, 109.9, 0.0, 110.0, "a slow poll ending before the next slot"),
    (100.0, 112.0, 0.0, 110.0, "2 s past the next slot: due at once, grid kept"),
    (100.0, 120.0, 0.0, 110.0, "exactly one interval past it: still kept"),
    (100.0, 120.5, 0.0, 120.5, "more than an interval past it: skip, grid starts now"),
    (100.0, 175.0, 0.0, 175.0, "far behind: one poll now, no burst of six"),
    (100.0, 101.0, 30.0, 131.0, "failing: the backoff, counted from now"),
    (100.0, 101.0, 2.0, 110.0, "a backoff shorter than the interval changes nothing"),
    (100.0, 125.0, 2.0, 127.0, "behind and failing: the backoff from now"),
])
def test_next_due(due, now, backoff, expected, why):
    assert next_due_after(due, INTERVAL, now, backoff) == pytest.approx(expected), why


def polls_in(slots: int, lateness: list[float]) -> int:
    """Polls made in ``slots`` intervals when each poll is made as soon as it is due and
    the poller gets to the next one ``lateness[k]`` after it started (in turn)."""
    due, now, polls = 0.0, 0.0, 0
    while due < slots * INTERVAL:
        now = max(now, due) + lateness[polls % len(lateness)]
        polls += 1
        due = next_due_after(due, INTERVAL, now)
        assert due <= now + INTERVAL, "never further away than one interval"
    return polls


def test_hiccups_shorter_than_an_interval_cost_no_poll():
    """Every other poll ends 1.3 intervals after it was due (a busy machine), the next
    one quickly: the grid holds, 100 slots give 100 polls. (Restarting the grid after
    each late poll gave 87.)"""
    assert polls_in(100, [1.3 * INTERVAL, 0.2 * INTERVAL]) == 100


def test_a_device_slower_than_its_interval_is_polled_back_to_back_not_in_bursts():
    """Each poll takes 1.5 intervals: 100 slots hold about 67 polls, one after the
    other."""
    assert 64 <= polls_in(100, [1.5 * INTERVAL]) <= 68
