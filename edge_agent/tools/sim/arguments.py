"""The command line of ``edge-agent simulate``: its options, help and exit statuses, and
nothing else; what the command does is loaded when it runs (``simulate.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edge_agent.tools.capture.arguments import parse_speed

SIMULATE_EXAMPLES = """\
examples:
  edge-agent simulate config/simulate.example.yaml
  edge-agent simulate my-station-sim.yaml --speed 60     # an hour of analyses a minute
  edge-agent simulate my-station-sim.yaml --check

exit status:
  0  stopped with Ctrl-C (or SIGTERM); --check: the file is valid
  2  invalid command line, or the file has problems (each listed with its line)
  4  cannot listen on an address, or open a serial port

"""


def add_simulate_parser(sub: Any) -> None:
    """``simulate``: simulated instruments of the shipped profiles, from a YAML file."""
    simulate = sub.add_parser(
        "simulate", help="serve simulated instruments (GC, FTIR, gas detectors) from a file",
        description="Serve simulated instruments of the shipped profiles (generic-gc,\n"
                    "daniel-enron-gc, generic-ftir, generic-gas-detector) over Modbus TCP\n"
                    "or on serial ports, many in one process: GC analysis cycles with\n"
                    "counters or new-result flags and streams, FTIR measurements, detectors\n"
                    "warming up, drifting, with sensor faults; values from a base, a ramp\n"
                    "and noise. The file is described in docs/simulate.md.",
        epilog=SIMULATE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    simulate.add_argument("config", type=Path, help="simulation YAML file")
    simulate.add_argument("--speed", type=parse_speed, default=1.0, metavar="X",
                          help="how fast simulated time runs (default 1: real time; 60: "
                               "an hour in a minute); cycles, ramps and faults follow it")
    simulate.add_argument("--check", action="store_true",
                          help="only check the file and list every problem")
