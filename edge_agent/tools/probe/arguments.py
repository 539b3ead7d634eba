"""The ``probe`` command line: its sub-commands, options, help text and exit statuses.

Each option is parsed into a typed value here (argparse ``type=``), so a mistyped port,
table or manual number is a usage error (exit status 2) before any port is opened.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent_drivers.modbus.settings import RegisterKind

from edge_agent.i18n import N_, _
from edge_agent.tools.probe.interpret import parse_manual_number
from edge_agent.tools.probe.options import (
    PROTOCOLS,
    parse_parity,
    parse_table,
    parse_target,
    parse_units,
)

EXIT_USAGE = 2
EXIT_LINK = 4
EXIT_NO_ANSWER = 5
EXIT_EXCEPTION = 6
EXIT_BAD_ANSWER = 7
EXIT_INTERRUPTED = 130
EXIT_HELP = N_("""\
exit status:
  0  the device answered (scan: at least one unit answered)
  2  invalid command line
  4  cannot use the link: serial port missing, busy or not permitted; host refusing the
     connection or unreachable
  5  no answer within the timeout (scan: no unit answered)
  6  the device answered with a Modbus exception (e.g. 02 illegal data address)
  7  the answer does not fit the request (garbled: wrong baud rate or parity?)
  130  interrupted (Ctrl-C)
""")


def add_probe_parser(sub: Any) -> None:
    """Add ``probe`` (with ``read`` and ``scan``) to the top-level sub-command parsers."""
    probe = sub.add_parser(
        "probe", help=_("read registers or scan a bus from the command line (commissioning)"),
        description=_("Talk to one device without a station file: read a register range\n"
                      "and show every interpretation (read), or find the unit ids on a bus\n"
                      "(scan). Stop the edge-agent service first if it uses the same port."),
        epilog=_(EXIT_HELP), formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = probe.add_subparsers(dest="probe_command", required=True, metavar="ACTION")
    link = _link_options()
    read = actions.add_parser(
        "read", parents=[link], help=_("read registers and show every interpretation"),
        description=_("Read a register range and print it as every type and word order,\n"
                      "to find the one that matches the instrument's display (--find)."),
        epilog=_(READ_EXAMPLES) + _(EXIT_HELP),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _read_options(read)
    scan = actions.add_parser(
        "scan", parents=[link], help=_("find the unit ids that answer on a bus or gateway"),
        description=_("Ask each unit id for one register; any answer, even a Modbus\n"
                      "exception, means a device is there (but a gateway's 0A/0B does not)."),
        epilog=_(SCAN_EXAMPLES) + _(EXIT_HELP),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _scan_options(scan)


READ_EXAMPLES = N_("""\
examples:
  edge-agent probe read 192.168.10.21 --ref 40001 --count 20 --find 12.5
  edge-agent probe read /dev/ttyUSB0 --baud 19200 --parity E --unit 3 --table input
  edge-agent probe read 192.168.10.30:4001 --protocol modbus-rtu-over-tcp --unit 2
  edge-agent probe read /dev/ttyUSB0 --unit 3 --count 6 --record h2s.capture.jsonl

""")
SCAN_EXAMPLES = N_("""\
examples:
  edge-agent probe scan /dev/ttyUSB0 --baud 9600
  edge-agent probe scan 192.168.10.30 --units 1-32 --timeout-ms 500

""")


def _typed(parse: Callable[..., Any], name: str) -> Callable[[str], Any]:
    """argparse shows a ValueError's text only when it is an ArgumentTypeError."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = name
    return convert


def _link_options() -> argparse.ArgumentParser:
    link = argparse.ArgumentParser(add_help=False)
    link.add_argument("target", type=_typed(parse_target, "target"), metavar="PORT_OR_HOST",
                      help=_("serial port (/dev/ttyUSB0) or network address (host or host:port, "
                             "port 502 by default)"))
    link.add_argument("--protocol", choices=list(PROTOCOLS), metavar="PROTOCOL",
                      help=_("modbus-tcp (default for a network address), modbus-rtu "
                             "(default for a serial port), modbus-rtu-over-tcp (serial-to-"
                             "Ethernet gateways in transparent mode) or modbus-ascii"))
    link.add_argument("--baud", type=int, default=9600, help=_("serial: baud rate (9600)"))
    link.add_argument("--parity", type=_typed(parse_parity, "parity"), default="N",
                      help=_("serial: N, E or O (N)"))
    link.add_argument("--stopbits", type=int, choices=[1, 2], default=1,
                      help=_("serial: stop bits (1)"))
    link.add_argument("--bytesize", type=int, choices=[7, 8], default=8,
                      help=_("serial: data bits (8; 7 for some Modbus ASCII devices)"))
    link.add_argument("--timeout-ms", type=int, default=None,
                      help=_("how long to wait for each answer (read: 1000, scan: 200)"))
    link.add_argument("--format", choices=["table", "json"], default="table",
                      help=_("table for people (default), json for scripts"))
    link.add_argument("--record", type=Path, metavar="FILE",
                      help=_("also record every frame sent and received into this capture "
                             "file (a new one, or one an earlier probe of the same protocol "
                             "recorded, continued); see docs/capture-replay.md"))
    return link


def _read_options(read: argparse.ArgumentParser) -> None:
    read.add_argument("-u", "--unit", type=int, default=1, help=_("unit id (slave id), 1"))
    where = read.add_mutually_exclusive_group()
    where.add_argument("-a", "--address", type=int, default=None,
                       help=_("first register as sent on the wire, 0-based (default 0)"))
    where.add_argument("-r", "--ref", type=_typed(parse_manual_number, "ref"),
                       help=_("first register as the manual numbers it: 40001 or 400001 "
                              "(holding), 30001 (input), 10001 (discrete), 00001 (coil)"))
    read.add_argument("-t", "--table", type=_typed(parse_table, "table"), default=None,
                      help=_("holding (3, default), input (4), coil (1) or discrete (2)"))
    read.add_argument("-n", "--count", type=int, default=10,
                      help=_("how many registers or bits (10; at most 2000)"))
    read.add_argument("--find", metavar="VALUE",
                      help=_("the value the instrument's display shows: list the readings "
                             "near it, and the shipped profile a reading looks like"))
    read.add_argument("--tables", action="store_true",
                      help=_("with --find: also print every interpretation, the matches "
                             "marked '*'"))
    read.add_argument("--tolerance", metavar="T",
                      help=_("how near: an amount (0.1) or a percentage (2%%); default half "
                             "a step of VALUE's last digit (12.5 -> 0.05)"))


def _scan_options(scan: argparse.ArgumentParser) -> None:
    scan.add_argument("--units", type=_typed(parse_units, "units"), default=None,
                      help=_("unit ids to try: 1-247 (default), or e.g. 1-10,20"))
    scan.add_argument("-t", "--table", type=_typed(parse_table, "table"),
                      default=RegisterKind.HOLDING,
                      help=_("table to ask (holding by default; a device without it still "
                             "answers, with an exception)"))
    scan.add_argument("-a", "--address", type=int, default=0,
                      help=_("0-based address to ask for (0)"))


