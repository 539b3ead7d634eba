"""The ``sparkplug-host`` command line: its options, help text and exit statuses."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EXIT_STOPPED = 0
EXIT_NO_BROKER = 1
EXIT_USAGE = 2
EXIT_HELP = """\
exit status:
  0  stopped by Ctrl-C or SIGTERM (the offline STATE was published)
  1  the broker could not be reached or refused the host
  2  a wrong argument (a --rebirth that is not GROUP/EDGE_NODE, a bad host id,
     a --password-file that cannot be read)
"""
EXAMPLES = """\
examples:
  edge-agent sparkplug-host --broker 127.0.0.1 --port 1883 --host-id scada-1
  edge-agent sparkplug-host --port 1883 --rebirth plant/cp-east-03 --jsonl seen.jsonl

"""


def add_sparkplughost_parser(sub: Any) -> None:
    """Add ``sparkplug-host`` to the top-level sub-command parsers."""
    host = sub.add_parser(
        "sparkplug-host", help="a Sparkplug B primary host to try an edge node against: "
                               "prints births, data and deaths",
        description="Connect to an MQTT broker as a Sparkplug B 3.0 primary host\n"
                    "application: publish its STATE (online, retained, with an offline\n"
                    "will), subscribe to spBv1.0/#, and print every birth, data and death\n"
                    "message, one line per metric, with the rule breaks it sees (seq gaps,\n"
                    "data before a birth, an NDEATH of another connection). Runs until\n"
                    "Ctrl-C or SIGTERM. docs/sparkplug.md shows what it prints.",
        epilog=EXAMPLES + EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    host.add_argument("--broker", default="127.0.0.1", metavar="HOST",
                      help="the broker's address (default 127.0.0.1)")
    host.add_argument("--port", type=int, default=1883, help="the broker's port (default 1883)")
    host.add_argument("--host-id", default="edge-agent-host",
                      help="the Sparkplug host id: STATE goes to spBv1.0/STATE/HOST_ID "
                           "(default edge-agent-host)")
    host.add_argument("--username", help="MQTT user name")
    host.add_argument("--password-file", type=Path, metavar="FILE",
                      help="a file holding the MQTT password (never on the command line)")
    host.add_argument("--rebirth", action="append", default=[], metavar="GROUP/EDGE_NODE",
                      help="once connected, send this edge node an NCMD "
                           "'Node Control/Rebirth' (repeat for several)")
    host.add_argument("--jsonl", type=Path, metavar="FILE",
                      help="also write every event as one JSON object per line to FILE")
    host.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                      help="how long to wait for the broker (default 10)")

