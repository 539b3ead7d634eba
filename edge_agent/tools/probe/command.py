"""``edge-agent probe read|scan``: the command line wired to a link client and the output.

All I/O goes through ``ModbusLinkClient``, the same client the agent polls with, so what
the probe reads is what the agent will read with the same link settings. Failures end
the command with one line on standard error and an exit status per kind of failure.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, replace
from typing import TextIO

from edge_agent_drivers.modbus.protocol.transport import (
    MAX_BITS,
    MAX_REGISTERS,
    ModbusExceptionReply,
    ModbusLinkClient,
)
from edge_agent_drivers.modbus.settings import RegisterKind

from edge_agent.config.schema import Link, SerialLink
from edge_agent.link import BadResponse, DeviceTimeout, LinkDown, LinkError
from edge_agent.tools.probe import render
from edge_agent.tools.probe.arguments import (
    EXIT_BAD_ANSWER,
    EXIT_EXCEPTION,
    EXIT_INTERRUPTED,
    EXIT_LINK,
    EXIT_NO_ANSWER,
    EXIT_USAGE,
)
from edge_agent.tools.probe.diagnose import link_problem
from edge_agent.tools.probe.interpret import Match, find, interpret, manual_number
from edge_agent.tools.probe.options import (
    SerialSettings,
    Target,
    build_link,
    default_tolerance,
    describe_link,
    parse_tolerance,
    parse_value,
)
from edge_agent.tools.probe.profiles import profile_hints, shipped_channels
from edge_agent.tools.probe.scan import Answer, LinkUnusable, ScanReport, ask_unit

MAX_COUNT = 2000  # per probe; read in as many requests as the Modbus limits need


class UsageError(ValueError):
    """A command line that cannot work; reported like argparse does, exit status 2."""


def run_probe(args: argparse.Namespace) -> int:
    """Run ``probe read`` or ``probe scan``; returns the exit status."""
    command = cmd_read if args.probe_command == "read" else cmd_scan
    try:
        return command(args)
    except UsageError as err:
        print(f"edge-agent probe {args.probe_command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C while waiting for a slow device: no traceback
        print("edge-agent probe: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


# -- read ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadPlan:
    """A validated read: where, what, and the display value to look for."""

    link: Link
    unit_id: int
    kind: RegisterKind
    start: int
    count: int
    find: render.FindSpec | None
    tables: bool = True  # with find: every interpretation too (--tables), not only matches


def read_plan(args: argparse.Namespace) -> ReadPlan:
    """Check the options together (argparse checks them one by one)."""
    link = _link(args, default_timeout_ms=1000)
    _check_unit(args.unit, link)
    kind, start = args.ref if args.ref is not None else (
        args.table or RegisterKind.HOLDING, args.address or 0)
    if args.ref is not None and args.table is not None and args.table is not kind:
        raise UsageError(f"--ref {manual_number(kind, start)} is a {kind.value} number; "
                         f"it contradicts --table {args.table.value}")
    if not 1 <= args.count <= MAX_COUNT or not 0 <= start <= 65535 - args.count + 1:
        raise UsageError(f"--count must be 1..{MAX_COUNT} and the range must end at or "
                         "below wire address 65535")
    if args.tables and args.find is None:
        raise UsageError("--tables only makes sense with --find VALUE (without it, every "
                         "table is printed anyway)")
    return ReadPlan(link, args.unit, kind, start, args.count, _find_spec(args, kind),
                    tables=args.find is None or args.tables)


def _find_spec(args: argparse.Namespace, kind: RegisterKind) -> render.FindSpec | None:
    if args.find is None:
        if args.tolerance is not None:
            raise UsageError("--tolerance only makes sense with --find VALUE")
        return None
    if kind.is_bit:
        raise UsageError("--find looks for a number in registers; coils and discrete "
                         "inputs hold single bits")
    try:
        tolerance = (default_tolerance(args.find) if args.tolerance is None
                     else parse_tolerance(args.tolerance, args.find))
        return render.FindSpec(args.find, parse_value(args.find), tolerance)
    except ValueError as err:
        raise UsageError(str(err)) from None


def cmd_read(args: argparse.Namespace) -> int:
    plan = read_plan(args)
    client = _client(plan.link)
    try:
        values = _read_range(client, plan)
    except LinkError as err:
        message, status = explain_failure(err, plan)
        print(f"edge-agent probe: {message}", file=sys.stderr)
        return status
    finally:
        _close(client)
    print(_render_read(plan, values, args.format))
    return 0


def _read_range(client: ModbusLinkClient, plan: ReadPlan) -> list[int] | list[bool]:
    """Read in as many requests as the Modbus limits need."""
    if plan.kind.is_bit:
        bits: list[bool] = []
        for offset in range(0, plan.count, MAX_BITS):
            size = min(MAX_BITS, plan.count - offset)
            bits += client.read_bits(plan.unit_id, plan.kind, plan.start + offset, size)
        return bits
    words: list[int] = []
    for offset in range(0, plan.count, MAX_REGISTERS):
        size = min(MAX_REGISTERS, plan.count - offset)
        words += client.read_registers(plan.unit_id, plan.kind, plan.start + offset, size)
    return words


def _render_read(plan: ReadPlan, values: list[int] | list[bool], output: str) -> str:
    source = render.ReadSource(describe_link(plan.link), plan.unit_id, plan.kind, plan.start,
                               plan.count)
    if plan.kind.is_bit:
        bits = [bool(value) for value in values]
        return render.bits_json(source, bits) if output == "json" \
            else render.bits_table(source, bits)
    views = interpret(plan.start, [int(value) for value in values])
    matches = find(views, plan.find.value, plan.find.tolerance) if plan.find else []
    if output == "json":
        return render.registers_json(source, views, plan.find, matches)
    return render.registers_table(source, views, plan.find, matches, _use_color(sys.stdout),
                                  tables=plan.tables, hints=_profile_hints(plan.kind, matches))


def _profile_hints(kind: RegisterKind, matches: list[Match]) -> render.Hints | None:
    """Which shipped profile each match looks like; the profiles are read only when
    something matched."""
    if not matches:
        return None
    channels = shipped_channels()
    return lambda match: profile_hints(kind, match, channels)


def explain_failure(err: LinkError, plan: ReadPlan) -> tuple[str, int]:
    """One line saying what failed and what to check, and the exit status for it."""
    where = describe_link(plan.link)
    last = plan.start + plan.count - 1
    what = (f"{plan.kind.value} {manual_number(plan.kind, plan.start)}-"
            f"{manual_number(plan.kind, last)} (wire {plan.start}-{last})")
    if isinstance(err, ModbusExceptionReply):
        return (f"unit {plan.unit_id} at {where} answered the read of {what} with exception "
                f"{render.exception_name(err.code)}{_exception_hint(err.code)}",
                EXIT_EXCEPTION)
    if isinstance(err, DeviceTimeout):
        return (f"no answer from unit {plan.unit_id} at {where} within "
                f"{plan.link.timeout_ms} ms: {_silence_hint(plan.link)}", EXIT_NO_ANSWER)
    if isinstance(err, BadResponse):
        detail = str(err).removeprefix(f"unit {plan.unit_id}: ")
        return (f"unusable answer from unit {plan.unit_id} at {where}: {detail} "
                f"({_garbled_hint(plan.link)})", EXIT_BAD_ANSWER)
    if isinstance(err, LinkDown):
        return link_problem(plan.link) or _dropped(where), EXIT_LINK
    return str(err), 1


def _exception_hint(code: int) -> str:
    return {
        0x01: ": the device does not read this table; try --table input or --table holding",
        0x02: ": the device has no register there; check the address (the manual's 40001 "
              "is wire address 0: use --ref 40001), the table, or read fewer (--count)",
        0x03: ": the device refuses this request; read fewer registers at once (--count)",
        0x0A: ": the gateway has no path to this unit; check the gateway's configuration",
        0x0B: ": the gateway got no answer from this unit; check the unit id and the "
              "gateway's serial settings and wiring",
    }.get(code, "")


def _silence_hint(link: Link) -> str:
    if isinstance(link, SerialLink):
        return ("check the unit id (edge-agent probe scan finds it), the baud rate and "
                "parity set on the device, and the wiring (A/B swapped?)")
    return ("check the unit id (some devices answer only 1, 0 or 255: try --unit 255) "
            "and, behind a gateway, the gateway's serial settings")


def _garbled_hint(link: Link) -> str:
    causes = ("wrong baud rate or parity, or two devices with the same unit id?"
              if isinstance(link, SerialLink) else "a gateway answering out of turn?")
    return (f"{causes} Twice the registers asked for: a Daniel/Enron range, 32 bits per "
            "address, which the probe does not read")


def _dropped(where: str) -> str:
    return (f"{where} closed the connection (some devices do when the unit id is wrong; "
            "try --unit 1, 0 or 255)")


def _client(link: Link) -> ModbusLinkClient:
    """The probe's client; with ``--record``, it shows the capture's recorder every byte
    (the capture code is loaded only then)."""
    if link.record is None:
        return ModbusLinkClient(link)
    from edge_agent.tools.capture.recorder import LinkRecorder

    return ModbusLinkClient(link, LinkRecorder.for_link(link))


def _close(client: ModbusLinkClient) -> None:
    """Close the link; with ``--record``, say what the capture holds once it is written
    (a capture that could not be written was reported when it failed)."""
    client.close()
    recorder = client.tap
    if recorder is None:
        return
    from edge_agent.tools.capture.recorder import LinkRecorder

    if isinstance(recorder, LinkRecorder) and recorder.flush() and recorder.failure is None:
        print(f"recorded {recorder.frames_recorded} frames in {recorder.path}",
              file=sys.stderr)


def _link(args: argparse.Namespace, default_timeout_ms: int) -> Link:
    target: Target = args.target
    timeout_ms = args.timeout_ms if args.timeout_ms is not None else default_timeout_ms
    if timeout_ms <= 0:
        raise UsageError("--timeout-ms must be a positive number of milliseconds")
    if target.is_serial and args.baud <= 0:
        raise UsageError("--baud must be a positive number, e.g. 9600")
    serial = SerialSettings(args.baud, args.parity, args.stopbits, args.bytesize)
    try:
        link = build_link(target, args.protocol, serial, timeout_ms)
    except ValueError as err:
        raise UsageError(str(err)) from None
    return replace(link, record=args.record) if args.record is not None else link


def _check_unit(unit_id: int, link: Link) -> None:
    if isinstance(link, SerialLink) and not 1 <= unit_id <= 247:
        raise UsageError(f"unit id {unit_id}: on a serial bus unit ids are 1..247 (0 is "
                         "broadcast, which no device answers)")
    if not 0 <= unit_id <= 255:
        raise UsageError(f"unit id {unit_id}: unit ids are 0..255")


def _use_color(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and \
        os.environ.get("TERM") != "dumb"


# -- scan ----------------------------------------------------------------------------------


def cmd_scan(args: argparse.Namespace) -> int:
    link = _link(args, default_timeout_ms=200)
    units: list[int] = args.units or list(range(1, 248))
    for unit_id in (units[0], units[-1]):
        _check_unit(unit_id, link)
    if not 0 <= args.address <= 65535:
        raise UsageError("--address must be 0..65535")
    where = describe_link(link)
    print(render.scan_banner(where, units, args.table, args.address, link.timeout_ms),
          file=sys.stderr)
    report, progress = ScanReport(), _Progress(sys.stderr, len(units))
    client = _client(link)
    try:
        for unit_id in units:
            outcome = ask_unit(client, unit_id, args.table, args.address,
                               lambda: link_problem(link))
            report.add(outcome)
            if outcome.answer is not Answer.SILENT and args.format == "table":
                progress.clear()
                print(render.scan_line(outcome), flush=True)
            progress.show(report)
    except LinkUnusable as err:
        progress.clear()
        print(f"edge-agent probe: {err}", file=sys.stderr)
        return EXIT_LINK
    except KeyboardInterrupt:
        progress.clear()
        print(f"interrupted after {report.tried} unit ids", file=sys.stderr)
        _scan_result(where, report, args.format)
        return EXIT_INTERRUPTED
    finally:
        _close(client)
    progress.clear()
    return _scan_result(where, report, args.format)


def _scan_result(where: str, report: ScanReport, output: str) -> int:
    """Print the summary (or JSON); exit 0 when any unit answered."""
    print(render.scan_json(where, report) if output == "json" else render.scan_summary(report))
    return 0 if report.present else EXIT_NO_ANSWER


class _Progress:
    """Scan progress on standard error: one line rewritten in place on a terminal, a line
    every ten unit ids otherwise (a log file has no use for carriage returns)."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self._stream = stream
        self._total = total
        self._live = stream.isatty()
        self._shown = False

    def show(self, report: ScanReport) -> None:
        text = (f"tried {report.tried} of {self._total} unit ids, "
                f"{len(report.present)} answered")
        if self._live:
            self._stream.write(f"\r{text}")
            self._shown = True
        elif report.tried % 10 == 0 or report.tried == self._total:
            self._stream.write(f"{text}\n")
        self._stream.flush()

    def clear(self) -> None:
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False
