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
from edge_agent.config.uplink_kinds import UPLINK_KINDS
from edge_agent.i18n import LANGUAGES, _, choose, ngettext, use
from edge_agent.provenance import version_line
from edge_agent.stopsignals import install_reload_signal, install_stop_signals
from edge_agent.toolbox import TOOL_COMMANDS, load

EXIT_CONFIG = 2
RUNTIME_COMMANDS = ("run", "check")  # the commands that load no tool


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
                         help=_("show the version and the commit it was built from, and exit"))

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(version_line())
        parser.exit()


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line for ``command`` (the first word after the options): a tool
    command's parser comes from its tool, loaded by name (edge_agent/toolbox.py) when it is
    that command, or when every command may be shown (help, none, an unknown one); ``run``
    and ``check`` load no tool."""
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description=_("Poll field analyzers over Modbus, keep every sample in a local outbox, "
                      "forward it over MQTT."))
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--lang", choices=sorted(LANGUAGES),
                        help=_("language of the messages for the technician: zh (Simplified "
                               "Chinese) or en; default from LANGUAGE, LC_ALL, LC_MESSAGES or "
                               "LANG (zh_CN.UTF-8: Chinese), else English; allowed anywhere on "
                               "the line (docs/i18n.md)"))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help=_("run the agent with a station file until stopped"))
    run.add_argument("config", type=Path, help=_("station YAML file"))
    run.add_argument("--record", type=Path, metavar="FOLDER",
                     help=_("record every frame sent and received on every link into "
                            "FOLDER/LINK.capture.jsonl (continued if it exists), for a bug "
                            "report or a test fixture; see docs/capture-replay.md"))
    check = sub.add_parser("check", help=_("validate a station file and list every problem"))
    check.add_argument("config", type=Path, help=_("station YAML file"))
    for name, tool in TOOL_COMMANDS.items():
        if command == name or command not in (*TOOL_COMMANDS, *RUNTIME_COMMANDS):
            load(tool.add_parser)(sub)
    return parser


def _command_word(argv: list[str]) -> str | None:
    """The command ``argv`` asks for (the first word that is not an option or the value
    of ``--log-level``); None when help comes first or there is no command."""
    words = iter(argv)
    for word in words:
        if word == "--":
            return next(words, None)
        if word == "-h" or (len(word) > 2 and "--help".startswith(word)):
            return None
        if len(word) > 2 and "--log-level".startswith(word):
            next(words, None)  # its value
        elif not word.startswith("-"):
            return word
    return None


def _load(path: Path) -> LoadedConfig | None:
    try:
        return load_station(path)
    except ConfigError as err:
        count = len(err.issues)
        print(str(err), file=sys.stderr)
        print(ngettext("{path}: {count} problem found; nothing was started",
                       "{path}: {count} problems found; nothing was started", count).format(
                           path=path, count=count), file=sys.stderr)
        return None


def cmd_check(path: Path) -> int:
    loaded = _load(path)
    if loaded is None:
        return EXIT_CONFIG
    for warning in loaded.warnings:  # risky but valid: said, never refused
        print(_("warning: {warning}").format(warning=warning), file=sys.stderr)
    print(ok_line(path, loaded.config))
    for line in uplink_lines(loaded.config):
        print(line)
    return 0


def ok_line(path: Path, config: StationConfig) -> str:
    """``check``'s last line for a valid file: the station, its devices and links."""
    devices, links = len(config.devices), len(config.links)
    counted = _("{devices} on {links}").format(
        devices=ngettext("{count} device", "{count} devices", devices).format(count=devices),
        links=ngettext("{count} link", "{count} links", links).format(count=links))
    return _("OK: {path}: station {station}, {counted}").format(
        path=path, station=config.station_id, counted=counted)


def uplink_lines(config: StationConfig) -> list[str]:
    """What ``check`` prints after the OK line when the file names uplinks (uplinks:):
    one line per uplink, the default one first, with its kind, broker address(es) and
    devices, so the technician sees where each device's data goes. A file with only
    ``mqtt:`` gets none: its one uplink is the one it always had."""
    if not config.uplinks:
        return []
    lines = []
    for uplink in config.every_uplink():
        settings = getattr(uplink, UPLINK_KINDS[uplink.kind].field, None)
        addresses = ", ".join(str(address) for address in getattr(settings, "addresses", ()))
        devices = _("every device") if uplink.devices is None else \
            _("devices {ids}").format(ids=", ".join(uplink.devices))
        if uplink.hj212 is not None:  # which standard and station the platform sees
            addresses += _(" (HJ 212-{version}, MN {mn}, {count} codes)").format(
                version=uplink.hj212.version, mn=uplink.hj212.mn,
                count=len(uplink.hj212.channels))
        if uplink.sparkplug is not None:  # who the station is to the SCADA hosts
            node = uplink.sparkplug
            addresses += (_(" (Sparkplug group {group}, edge node {node}, primary host {host})")
                          if node.primary_host_id else
                          _(" (Sparkplug group {group}, edge node {node})")).format(
                group=node.group_id, node=node.edge_node_id, host=node.primary_host_id)
        lines.append(_("  uplink {name} ({kind}): {addresses}; {devices}").format(
            name=uplink.name, kind=uplink.kind, addresses=addresses, devices=devices))
    return lines


def cmd_run(path: Path, record: Path | None = None) -> int:
    # systemd's watchdog ends a hung agent with SIGABRT: every thread's stack goes to
    # the journal first, so the restart leaves a trace of where it hung.
    faulthandler.enable()
    stop = install_stop_signals()
    reload = install_reload_signal()
    loaded = _load(path)
    if loaded is None:
        return EXIT_CONFIG
    # Imported after the load, not before: the YAML load's transient objects (several
    # MiB for a large station) are freed by now, and the agent's modules fill that space
    # instead of new memory (about 1.4 MiB less RSS at W1, docs/performance.md, Memory).
    from edge_agent.agent import Agent, run_until_signalled
    from edge_agent.store.lock import OutboxInUse
    from edge_agent.store.outbox import OutboxError
    from edge_agent.store.pathcheck import StorePathRefused
    from edge_agent.store.schema import ForeignDatabase, SchemaError

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
        print(_("{path}: cannot open the outbox: {error}").format(
            path=config.store.path, error=err), file=sys.stderr)
        return EXIT_CONFIG
    except (SchemaError, OutboxError, OSError) as err:
        print(_("{path}: cannot open the outbox: {error}").format(
            path=config.store.path, error=err), file=sys.stderr)
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


def take_lang(argv: list[str]) -> tuple[str | None, list[str]]:
    """``--lang zh`` (or ``--lang=zh``) taken out of ``argv`` wherever it stands before a
    ``--``, so it works on every command, a tool's included; the rest of ``argv``."""
    rest: list[str] = []
    lang: str | None = None
    words = iter(argv)
    for word in words:
        if word == "--":
            rest += [word, *words]
            break
        if word == "--lang":
            lang = next(words, "")
        elif word.startswith("--lang="):
            lang = word.split("=", 1)[1]
        else:
            rest.append(word)
            continue
        if lang not in LANGUAGES:
            rest += ["--lang", lang]  # the parser says what is allowed
    return lang, rest


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    lang, argv = take_lang(argv)
    use(choose(lang if lang in LANGUAGES else None, os.environ))
    args = _parser(_command_word(argv)).parse_args(argv)
    _setup_logging(args.log_level)
    try:
        if args.command == "check":
            return cmd_check(args.config)
        if args.command == "run":
            return cmd_run(args.config, args.record)
        return load(TOOL_COMMANDS[args.command].run)(args)
    except BrokenPipeError:
        return _reader_went_away()


EXIT_READER_GONE = 141  # what a shell reports for a command ended by SIGPIPE (128 + 13)


def _reader_went_away() -> int:
    """The output's reader closed it (``edge-agent status | head``): stop quietly, as
    ``cat`` does, instead of printing a traceback at a technician. Standard output is
    pointed at /dev/null first, so the interpreter's last flush cannot fail again."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_READER_GONE
