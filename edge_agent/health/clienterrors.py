"""Counting what clients of the health endpoint do wrong, and saying so without flooding.

The endpoint answers whatever can reach its port: a scanner, a broken proxy, a flood of
resets. Each misbehaving request is counted by reason (``/metrics``:
``edge_agent_health_client_errors_total``) and logged in one line, but at most one line
per reason per minute: the next line for that reason says how many were left out, so a
flood costs the journal one line a minute instead of one per connection (200 resets once
printed 4,606 lines of tracebacks).

Used from the endpoint's event-loop thread only; the counters are read by the threads
that render ``/metrics`` (a dict copy, atomic under the GIL).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("edge_agent.health.server")

#: reason -> what the log line says. Every reason is a series in /metrics from the start.
REASONS: dict[str, str] = {
    "busy": "too many open connections, answered 503",
    "request_timeout": "request not complete in time, answered 408",
    "request_line_too_long": "request line too long, answered 414",
    "headers_too_large": "request headers too large or too many, answered 431",
    "bad_request": "malformed request, answered 400",
    "unsupported_method": "method other than GET, answered 501",
    "disconnected": "client closed or reset the connection mid-request",
    "write_timeout": "client did not read the answer in time, connection dropped",
}

LOG_INTERVAL_S = 60.0


class ClientErrors:
    """Counters by reason, and a log of at most one line per reason per ``interval_s``."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self.counts: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._logged_at: dict[str, float] = {}
        self._suppressed: dict[str, int] = dict.fromkeys(REASONS, 0)

    def record(self, reason: str, peer: str, detail: str = "") -> None:
        """Count one error of ``reason`` (a key of REASONS) by ``peer``; log it unless a
        line for the same reason was logged less than ``interval_s`` ago."""
        self.counts[reason] += 1
        now = self._clock()
        last = self._logged_at.get(reason)
        if last is not None and now - last < self.interval_s:
            self._suppressed[reason] += 1
            return
        left_out, self._suppressed[reason] = self._suppressed[reason], 0
        self._logged_at[reason] = now
        log.warning("health endpoint: %s: %s%s%s", peer, REASONS[reason],
                    f" ({detail})" if detail else "",
                    f"; {left_out} more since the last such line" if left_out else "")

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)


def clip(data: bytes | str, limit: int = 40) -> str:
    """``data`` shown safely in one log line: repr() escapes control characters and
    newlines, and a client cannot make the line longer than ``limit`` characters."""
    shown = repr(data[:limit])
    return shown + ("..." if len(data) > limit else "")
