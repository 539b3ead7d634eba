"""Which samples go to a platform as real-time data (CN 2011): one per device per
real-time interval. Pure, no I/O.

HJ 212 (2017 Table 4, 2025 unchanged) gives the real-time interval ``RtdInterval``,
30..3600 s, set by the station file or by the platform (CN 1062). Neither standard nor
any source in /work/shared/hj212/README.md says which sample of an interval a station
sends; we send **the first sample whose DataTime is at or after the interval's start**,
intervals counted from local midnight (so 60 s intervals start on the minute, 3600 s on
the hour, whatever time the agent started). Samples after it in the same interval are
not sent as 2011; they still count toward the minute/hour/day statistics, which are
computed from the outbox.

The rule depends only on each sample's own DataTime and on the DataTime of the last one
sent, so a backlog after an outage is thinned exactly like live data: re-sent (RF=1
under 2025) at the same interval spacing, not every sample. The last one sent is kept
per device **and lane** (the caller's key): after an outage the uplink takes new samples
before the backlog (HJ 212-2025 §8.1.2), so the two interleave, and one pointer for both
would jump back and forth and let a second live sample through in the same interval.
Where the lanes meet (the interval in which the session began) each lane may send one.
A sample whose upload failed is not marked sent, so it is chosen again when it comes
back. The last sent DataTime is kept in memory only: after a restart the first sample of
each device is sent, so the interval in which the agent restarted can carry two 2011 of
one device (the cost of not writing a file per packet; docs/hj212.md says so).
Interval 0: every sample is sent.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import date, datetime


def slot_of(data_time: datetime, interval_s: int) -> tuple[date, int]:
    """The interval ``data_time`` (naive local time, HJ 212's) falls in: its day and the
    number of whole intervals since that day's midnight."""
    midnight = data_time.replace(hour=0, minute=0, second=0, microsecond=0)
    return data_time.date(), int((data_time - midnight).total_seconds() // interval_s)


class RealtimeSchedule:
    """Per key (the uplink's: device and lane), the DataTime of the last 2011 delivered;
    ``due`` asks, ``sent`` tells."""

    def __init__(self) -> None:
        self._last: dict[Hashable, datetime] = {}

    def due(self, key: Hashable, data_time: datetime, interval_s: int) -> bool:
        """Whether this sample is the one its interval sends: interval 0, or none of
        this device sent yet, or the last one sent lies in another interval (a clock
        stepped back counts as another interval: the platform still hears from us)."""
        if interval_s <= 0:
            return True
        last = self._last.get(key)
        return last is None or slot_of(last, interval_s) != slot_of(data_time, interval_s)

    def sent(self, key: Hashable, data_time: datetime) -> None:
        """The 2011 of ``data_time`` under ``key`` was delivered."""
        self._last[key] = data_time
