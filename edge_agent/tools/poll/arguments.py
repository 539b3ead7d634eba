"""The ``poll`` command line: its options, help text and exit statuses."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edge_agent.i18n import N_, _

EXIT_ALL_ANSWERED = 0
EXIT_SOME_SILENT = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130
EXIT_HELP = N_("""\
exit status:
  0  every device polled answered
  1  at least one device did not answer (or its port or connection is taken)
  2  invalid station file, or no device with the --device id
  130  interrupted (Ctrl-C)
""")
EXAMPLES = N_("""\
examples:
  edge-agent poll /etc/edge-agent/station.yaml
  edge-agent poll /etc/edge-agent/station.yaml --device gc-1 --raw

""")


def add_poll_parser(sub: Any) -> None:
    """Add ``poll`` to the top-level sub-command parsers."""
    poll = sub.add_parser(
        "poll", help=_("read every device once and print its values (nothing is stored or "
                       "published)"),
        description=_("Validate a station file like 'check', then read each device once\n"
                      "with the agent's own drivers and print each channel's value, unit,\n"
                      "quality and reason. Nothing is written to the outbox and nothing is\n"
                      "published; it may run while the service runs (a serial port the\n"
                      "service holds is reported, not waited for)."),
        epilog=_(EXAMPLES) + _(EXIT_HELP), formatter_class=argparse.RawDescriptionHelpFormatter)
    poll.add_argument("config", type=Path, help=_("station YAML file"))
    poll.add_argument("--device", action="append", metavar="ID",
                      help=_("poll only this device (repeat for several)"))
    poll.add_argument("--raw", action="store_true",
                      help=_("also show the register words (hex and decimal) or the text "
                             "fields each value was decoded from"))
