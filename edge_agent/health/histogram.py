"""A fixed-bucket histogram of durations, cheap enough for the forwarder's ack path.

Prometheus clients would do this too; a few lines here keep the agent free of a
runtime dependency for it (the text format is written by ``metrics.py``).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate

# Broker acknowledgement latency: a few ms on a LAN, 0.1-1 s over 4G, seconds to a
# minute when a backlog or a slow uplink queues messages behind each other.
ACK_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                         30.0, 60.0)


@dataclass(frozen=True)
class HistogramSnapshot:
    """Cumulative counts per upper bound (``le``), the +Inf count, and the sum."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]  # one per bound
    count: int  # every observation: the +Inf bucket
    sum: float


class Histogram:
    """Observed by one thread, read by another; a lock keeps count, sum and buckets of
    one snapshot consistent with each other."""

    def __init__(self, bounds: Iterable[float] = ACK_LATENCY_BUCKETS_S) -> None:
        self._bounds = tuple(sorted(bounds))
        self._counts = [0] * (len(self._bounds) + 1)  # the last one: above every bound
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        index = bisect_left(self._bounds, value)  # the first bound >= value (le is <=)
        with self._lock:
            self._counts[index] += 1
            self._sum += value

    def snapshot(self) -> HistogramSnapshot:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative = tuple(accumulate(counts))
        return HistogramSnapshot(self._bounds, cumulative[:-1], cumulative[-1], total)
