"""The station's local time for HJ 212 tests: HJ 212 periods and DataTime are local, and
the stations this is for run China's time (UTC+8, no daylight saving)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest


def china_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Body of a test file's autouse fixture (``yield from``): TZ is Asia/Shanghai for
    the test and is put back after it. ``time.tzset`` both ways, because the C library
    reads TZ only then."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
