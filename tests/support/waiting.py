"""Waiting for a condition with a deadline (never a fixed sleep standing in for one)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str,
               poll_s: float = 0.05) -> None:
    """Re-check ``predicate`` until it holds; fail the test naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)
