"""The command line of ``edge-agent demo``: its options, and its exit statuses (3: no
Mosquitto to start). What the demo does is loaded when it runs: ``station.py``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edge_agent.i18n import _

EXIT_PREREQUISITE = 3  # a missing prerequisite, e.g. no Mosquitto for the private broker
MAX_DEMO_UPLINKS = 8  # as many platforms as a station feeds in the field ("一点多发")


def add_demo_parser(sub: Any) -> None:
    """``demo [--duration SECONDS] [--workdir FOLDER] [--uplinks N | --hj212 | --sparkplug]``."""
    demo = sub.add_parser("demo", help=_("run a simulated station with a private broker"))
    demo.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                      help=_("stop after this many seconds (default: until Ctrl-C)"))
    demo.add_argument("--workdir", type=Path, default=None,
                      help=_("where to keep the demo's files (default: a new temp folder)"))
    demo.add_argument("--sparkplug", action="store_true",
                      help=_("add a Sparkplug B uplink to a second broker, with "
                             "edge-agent sparkplug-host as its primary host"))
    demo.add_argument("--uplinks", type=int, default=1, choices=range(1, MAX_DEMO_UPLINKS + 1),
                      metavar="N",
                      help=_("feed N private brokers, 1 to {most}: the mqtt: section's and "
                             "N-1 more under uplinks: (default: 1)").format(
                                 most=MAX_DEMO_UPLINKS))
    demo.add_argument("--hj212", action="store_true",
                      help=_("run the VOC station of docs/hj212.md feeding two HJ 212 "
                             "platform simulators (2025 and 2017) and the broker"))


def run_demo_command(args: argparse.Namespace) -> int:
    """Run the demo until ``--duration`` ends or Ctrl-C; 3 when Mosquitto is missing."""
    from edge_agent.tools.demo.station import run_demo
    from edge_agent.tools.sim.broker import BrokerNotFound

    if args.hj212 and args.sparkplug:
        print(_("edge-agent demo: --hj212 and --sparkplug are two different demos; choose one"),
              file=sys.stderr)
        return 2
    if args.hj212 and args.uplinks != 1:
        print(_("edge-agent demo: --hj212 runs its own station; leave out --uplinks"),
              file=sys.stderr)
        return 2
    if args.sparkplug and args.uplinks != 1:
        print(_("edge-agent demo: --sparkplug runs its own two brokers; leave out --uplinks"),
              file=sys.stderr)
        return 2
    try:
        if args.hj212:
            from edge_agent.tools.demo.hj212 import run_hj212_demo

            return run_hj212_demo(args.duration, args.workdir, sys.stdout)
        if args.sparkplug:
            from edge_agent.tools.demo.sparkplug import run_sparkplug_demo

            return run_sparkplug_demo(args.duration, args.workdir, sys.stdout)
        return run_demo(args.duration, args.workdir, sys.stdout, args.uplinks)
    except BrokerNotFound as err:
        print(_("edge-agent demo: {problem}").format(problem=err), file=sys.stderr)
        return EXIT_PREREQUISITE
