"""The one retry layer (edge_agent/retry.py): what ``retry_call`` does on success and on
failure. Waits are counted through the ``sleep`` callable, never slept."""

from __future__ import annotations

import pytest
import tenacity

from edge_agent.retry import retry_call


class Flaky:
    """Fails with ``errors`` in turn, then answers ``result``."""

    def __init__(self, errors: list[BaseException], result: str = "answer") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


def _no_retrying(*args: object, **kwargs: object) -> None:
    raise AssertionError("a tenacity Retrying was built for a call that succeeded")


def test_successful_call_builds_no_retry_machinery(monkeypatch):
    """Issue 11: building a Retrying on every successful poll cost about 5 % of its CPU."""
    monkeypatch.setattr(tenacity, "Retrying", _no_retrying)
    waits: list[float] = []
    func = Flaky([])
    assert retry_call(func, attempts=4, wait_s=0.5, retry_if=lambda err: True,
                      sleep=waits.append) == "answer"
    assert func.calls == 1 and waits == []


def test_transient_failures_are_retried_with_a_wait_between_attempts():
    waits: list[float] = []
    func = Flaky([TimeoutError("1"), TimeoutError("2")])
    assert retry_call(func, attempts=3, wait_s=0.25, retry_if=lambda err: True,
                      sleep=waits.append) == "answer"
    assert func.calls == 3
    assert waits == [0.25, 0.25]


def test_last_error_is_raised_once_attempts_are_spent():
    waits: list[float] = []
    func = Flaky([TimeoutError(f"attempt {n}") for n in range(1, 6)])
    with pytest.raises(TimeoutError, match="attempt 4"):
        retry_call(func, attempts=4, wait_s=0.1, retry_if=lambda err: True,
                   sleep=waits.append)
    assert func.calls == 4
    assert waits == [0.1, 0.1, 0.1]


@pytest.mark.parametrize("errors, calls, waited", [
    ([ValueError("device fault"), TimeoutError("never reached")], 1, []),
    ([TimeoutError("transient"), ValueError("device fault")], 2, [0.1]),
], ids=["first-error-raised-at-once", "later-error-ends-the-retries"])
def test_an_error_not_worth_retrying_is_raised_without_more_attempts(errors, calls, waited):
    waits: list[float] = []
    func = Flaky(errors)
    with pytest.raises(ValueError, match="device fault"):
        retry_call(func, attempts=5, wait_s=0.1,
                   retry_if=lambda err: isinstance(err, TimeoutError), sleep=waits.append)
    assert func.calls == calls and waits == waited


def test_one_attempt_means_no_retry():
    waits: list[float] = []
    func = Flaky([TimeoutError("only")])
    with pytest.raises(TimeoutError, match="only"):
        retry_call(func, attempts=1, wait_s=0.1, retry_if=lambda err: True,
                   sleep=waits.append)
    assert func.calls == 1 and waits == []
