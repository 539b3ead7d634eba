"""HJ 212 minute/hourly/daily statistics kept in the outbox file: fold, close, deliver.

Each function runs inside one transaction the caller opened on the outbox's writer
connection (``Outbox.run_transaction``; forward/hj212stats.py), so what it reads of the outbox
and what it writes to the statistics tables (schema v6, v7) commit together or not at all.

Invariants (per HJ 212 uplink, keyed by its name):

* **Folded exactly once.** ``hj212_fold.last_row`` is the outbox row id up to which every
  sample of the uplink's devices has been folded into ``hj212_open``; ``fold`` reads rows
  above it in id order (acquisition order) and moves it in the same transaction as the
  accumulators it changed. A SIGKILL before the commit leaves neither; row ids only grow
  (AUTOINCREMENT) and appends commit on the same writer thread, so no row can appear
  below ``last_row`` later. The uplink acknowledges a row only after ``fold`` has passed
  it (hj212stats.FoldingOutbox), so the outbox never deletes a row not yet folded.
* **Closed once.** ``close_due`` turns the open periods whose end plus the grace is past
  into ``hj212_stats`` records, only after ``fold`` has caught up with the outbox (the
  caller's rule), and deletes their accumulators in the same transaction. A record is
  never recomputed: a sample of a period that has a record (or that ended longer ago
  than records are kept) is late: counted in ``hj212_fold.late`` and returned to be
  logged, never folded into a sent record.
* **An interval change spares the open period.** ``hj212_fold.intervals`` (schema v7) is
  the uplink's schedule of minute intervals, each with the local time from which it
  applies. A new interval (1064, or a restart with another station file) applies from
  the first boundary after the change that old and new intervals share (at the latest
  the next full hour); a sample takes the interval in force at its own time, so the
  open period closes at the length it was opened with and no sample becomes late.
* **Delivered once it is.** A record waits (``delivered_at`` NULL) until the platform
  took it; ``failures`` counts failed sends, so it goes again marked re-sent.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from edge_agent.hj212.cp import Factor, build_region, format_time
from edge_agent.hj212.periods import (
    MINUTE_CN,
    local_to_unix,
    period_end,
    period_start,
    to_local,
)
from edge_agent.hj212.realtime import DeviceMap, in_platform_unit, reading_value
from edge_agent.hj212.stats import Accumulator, PeriodSample, stats_factor

FOLD_BATCH = 2000  # outbox rows folded per transaction
CLOSE_GRACE_S = 10.0  # a period closes this long after its end, plus the devices' lag
MAX_LAG_S = 3600.0  # an instrument's reported lag counts up to this much
KEEP_DAYS = 40  # delivered records are kept this long for history pulls


@dataclass(frozen=True)
class Plan:
    """What one uplink's statistics cover: its devices' channels and codes (realtime's
    ``DeviceMap``), the CNs it keeps (2051 always; 2061/2031 when the station file says)
    and the minute interval set now (the station file's, or the platform's 1064; ``fold``
    applies a new one from the next boundary both share, module docstring)."""

    uplink: str
    maps: Mapping[str, DeviceMap]
    cns: tuple[str, ...]
    minutes: int

    def code_order(self) -> dict[str, tuple[int, int | None]]:
        """code -> (position in the station file, decimals): the order of a record."""
        found: dict[str, tuple[int, int | None]] = {}
        for mapping in self.maps.values():
            for _, code, _, decimals in mapping.channels:
                found.setdefault(code, (len(found), decimals))
        return found


@dataclass
class Folded:
    """What one ``fold`` did: rows read, whether it reached the outbox's last row, the
    late samples it set aside as (cn, period start, device) and unreadable bodies."""

    rows: int = 0
    caught_up: bool = True
    last_row: int = 0  # every sample up to this outbox row id is folded
    late: list[tuple[str, str, str]] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class StoredRecord:
    """A closed record as stored: its CN, ``DataTime`` text, CP region, when it closed
    (unix s) and how often sending it failed."""

    cn: str
    period_start: str
    cp: str
    closed_at: float
    failures: int


def sample_inputs(body: str, mapping: DeviceMap) -> tuple[datetime, list[tuple[str,
                                                                            PeriodSample]]]:
    """(the sample's time as an aware datetime, (code, input) of each mapped channel it
    holds) from a stored sample body: value in the platform's unit and flag, as the
    2011 record of the same sample has them (realtime.py). ValueError: not a sample."""
    sample = json.loads(body)
    values = sample.get("values") or {}
    stamp = str(sample.get("instrument_time") or sample["acquired_at"])
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    found = []
    for channel, code, unit, _ in mapping.channels:
        reading = values.get(channel)
        if reading is None:
            continue
        number, flag = reading_value(reading)
        if number is not None and math.isfinite(number):
            number, flag = in_platform_unit(number, flag, reading, unit)
        found.append((code, PeriodSample(number, flag)))
    return moment, found


def _cursor(conn: sqlite3.Connection, uplink: str) -> tuple[int, dict[str, float]]:
    row = conn.execute("SELECT last_row, lags FROM hj212_fold WHERE uplink = ?",
                       [uplink]).fetchone()
    if row is None:
        conn.execute("INSERT INTO hj212_fold (uplink, last_row) VALUES (?, 0)", [uplink])
        return 0, {}
    return int(row[0]), json.loads(row[1])


def fold(conn: sqlite3.Connection, plan: Plan, now_unix: float,
         batch: int = FOLD_BATCH) -> Folded:
    """Fold the next ``batch`` samples of the plan's devices (see the module docstring)."""
    period_start(datetime(2000, 1, 1), MINUTE_CN, plan.minutes)  # ValueError: a bad plan
    last_row, lags = _cursor(conn, plan.uplink)  # fails the fold, never a row "unreadable"
    schedule = _schedule(conn, plan, now_unix)
    devices = sorted(plan.maps)
    done = Folded(last_row=last_row)
    if not devices:
        return done
    marks = ",".join("?" * len(devices))
    rows = conn.execute(
        f"SELECT id, device_id, acquired_at, body FROM outbox WHERE id > ? AND kind = "
        f"'sample' AND device_id IN ({marks}) ORDER BY id LIMIT ?",
        [last_row, *devices, batch]).fetchall()
    done.rows = len(rows)
    done.caught_up = len(rows) < batch
    pending: dict[tuple[str, str, str], tuple[float, Accumulator]] = {}
    closed: dict[tuple[str, str], bool] = {}
    oldest = now_unix - KEEP_DAYS * 86400
    late = 0
    for row_id, device, acquired_at, body in rows:
        try:
            moment, inputs = sample_inputs(body, plan.maps[device])
            periods = _periods(to_local(moment), plan, schedule)
        except (ValueError, KeyError, TypeError):
            done.unreadable.append((device, str(row_id)))
            continue
        lags[device] = min(max(float(acquired_at) - moment.timestamp(), 0.0), MAX_LAG_S)
        for cn, start_text, end_unix in periods:
            if (cn, start_text) not in closed:
                closed[(cn, start_text)] = end_unix < oldest or conn.execute(
                    "SELECT 1 FROM hj212_stats WHERE uplink = ? AND cn = ? AND "
                    "period_start = ?", [plan.uplink, cn, start_text]).fetchone() is not None
            if closed[(cn, start_text)]:
                late += 1
                done.late.append((cn, start_text, device))
                continue
            for code, sample in inputs:
                _, accumulator = pending.setdefault((cn, start_text, code),
                                                    (end_unix, Accumulator()))
                accumulator.add(sample)
    for (cn, start_text, code), (end_unix, accumulator) in pending.items():
        _store_open(conn, plan.uplink, cn, start_text, code, end_unix, accumulator)
    if rows:
        last_row = rows[-1][0]
    if done.caught_up:  # every row up to the newest was read: skip the others' rows
        (newest,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()
        last_row = max(last_row, int(newest))
    conn.execute("UPDATE hj212_fold SET last_row = ?, lags = ?, late = late + ? "
                 "WHERE uplink = ?", [last_row, json.dumps(lags), late, plan.uplink])
    done.last_row = last_row
    return done


def _periods(local: datetime, plan: Plan, schedule: list[tuple[datetime, int]]
             ) -> list[tuple[str, str, float]]:
    """(cn, DataTime, end as unix s) of the periods holding a sample's local time, one
    per CN kept, the minute period by the interval in force at that time (``schedule``).
    ValueError when one ends past the calendar (a year-9999 time): the sample is
    unreadable then, never a fold that fails on every retry."""
    minutes = next((m for since, m in reversed(schedule) if since <= local), schedule[0][1])
    periods = []
    for cn in plan.cns:
        start = period_start(local, cn, minutes)
        periods.append((cn, format_time(start),
                        local_to_unix(period_end(start, cn, minutes))))
    return periods


def switch_at(change: datetime, old: int, new: int) -> datetime:
    """The first minute-period boundary after ``change`` (local) that the ``old`` and the
    ``new`` interval share: the open period ends at its old length, and no period of
    either interval straddles the switch. Both divide the hour, so at the latest the
    next full hour."""
    moment = period_end(period_start(change, MINUTE_CN, old), MINUTE_CN, old)
    while moment.minute % new:
        moment += timedelta(minutes=old)
    return moment


def _schedule(conn: sqlite3.Connection, plan: Plan, now_unix: float
              ) -> list[tuple[datetime, int]]:
    """The uplink's minute intervals, (local time from which, minutes), oldest first,
    with the plan's interval added when it changed (module docstring); stored back.
    Entries older than records are kept go, except the one in force then."""
    (text,) = conn.execute("SELECT intervals FROM hj212_fold WHERE uplink = ?",
                           [plan.uplink]).fetchone()
    schedule = [(datetime.fromisoformat(since), int(m)) for since, m in json.loads(text)]
    now = to_local(datetime.fromtimestamp(now_unix, UTC))
    if schedule and schedule[-1][0] > now:  # a change not in force yet: replaced
        schedule.pop()
    if not schedule:
        schedule = [(datetime.min, plan.minutes)]
    if schedule[-1][1] != plan.minutes:
        schedule.append((switch_at(now, schedule[-1][1], plan.minutes), plan.minutes))
    oldest = now - timedelta(days=KEEP_DAYS)
    while len(schedule) > 1 and schedule[1][0] <= oldest:
        schedule.pop(0)
    conn.execute("UPDATE hj212_fold SET intervals = ? WHERE uplink = ?",
                 [json.dumps([[since.isoformat(), m] for since, m in schedule]),
                  plan.uplink])
    return schedule


def _store_open(conn: sqlite3.Connection, uplink: str, cn: str, start_text: str,
                code: str, end_unix: float, accumulator: Accumulator) -> None:
    row = conn.execute("SELECT acc FROM hj212_open WHERE uplink = ? AND cn = ? AND "
                       "period_start = ? AND code = ?",
                       [uplink, cn, start_text, code]).fetchone()
    if row is not None:
        stored = Accumulator(**json.loads(row[0]))
        stored.merge(accumulator)
        accumulator = stored
    conn.execute("INSERT OR REPLACE INTO hj212_open (uplink, cn, period_start, code, "
                 "period_end, acc) VALUES (?, ?, ?, ?, ?, ?)",
                 [uplink, cn, start_text, code, end_unix, json.dumps(asdict(accumulator))])


def grace_s(conn: sqlite3.Connection, uplink: str) -> float:
    """How long after its end a period closes: ``CLOSE_GRACE_S`` plus the largest lag
    between a device's instrument time and its acquisition (a GC reports an analysis
    minutes after its analysis time); at most ``CLOSE_GRACE_S + MAX_LAG_S``."""
    _, lags = _cursor(conn, uplink)
    return CLOSE_GRACE_S + max(lags.values(), default=0.0)


def close_due(conn: sqlite3.Connection, plan: Plan, now_unix: float
              ) -> list[tuple[str, str]]:
    """Close every open period whose end plus ``grace_s`` is past ``now_unix``; call only
    when ``fold`` has caught up. Returns (cn, DataTime) of the records written."""
    due = now_unix - grace_s(conn, plan.uplink)
    rows = conn.execute("SELECT cn, period_start, code, acc FROM hj212_open WHERE "
                        "uplink = ? AND period_end <= ? ORDER BY period_start, cn",
                        [plan.uplink, due]).fetchall()
    periods: dict[tuple[str, str], list[tuple[str, Accumulator]]] = {}
    for cn, start_text, code, acc in rows:
        periods.setdefault((cn, start_text), []).append((code, Accumulator(**json.loads(acc))))
    order = plan.code_order()
    for (cn, start_text), codes in periods.items():
        factors = [_factor(code, accumulator, order) for code, accumulator in
                   sorted(codes, key=lambda item: (order.get(item[0], (1 << 30, None))[0],
                                                   item[0]))]
        cp = build_region([("DataTime", start_text)], factors)
        conn.execute("INSERT OR IGNORE INTO hj212_stats (uplink, cn, period_start, cp, "
                     "closed_at) VALUES (?, ?, ?, ?, ?)",
                     [plan.uplink, cn, start_text, cp, now_unix])
        conn.execute("DELETE FROM hj212_open WHERE uplink = ? AND cn = ? AND "
                     "period_start = ?", [plan.uplink, cn, start_text])
    return list(periods)


def _factor(code: str, accumulator: Accumulator,
            order: Mapping[str, tuple[int, int | None]]) -> Factor:
    """``-Min/-Avg/-Max/-Flag`` of one code; no ``-Cou``: the codes a station carries are
    concentrations, and ``-Cou`` is the total of a flow (HJ 212-2017 Table 4)."""
    return stats_factor(code, accumulator.result(), order.get(code, (0, None))[1])


def waiting(conn: sqlite3.Connection, uplink: str, limit: int) -> list[StoredRecord]:
    """Closed records the platform does not have yet, newest first (HJ 212-2025 §8.1.2:
    newly acquired data goes first)."""
    return [StoredRecord(*row) for row in conn.execute(
        "SELECT cn, period_start, cp, closed_at, failures FROM hj212_stats WHERE "
        "uplink = ? AND delivered_at IS NULL ORDER BY closed_at DESC, period_start DESC, "
        "cn LIMIT ?", [uplink, limit])]


def mark_delivered(conn: sqlite3.Connection, uplink: str, cn: str, start_text: str,
                   at_unix: float) -> None:
    conn.execute("UPDATE hj212_stats SET delivered_at = ? WHERE uplink = ? AND cn = ? AND "
                 "period_start = ?", [at_unix, uplink, cn, start_text])


def mark_failed(conn: sqlite3.Connection, uplink: str, cn: str, start_text: str) -> None:
    conn.execute("UPDATE hj212_stats SET failures = failures + 1 WHERE uplink = ? AND "
                 "cn = ? AND period_start = ?", [uplink, cn, start_text])


def history(conn: sqlite3.Connection, uplink: str, cn: str, begin: datetime,
            end: datetime) -> list[str]:
    """The CP regions of the stored ``cn`` records with ``DataTime`` from ``begin`` to
    ``end`` (both included), oldest first: what a history pull is answered with."""
    return [cp for (cp,) in conn.execute(
        "SELECT cp FROM hj212_stats WHERE uplink = ? AND cn = ? AND period_start BETWEEN "
        "? AND ? ORDER BY period_start", [uplink, cn, format_time(begin), format_time(end)])]


def prune(conn: sqlite3.Connection, uplink: str, now_unix: float) -> int:
    """Delete delivered records closed more than ``KEEP_DAYS`` ago; records the platform
    does not have are kept until it does. Returns how many went."""
    return conn.execute("DELETE FROM hj212_stats WHERE uplink = ? AND delivered_at IS NOT "
                        "NULL AND closed_at < ?",
                        [uplink, now_unix - KEEP_DAYS * 86400]).rowcount


def late_count(conn: sqlite3.Connection, uplink: str) -> int:
    row = conn.execute("SELECT late FROM hj212_fold WHERE uplink = ?", [uplink]).fetchone()
    return int(row[0]) if row else 0


def periods_of(records: Iterable[StoredRecord]) -> list[tuple[str, str]]:
    """(cn, DataTime) of each record, for logs and tests."""
    return [(record.cn, record.period_start) for record in records]
