"""The one retry layer (tenacity), configured from the station file, never by decorators.

Two shapes are needed:
* ``retry_call``: re-run a callable a few times with a short wait (a device read inside
  one poll). The wait sleeps through ``sleep``, which callers make interruptible. The
  first attempt is a plain call, so the successful poll never builds a ``Retrying``.
* ``Backoff``: exponential delay with jitter as a function of consecutive failures, for
  loops that must not block on tenacity (a poller skipping a dead device's slots, the
  forwarder's reconnects).

tenacity itself is imported on the first failure that needs it, not with this module:
an agent whose devices and broker answer never loads it (about 0.4 MiB of RSS, issue 11;
tests/test_runtime_footprint.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import tenacity

T = TypeVar("T")


def retry_call(
    func: Callable[[], T],
    *,
    attempts: int,
    wait_s: float,
    retry_if: Callable[[BaseException], bool],
    sleep: Callable[[float], bool | None],
) -> T:
    """Call ``func`` up to ``attempts`` times while ``retry_if(error)``; re-raise the last.

    ``sleep`` waits between attempts; when it returns True (``threading.Event.wait`` on a
    stop event that was set) no further attempt is made and the last error is raised:
    a stopping poller must not spend its stop time re-reading a dead device.

    The first attempt is a plain call: a poll that succeeds (nearly all of them) builds
    no retry machinery, which cost about 5 % of a poll's CPU (issue 11). Only after a
    failure worth retrying does tenacity take over, counting that failure as its first
    attempt, so waits, stops and the error raised are the same as if it had run them all.
    """
    try:
        return func()
    except BaseException as err:
        if attempts <= 1 or not retry_if(err):
            raise
        first_error = err
    return _retry_after(first_error, func, attempts=attempts, wait_s=wait_s,
                        retry_if=retry_if, sleep=sleep)


def _retry_after(
    first_error: BaseException,
    func: Callable[[], T],
    *,
    attempts: int,
    wait_s: float,
    retry_if: Callable[[BaseException], bool],
    sleep: Callable[[float], bool | None],
) -> T:
    """Attempts 2.. of ``retry_call``; tenacity's first attempt re-raises ``first_error``
    (the call that already failed) instead of calling ``func`` again."""
    import tenacity

    interrupted = False
    errors: list[BaseException] = [first_error]
    replayed = False

    def attempt() -> T:
        nonlocal replayed
        if not replayed:
            replayed = True
            raise errors[-1]
        if interrupted:
            raise errors[-1]
        try:
            return func()
        except BaseException as err:
            errors[:] = [err]
            raise

    def nap(seconds: float) -> None:
        nonlocal interrupted
        if sleep(seconds):
            interrupted = True

    retrying = tenacity.Retrying(
        stop=tenacity.stop_any(tenacity.stop_after_attempt(attempts),
                               lambda _state: interrupted),
        wait=tenacity.wait_fixed(wait_s),
        retry=tenacity.retry_if_exception(retry_if),
        sleep=nap,
        reraise=True,
    )
    return retrying(attempt)


class Backoff:
    """Delay before attempt n+1 after n consecutive failures: initial * 2^(n-1), capped."""

    def __init__(self, initial_s: float, max_s: float, jitter_s: float | None = None) -> None:
        self._initial_s, self._max_s = initial_s, max_s
        self._jitter_s = initial_s / 2 if jitter_s is None else jitter_s
        self._wait: tenacity.wait_exponential_jitter | None = None
        self._retrying: tenacity.Retrying | None = None
        self._state_type: type[tenacity.RetryCallState] | None = None

    def delay_s(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (0 means no wait)."""
        if failures <= 0:
            return 0.0
        if self._state_type is None:  # the first failure: tenacity loads now (module doc)
            import tenacity

            self._wait = tenacity.wait_exponential_jitter(
                multiplier=self._initial_s, max=self._max_s, jitter=self._jitter_s)
            self._retrying = tenacity.Retrying()
            self._state_type = tenacity.RetryCallState
        assert self._wait is not None and self._retrying is not None
        state = self._state_type(self._retrying, None, (), {})
        state.attempt_number = failures
        return min(self._max_s, float(self._wait(state)))
