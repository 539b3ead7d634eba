"""Command line: ``edge-agent run|check|demo|probe|capture|replay``.

Exit status: 0 success, 2 invalid configuration, 3 missing prerequisite (e.g. no
Mosquitto for the demo), 1 anything else. ``probe`` adds its own (4-7, 130), listed by
``edge-agent probe --help``; ``capture`` and ``replay`` theirs (4, 8) likewise.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from edge_agent import __version__
from edge_agent.capture_cli import add_capture_parser, add_replay_parser
from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config
from edge_agent.config.schema import StationConfig
from edge_agent.probe.arguments import add_probe_parser

EXIT_CONFIG = 2
EXIT_PREREQUISITE = 3


def _setup_logging(level: str) -> None:
    """journald adds its own timestamps; a terminal gets them from us."""
    under_systemd = "JOURNAL_STREAM" in os.environ or "INVOCATION_ID" in os.environ
    fmt = "%(levelname)s %(name)s: %(message)s" if under_systemd \
        else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=getattr(logging, level.upper()), format=fmt, stream=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="Poll field analyzers over Modbus, keep every sample in a local outbox, "
                    "forward it over MQTT.")
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the agent with a station file until stopped")
    run.add_argument("config", type=Path, help="station YAML file")
    check = sub.add_parser("check", help="validate a station file and list every problem")
    check.add_argument("config", type=Path, help="station YAML file")
    demo = sub.add_parser("demo", help="run a simulated station with a private broker")
    demo.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                      help="stop after this many seconds (default: until Ctrl-C)")
    demo.add_argument("--workdir", type=Path, default=None,
                      help="where to keep the demo's files (default: a new temp folder)")
    add_probe_parser(sub)
    add_capture_parser(sub)
    add_replay_parser(sub)
    return parser


def _load(path: Path) -> StationConfig | None:
    try:
        return load_config(path)
    except ConfigError as err:
        count = len(err.issues)
        print(str(err), file=sys.stderr)
        print(f"{path}: {count} problem{'s' if count != 1 else ''} found; "
              "nothing was started", file=sys.stderr)
        return None


def cmd_check(path: Path) -> int:
    config = _load(path)
    if config is None:
        return EXIT_CONFIG
    devices, links = len(config.devices), len(config.links)
    print(f"OK: {path}: station {config.station_id}, {devices} device{'s' * (devices != 1)} "
          f"on {links} link{'s' * (links != 1)}")
    return 0


def cmd_run(path: Path) -> int:
    from edge_agent.agent import Agent, install_stop_signals, run_until_signalled
    from edge_agent.store.outbox import OutboxError
    from edge_agent.store.schema import SchemaError

    stop = install_stop_signals()
    config = _load(path)
    if config is None:
        return EXIT_CONFIG
    try:
        agent = Agent(config)
    except (SchemaError, OutboxError, OSError) as err:
        print(f"{config.store.path}: cannot open the outbox: {err}", file=sys.stderr)
        return 1
    return run_until_signalled(agent, stop)


def cmd_demo(duration_s: float | None, workdir: Path | None) -> int:
    from edge_agent.demo import run_demo
    from edge_agent.sim.broker import BrokerNotFound

    try:
        return run_demo(duration_s, workdir, sys.stdout)
    except BrokerNotFound as err:
        print(f"edge-agent demo: {err}", file=sys.stderr)
        return EXIT_PREREQUISITE


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.log_level)
    if args.command == "check":
        return cmd_check(args.config)
    if args.command == "run":
        return cmd_run(args.config)
    if args.command in ("capture", "replay"):
        from edge_agent.capture.commands import run_capture, run_replay

        return run_capture(args) if args.command == "capture" else run_replay(args)
    if args.command == "probe":
        from edge_agent.probe.command import run_probe

        return run_probe(args)
    return cmd_demo(args.duration, args.workdir)
