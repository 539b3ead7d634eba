"""Small text helpers for what technicians read: times, ages, aligned columns."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime


def local_time(at: float) -> str:
    """A unix time in this PC's time zone, with the offset: 2024-05-01 10:02:03+08:00."""
    return datetime.fromtimestamp(at).astimezone().isoformat(sep=" ", timespec="seconds")


def duration(seconds: float) -> str:
    """'4 s', '3 min', '2 h 05 min', '3 d 4 h': as precise as a glance needs."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def when(at: float, now: float) -> str:
    """'2024-05-01 10:02:03+08:00 (4 s ago)'."""
    return f"{local_time(at)} ({duration(now - at)} ago)"


def parse_iso(text: str | None) -> float | None:
    """Unix seconds from the ISO-8601 UTC text of payloads and /status."""
    return None if text is None else datetime.fromisoformat(text).timestamp()


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell; the last column is left as long as it is."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(cell).ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, str(row[-1])]).rstrip())
    return lines


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"
