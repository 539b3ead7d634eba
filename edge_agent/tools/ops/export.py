"""``edge-agent export``: undelivered samples to CSV or JSON Lines, for carrying data off
a station by hand while the uplink is down.

Reads the outbox read-only (store/readonly.py), so it works while the agent runs and
never changes the outbox: exported samples are still sent when the uplink returns, and
the platform de-duplicates them by sample id. The rows come from one snapshot of the
file. The output is written to ``FILE.partial``, synced, then renamed, so a file with the
final name is always complete (a USB stick pulled out too early leaves only the partial).

* JSON Lines: one payload-v1 message per line (docs/payload.md), each with one sample
  or one gap event, marked ``historical``: what the platform would have received.
* CSV: one row per reading (long format, so devices with different channels fit one
  file); gap events do not fit it and are counted in the summary instead.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from edge_agent.i18n import _
from edge_agent.payload import Message, encode_message
from edge_agent.store.readonly import OutboxUnreadable, Row, iter_rows, open_read_only
from edge_agent.tools.ops.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, load_station
from edge_agent.tools.ops.text import local_time, plural

CSV_COLUMNS = ("station", "device", "seq", "sample_id", "acquired_at", "instrument_time",
               "stream", "channel", "value", "unit", "quality", "reason")
FORMATS = ("csv", "jsonl")


@dataclass
class _Tally:
    """What was written for one device."""

    samples: int = 0
    gaps: int = 0
    first_at: float | None = None
    last_at: float | None = None
    lines: int = 0


@dataclass
class _Result:
    per_device: dict[str, _Tally] = field(default_factory=dict)
    lines: int = 0
    gaps_left_out: int = 0


def run_export(args: argparse.Namespace) -> int:
    config = load_station(args.config)
    if config is None:
        return EXIT_CONFIG
    problem = _check_arguments(args)
    if problem:
        print(_("edge-agent export: {problem}").format(problem=problem), file=sys.stderr)
        return EXIT_CONFIG
    path = args.outbox or config.store.path
    try:
        conn = open_read_only(path)
    except OutboxUnreadable as err:
        print(_("edge-agent export: {problem}").format(problem=err), file=sys.stderr)
        return EXIT_FAILED
    try:
        unknown = _unknown_devices(conn, args.device, {d.id for d in config.devices})
        if unknown:
            print(_("edge-agent export: {problem}").format(problem=unknown), file=sys.stderr)
            return EXIT_CONFIG
        rows = iter_rows(conn, args.start, args.end, args.device)
        result = _write(rows, args.out, _format(args), config.station_id)
    except OSError as err:
        print(_("edge-agent export: cannot write {path}: {error}").format(path=args.out,
                                                                          error=err),
              file=sys.stderr)
        return EXIT_FAILED
    finally:
        conn.close()
    print("\n".join(_summary(result, args, path)))
    return EXIT_OK


def _format(args: argparse.Namespace) -> str:
    return args.format or args.out.suffix.lower().lstrip(".")


def _check_arguments(args: argparse.Namespace) -> str | None:
    if _format(args) not in FORMATS:
        return _("say --format csv or --format jsonl (the name {name} does not end in .csv or "
                 ".jsonl)").format(name=args.out.name)
    if args.start is not None and args.end is not None and args.start >= args.end:
        return "--from must be earlier than --to"
    if args.out.exists() and not args.force:
        return _("{path} exists; choose another name, or add --force to replace it").format(
            path=args.out)
    return None


def _unknown_devices(conn: sqlite3.Connection, wanted: list[str],
                     configured: set[str]) -> str | None:
    """Names given with --device that neither the station file nor the outbox knows."""
    stored = {name for (name,) in conn.execute("SELECT device_id FROM device_seq")}
    known = configured | stored
    unknown = [name for name in wanted if name not in known]
    if not unknown:
        return None
    return _("--device {devices}: no such device in the station file or the outbox (known: "
             "{known})").format(devices=", ".join(unknown),
                                known=", ".join(sorted(known)) or _("none"))


def _write(rows: Iterable[Row], out: Path, fmt: str, station: str) -> _Result:
    partial = out.with_name(out.name + ".partial")
    result = _Result()
    with open(partial, "w", encoding="utf-8", newline="") as file:
        write_row = _csv_writer(file, station, result) if fmt == "csv" \
            else _jsonl_writer(file, station)
        for row in rows:
            tally = result.per_device.setdefault(row.device_id, _Tally())
            if row.kind == "gap" and fmt == "csv":
                result.gaps_left_out += 1
                continue
            written = write_row(row)
            result.lines += written
            tally.lines += written
            if row.kind == "gap":
                tally.gaps += 1
                continue
            tally.samples += 1
            tally.first_at = row.acquired_at if tally.first_at is None else tally.first_at
            tally.last_at = row.acquired_at
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, out)
    return result


def _jsonl_writer(file: IO[str], station: str) -> Callable[[Row], int]:
    def write(row: Row) -> int:
        message = Message(row.entry.entry_id, row.kind, row.device_id, True, (row.entry,))
        file.write(encode_message(message, station).decode() + "\n")
        return 1

    return write


def _csv_writer(file: IO[str], station: str, result: _Result) -> Callable[[Row], int]:
    writer = csv.writer(file)
    writer.writerow(CSV_COLUMNS)
    result.lines += 1

    def write(row: Row) -> int:
        body = json.loads(row.entry.body)
        head = [station, row.device_id, body["seq"], body["id"], body["acquired_at"],
                body["instrument_time"] or "", body.get("stream", "")]
        for channel, value in body["values"].items():
            writer.writerow([*head, channel, _cell(value["value"]), value["unit"],
                             value["quality"], value["reason"] or ""])
        return len(body["values"])

    return write


def _cell(value: object) -> str:
    """A value as JSON writes it (true/false, 12.5), empty when there is none."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _summary(result: _Result, args: argparse.Namespace, path: Path) -> list[str]:
    samples = sum(t.samples for t in result.per_device.values())
    gaps = sum(t.gaps for t in result.per_device.values())
    span = _("from {start} to {end}").format(
        start=local_time(args.start) if args.start is not None else _("the oldest"),
        end=local_time(args.end) if args.end is not None else _("the newest"))
    what = plural(samples, "sample") + (_(" and {gaps}").format(gaps=plural(gaps, "gap event"))
                                        if gaps else "")
    lines = [_("Exported {what} ({span}) from {path}").format(what=what, span=span, path=path),
             _("to {out} ({format}, {lines})").format(out=args.out, format=_format(args).upper(),
                                                      lines=plural(result.lines, "line"))]
    for device, tally in sorted(result.per_device.items()):
        if tally.samples or tally.gaps:
            times = _(", acquired {first} .. {last}").format(
                first=local_time(tally.first_at), last=local_time(tally.last_at)) \
                if tally.first_at is not None and tally.last_at is not None else ""
            gap_text = f" + {plural(tally.gaps, 'gap event')}" if tally.gaps else ""
            lines.append(f"  {device}: {plural(tally.samples, 'sample')}{gap_text}{times}")
    for device in args.device:
        if device not in result.per_device or not result.per_device[device].samples:
            lines.append(_("  {device}: no undelivered samples in this range").format(
                device=device))
    if result.gaps_left_out:
        lines.append(_("{gaps} (samples dropped by retention) in this range cannot be written "
                       "as CSV rows; export --format jsonl to carry them too").format(
                           gaps=plural(result.gaps_left_out, "gap event")))
    lines.append(_("The outbox is unchanged: these samples are still sent when the uplink "
                   "returns; the platform de-duplicates them by sample id."))
    return lines
