"""Where a minute, hourly or daily period begins and ends (pure, local time).

HJ 212 times are the station's local wall-clock time without a zone (realtime.py), and
``DataTime`` of a 2051/2061/2031 record is the **start** of its period (HJ 212-2017
Table 4). A minute period is ``MinInterval`` minutes long (1, 2, 3, 4, 5, 6, 10, 12, 15,
20 or 30: each divides the hour, so periods are aligned to the hour); an hourly period
starts on the hour, a daily one at local midnight. Every function takes and returns
naive local datetimes; the caller converts (``to_local``) once.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

MINUTE_CN, HOURLY_CN, DAILY_CN = "2051", "2061", "2031"
KINDS = {MINUTE_CN: "minute", HOURLY_CN: "hourly", DAILY_CN: "daily"}
MIN_INTERVALS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)


def period_start(moment: datetime, cn: str, minutes: int) -> datetime:
    """The start of the ``cn`` period holding ``moment`` (``minutes``: the minute
    interval, used by 2051 only). ValueError for an interval HJ 212 does not allow."""
    if cn == MINUTE_CN:
        if minutes not in MIN_INTERVALS:
            raise ValueError(f"minute interval {minutes}: expected one of "
                             + ", ".join(map(str, MIN_INTERVALS)))
        return moment.replace(minute=moment.minute - moment.minute % minutes, second=0,
                              microsecond=0)
    if cn == HOURLY_CN:
        return moment.replace(minute=0, second=0, microsecond=0)
    if cn == DAILY_CN:
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"CN {cn} is not a statistics command (2051, 2061, 2031)")


def period_end(start: datetime, cn: str, minutes: int) -> datetime:
    """The first instant after the period that begins at ``start``. ValueError when that
    is past the calendar's end (year 9999: a garbled or placeholder instrument time)."""
    try:
        if cn == MINUTE_CN:
            return start + timedelta(minutes=minutes)
        if cn == HOURLY_CN:
            return start + timedelta(hours=1)
        return (start + timedelta(days=1)).replace(hour=0)
    except OverflowError as err:
        raise ValueError(f"the period beginning {start} ends after year 9999") from err


def to_local(moment: datetime, zone: tzinfo | None = None) -> datetime:
    """An aware ``moment`` as naive wall-clock time in ``zone`` (None: the process's).
    ValueError (not OverflowError, which callers would not expect from bad data) when
    that falls outside years 1-9999, as a garbled instrument time can."""
    try:
        return moment.astimezone(zone).replace(tzinfo=None)
    except OverflowError as err:
        raise ValueError(f"time {moment.isoformat()} has no local time in years "
                         "1-9999") from err


def local_to_unix(moment: datetime) -> float:
    """A naive local time as unix seconds (the process's zone: when it is due)."""
    return moment.timestamp()
