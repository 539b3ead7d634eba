"""Small text helpers for what technicians read: times, ages, aligned columns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from unicodedata import east_asian_width

from edge_agent.i18n import _, ngettext

#: Every noun ``plural`` counts, as whole phrases the translator sees (Chinese counts with
#: a measure word: 3 个样本, 2 条消息).
_COUNTED: dict[str, Callable[[int], str]] = {
    "sample": lambda n: ngettext("{count} sample", "{count} samples", n),
    "undelivered sample": lambda n: ngettext("{count} undelivered sample",
                                             "{count} undelivered samples", n),
    "lost sample": lambda n: ngettext("{count} lost sample", "{count} lost samples", n),
    "poll": lambda n: ngettext("{count} poll", "{count} polls", n),
    "message": lambda n: ngettext("{count} message", "{count} messages", n),
    "failover": lambda n: ngettext("{count} failover", "{count} failovers", n),
    "failed attempt": lambda n: ngettext("{count} failed attempt", "{count} failed attempts", n),
    "gap event": lambda n: ngettext("{count} gap event", "{count} gap events", n),
    "alarm event": lambda n: ngettext("{count} alarm event", "{count} alarm events", n),
    "row": lambda n: ngettext("{count} row", "{count} rows", n),
    "line": lambda n: ngettext("{count} line", "{count} lines", n),
    "request": lambda n: ngettext("{count} request", "{count} requests", n),
    "answer": lambda n: ngettext("{count} answer", "{count} answers", n),
    "timeout": lambda n: ngettext("{count} timeout", "{count} timeouts", n),
    "exception": lambda n: ngettext("{count} exception", "{count} exceptions", n),
    "split read": lambda n: ngettext("{count} split read", "{count} split reads", n),
}


def local_time(at: float) -> str:
    """A unix time in this PC's time zone, with the offset: 2024-05-01 10:02:03+08:00."""
    return datetime.fromtimestamp(at).astimezone().isoformat(sep=" ", timespec="seconds")


def duration(seconds: float) -> str:
    """'4 s', '3 min', '2 h 05 min', '3 d 4 h': as precise as a glance needs."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return _("{seconds} s").format(seconds=seconds)
    minutes = seconds // 60
    if minutes < 120:
        return _("{minutes} min").format(minutes=minutes)
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return _("{hours} h {minutes:02d} min").format(hours=hours, minutes=minutes)
    days, hours = divmod(hours, 24)
    return _("{days} d {hours} h").format(days=days, hours=hours)


def when(at: float, now: float) -> str:
    """'2024-05-01 10:02:03+08:00 (4 s ago)'."""
    return _("{time} ({age} ago)").format(time=local_time(at), age=duration(now - at))


def parse_iso(text: str | None) -> float | None:
    """Unix seconds from the ISO-8601 UTC text of payloads and /status."""
    return None if text is None else datetime.fromisoformat(text).timestamp()


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell; the last column is left as long as it is."""
    widths = [max(shown_width(str(row[i])) for row in [header, *rows])
              for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(cell) + " " * (widths[i] - shown_width(str(cell)))
                 for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, str(row[-1])]).rstrip())
    return lines


def shown_width(text: str) -> int:
    """Columns ``text`` takes on a terminal: a Chinese character takes two."""
    return sum(2 if east_asian_width(char) in "WF" else 1 for char in text)


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """'1 sample', '3 samples', in the chosen language for the nouns of ``_COUNTED``."""
    if noun in _COUNTED:
        return _COUNTED[noun](count).format(count=count)
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"
