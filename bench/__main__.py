"""``python -m bench``: the issue-11 workloads (bench/runner.py, docs/performance.md), or
one of the scaling benches named first (docs/scaling.md):

    python -m bench station-output [--short|--tiny]   what one station sends
    python -m bench broker-intake [--short|--tiny]    what a broker / cluster takes in
    python -m bench alarm-latency [--short|--tiny]    poll to alarm at broker and coil
"""

import sys

SUBCOMMANDS = {"station-output": "bench.station_output", "broker-intake": "bench.broker_intake",
               "alarm-latency": "bench.alarm_latency"}


def _main() -> None:
    if sys.argv[1:2] and sys.argv[1] in SUBCOMMANDS:
        from importlib import import_module

        import_module(SUBCOMMANDS[sys.argv[1]]).main(sys.argv[2:])
    else:
        from bench.runner import main

        main()


if __name__ == "__main__":
    _main()
