"""Command line: ``edge-agent run|check|status|export|demo|probe|capture|replay|simulate``.

Exit status: 0 success, 2 invalid configuration (for ``run`` also: its outbox is in use
by another agent, or ``store.path`` names a file that is not an outbox; a restart cannot
help, so the unit does not restart on 2), 3 missing prerequisite (e.g. no Mosquitto for
the demo), 1 anything else. ``probe`` adds its own (4-7, 130), listed by
``edge-agent probe --help``; ``capture``, ``replay`` and ``simulate`` theirs (4, 8)
likewise.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import LoadedConfig, load_station
from edge_agent.config.schema import StationConfig
from edge_agent.provenance import version_line
from edge_agent.tools.capture.arguments import (
    add_capture_parser,
    add_replay_parser,
    add_simulate_parser,
)
from edge_agent.tools.ops.arguments import add_export_parser, add_status_parser
from edge_agent.tools.probe.arguments import add_probe_parser

EXIT_CONFIG = 2
EXIT_PREREQUISITE = 3


def _setup_logging(level: str) -> None:
    """journald adds its own timestamps; a terminal gets them from us."""
    under_systemd = "JOURNAL_STREAM" in os.environ or "INVOCATION_ID" in os.environ
    fmt = "%(levelname)s %(name)s: %(message)s" if under_systemd \
        else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=getattr(logging, level.upper()), format=fmt, stream=sys.stderr)


class _VersionAction(argparse.Action):
    """``--version``: the version and the commit built from (edge_agent/provenance.py),
    looked up only when asked: in a checkout that runs git."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the version and the commit it was built from, and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(version_line())
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="Poll field analyzers over Modbus, keep every sample in a local outbox, "
                    "forward it over MQTT.")
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the agent with a station file until stopped")
    run.add_argument("config", type=Path, help="station YAML file")
    run.add_argument("--record", type=Path, metavar="FOLDER",
                     help="record every frame sent and received on every link into "
                          "FOLDER/LINK.capture.jsonl (continued if it exists), for a bug "
                          "report or a test fixture; see docs/capture-replay.md")
    check = sub.add_parser("check", help="validate a station file and list every problem")
    check.add_argument("config", type=Path, help="station YAML file")
    demo = sub.add_parser("demo", help="run a simulated station with a private broker")
    demo.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                      help="stop after this many seconds (default: until Ctrl-C)")
    demo.add_argument("--workdir", type=Path, default=None,
                      help="where to keep the demo's files (default: a new temp folder)")
    add_status_parser(sub)
    add_export_parser(sub)
    add_probe_parser(sub)
    add_capture_parser(sub)
    add_replay_parser(sub)
    add_simulate_parser(sub)
    return parser


def _load(path: Path) -> LoadedConfig | None:
    try:
        return load_station(path)
    except ConfigError as err:
        count = len(err.issues)
        print(str(err), file=sys.stderr)
        print(f"{path}: {count} problem{'s' if count != 1 else ''} found; "
              "nothing was started", file=sys.stderr)
        return None


def cmd_check(path: Path) -> int:
    loaded = _load(path)
    if loaded is None:
        return EXIT_CONFIG
    for warning in loaded.warnings:  # risky but valid: said, never refused
        print(f"warning: {warning}", file=sys.stderr)
    config = loaded.config
    devices, links = len(config.devices), len(config.links)
    print(f"OK: {path}: station {config.station_id}, {devices} device{'s' * (devices != 1)} "
          f"on {links} link{'s' * (links != 1)}")
    return 0


def cmd_run(path: Path, record: Path | None = None) -> int:
    from edge_agent.agent import (
        Agent,
        install_reload_signal,
        install_stop_signals,
        run_until_signalled,
    )
    from edge_agent.store.lock import OutboxInUse
    from edge_agent.store.outbox import OutboxError
    from edge_agent.store.pathcheck import StorePathRefused
    from edge_agent.store.schema import ForeignDatabase, SchemaError

    # systemd's watchdog ends a hung agent with SIGABRT: every thread's stack goes to
    # the journal first, so the restart leaves a trace of where it hung.
    faulthandler.enable()
    stop = install_stop_signals()
    reload = install_reload_signal()
    loaded = _load(path)
    if loaded is None:
        return EXIT_CONFIG
    _log_warnings(loaded)
    config = loaded.config

    def reload_config(source: Path) -> StationConfig:
        again = load_station(source)
        _log_warnings(again)
        return again.config if record is None else _recording_every_link(again.config, record)

    if record is not None:
        config = _recording_every_link(config, record)
    try:
        agent = Agent(config, reload_config)
    except (OutboxInUse, StorePathRefused, ForeignDatabase) as err:
        print(f"{config.store.path}: cannot open the outbox: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except (SchemaError, OutboxError, OSError) as err:
        print(f"{config.store.path}: cannot open the outbox: {err}", file=sys.stderr)
        return 1
    return run_until_signalled(agent, stop, reload)


def _log_warnings(loaded: LoadedConfig) -> None:
    for warning in loaded.warnings:
        logging.getLogger("edge_agent.config").warning("%s", warning)


def _recording_every_link(config: StationConfig, folder: Path) -> StationConfig:
    """``run --record FOLDER``: each link records into FOLDER/LINK.capture.jsonl, in place
    of its own ``record:`` setting. A folder that cannot be made is reported by the
    recorders, once per link; polling goes on."""
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
    links = {name: replace(link, record=folder / f"{name}.capture.jsonl")
             for name, link in config.links.items()}
    return replace(config, links=links)


def cmd_demo(duration_s: float | None, workdir: Path | None) -> int:
    from edge_agent.tools.demo.station import run_demo
    from edge_agent.tools.sim.broker import BrokerNotFound

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
        return cmd_run(args.config, args.record)
    if args.command == "status":
        from edge_agent.tools.ops.status import run_status

        return run_status(args)
    if args.command == "export":
        from edge_agent.tools.ops.export import run_export

        return run_export(args)
    if args.command in ("capture", "replay"):
        from edge_agent.tools.capture.commands import run_capture, run_replay

        return run_capture(args) if args.command == "capture" else run_replay(args)
    if args.command == "simulate":
        from edge_agent.tools.sim.simulate import run_simulate

        return run_simulate(args)
    if args.command == "probe":
        from edge_agent.tools.probe.command import run_probe

        return run_probe(args)
    return cmd_demo(args.duration, args.workdir)
