"""The ``status`` and ``export`` command lines (parsed into typed values here, so a
mistyped time is a usage error, exit status 2, before anything is read)."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import Any

from edge_agent.i18n import N_, _
from edge_agent.tools.ops.common import DEFAULT_CONFIG

STATUS_EXIT_HELP = N_("""\
exit status:
  0  shown
  1  no running agent answered and the outbox file cannot be read
  2  invalid station file or command line
""")
EXPORT_EXIT_HELP = N_("""\
exit status:
  0  written
  1  the outbox cannot be read or FILE cannot be written
  2  invalid station file or command line
""")
EXPORT_EXAMPLES = N_("""\
examples:
  edge-agent export /etc/edge-agent/station.yaml --from 2024-05-01 --to 2024-05-08 \\
      --out /media/usb/cp-east-03-week18.csv
  edge-agent export /etc/edge-agent/station.yaml --device gc-1 --device ftir-1 \\
      --from "2024-05-01 06:00" --format jsonl --out /media/usb/gc-ftir.jsonl

""")
_TIME_HELP = N_("a date or time: 2024-05-01, '2024-05-01 08:30' (this PC's time zone) or "
              "2024-05-01T08:30Z, 2024-05-01T08:30+08:00")


def parse_time(text: str) -> float:
    """Unix seconds from an ISO-8601 date or time; without an offset, this PC's zone."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {_TIME_HELP}; found '{text}'") from None
    return moment.astimezone().timestamp()  # naive: taken as local time


def add_status_parser(sub: Any) -> None:
    status = sub.add_parser(
        "status", help=_("what the station is doing: devices, broker link, backlog, drops"),
        description=_("Ask the running agent (its health endpoint) for each device's state,\n"
                      "last good reading and last error, the broker link, the backlog and\n"
                      "the drops since start. When no agent answers, show what the outbox\n"
                      "file holds instead. The first line says which of the two it shows."),
        epilog=_(STATUS_EXIT_HELP), formatter_class=argparse.RawDescriptionHelpFormatter)
    status.add_argument("config", type=Path, nargs="?", default=DEFAULT_CONFIG,
                        help=_("station YAML file (default: {path})").format(
                            path=DEFAULT_CONFIG))
    _outbox_option(status)


def add_export_parser(sub: Any) -> None:
    export = sub.add_parser(
        "export", help=_("write undelivered samples to CSV or JSON Lines (carry data off "
                         "by hand)"),
        description=_("Write the samples waiting in the outbox, for a time range and\n"
                      "devices, to a CSV or JSON Lines file. Works while the agent runs;\n"
                      "the outbox is only read, never changed: the samples are still sent\n"
                      "when the uplink returns (the platform de-duplicates them by id)."),
        epilog=_(EXPORT_EXAMPLES) + _(EXPORT_EXIT_HELP),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    export.add_argument("config", type=Path, help=_("station YAML file"))
    export.add_argument("--from", dest="start", type=parse_time, metavar="TIME",
                        help=_("first acquisition time to include (default: the oldest); "
                                 "{times}").format(times=_(_TIME_HELP)))
    export.add_argument("--to", dest="end", type=parse_time, metavar="TIME",
                        help=_("acquisition time to stop before, not included (default: "
                               "everything up to now)"))
    export.add_argument("--device", action="append", default=[], metavar="ID",
                        help=_("only this device; repeat for several (default: all)"))
    export.add_argument("--format", choices=["csv", "jsonl"],
                        help=_("default: from FILE's extension (.csv or .jsonl)"))
    export.add_argument("--out", type=Path, required=True, metavar="FILE",
                        help=_("file to write (not replaced if it exists, unless --force)"))
    export.add_argument("--force", action="store_true", help=_("replace FILE if it exists"))
    _outbox_option(export)


def _outbox_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--outbox", type=Path, metavar="FILE",
                        help=_("the outbox file, if not where the station file says (under "
                               "systemd a relative store.path is in /var/lib/edge-agent)"))
