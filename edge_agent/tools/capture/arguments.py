"""The command line of ``edge-agent capture proxy|import|check``: its options, help and
exit statuses, and nothing else; also the option types and exit statuses that ``replay``
(edge_agent/tools/replay/arguments.py) and ``simulate`` (edge_agent/tools/sim/arguments.py)
share with it.

Imports nothing but argparse: ``edge-agent capture --help`` must not load the capture
package (or dpkt, which the pcap importer needs). What the commands do is loaded when one
of them runs: ``edge_agent.tools.capture.commands``.

Each option is parsed into a typed value here (argparse ``type=``), so a mistyped address
or port is a usage error (exit status 2) before anything is opened.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

MODBUS_PORT = 502  # the Modbus TCP port, when a --target gives none
EXIT_OK = 0
EXIT_USAGE = 2  # command line, or a capture file that cannot be used
EXIT_DAMAGED = 3  # capture import: the pcap is damaged before its end; whole packets imported
EXIT_LINK = 4  # cannot listen, reach the device, or open the serial port
EXIT_MISMATCH = 8  # strict replay: a request the recording did not have
EXIT_HELP = """\
exit status:
  0  done (replay: a strict replay served every recorded request; or stopped by Ctrl-C)
  1  unexpected error
  2  invalid command line, or the capture/pcap file cannot be used (the message says
     which file, which line, and what is wrong)
  3  import: the pcap file is damaged before its end; every whole packet was
     imported and each damaged one is named (packet number, byte offset)
  4  cannot listen on the address, reach the device, or open the serial port
  8  strict replay: a request that differs from the recording (or comes after its end)
"""
CAPTURE_EXAMPLES = """\
examples:
  edge-agent capture proxy --listen 0.0.0.0:1502 --target 192.168.10.21:502 \\
      --out gc-1.capture.jsonl
      then point the agent (or any Modbus master) at this PC, port 1502
  edge-agent capture import wireshark.pcapng --out field.capture.jsonl
  edge-agent capture check gc-1.capture.jsonl

"""
def add_command(actions: Any, name: str, *, help: str, epilog: str,  # noqa: A002 - argparse's
                description: str | None = None,
                parents: tuple[argparse.ArgumentParser, ...] = ()) -> argparse.ArgumentParser:
    """A command (or action) of the tools' command lines, its help text laid out as
    written (line breaks kept): the options every such ``add_parser`` call repeated."""
    return actions.add_parser(name, help=help, description=description, epilog=epilog,
                              parents=list(parents),
                              formatter_class=argparse.RawDescriptionHelpFormatter)


def parse_address(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``HOST:PORT`` (or ``HOST`` when there is a default port, ``[v6]:PORT`` for IPv6)."""
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port:
        if default_port is None:
            raise argparse.ArgumentTypeError(f"{text!r}: give HOST:PORT, e.g. 127.0.0.1:1502")
        host, port = text, str(default_port)
    host = host.strip("[]") or "0.0.0.0"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: the port must be 0..65535")
    return host, int(port)


def _target(text: str) -> tuple[str, int]:
    return parse_address(text, default_port=MODBUS_PORT)


def _unit(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 255:
        raise argparse.ArgumentTypeError(f"{text!r}: a unit id is 0..255")
    return int(text)


def parse_speed(text: str) -> float:
    try:
        speed = float(text)
    except ValueError:
        speed = 0.0
    if speed <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the speed is a number above 0 "
                                         "(1: real time, 10: ten times as fast)")
    return speed


def add_capture_parser(sub: Any) -> None:
    """``capture`` with ``proxy``, ``import`` and ``check``."""
    capture = add_command(
        sub, "capture", help="record device traffic, or import it from tcpdump/Wireshark",
        description="Record what a real instrument says into a capture file (one line of\n"
                    "JSON per frame, see docs/capture-format.md), for replay in tests.",
        epilog=CAPTURE_EXAMPLES + EXIT_HELP)
    actions = capture.add_subparsers(dest="capture_command", required=True, metavar="ACTION")
    proxy = add_command(
        actions, "proxy", help="record Modbus TCP between a master and a device, as a "
                               "go-between",
        description="Listen for a Modbus master (the agent, a SCADA, a probe), forward\n"
                    "every byte to the device and back unchanged, and record both ways.\n"
                    "Point the master at the --listen address instead of the device.\n"
                    "Ctrl-C stops the recording; the file is complete up to that moment.",
        epilog=CAPTURE_EXAMPLES + EXIT_HELP)
    proxy.add_argument("--listen", type=parse_address, required=True, metavar="HOST:PORT",
                       help="where the master connects (0.0.0.0:1502: every interface)")
    proxy.add_argument("--target", type=_target, required=True, metavar="HOST[:PORT]",
                       help="the device (port 502 unless you give one)")
    proxy.add_argument("--out", type=Path, required=True, metavar="FILE",
                       help="capture file to write (e.g. gc-1.capture.jsonl)")
    proxy.add_argument("--append", action="store_true",
                       help="add to an existing capture file instead of starting a new one")
    proxy.add_argument("--name", default="device", metavar="NAME",
                       help="a name for the device's link in the capture (default: device)")
    proxy.add_argument("--unit", type=_unit, action="append", default=[], metavar="ID",
                       help="unit id(s) expected behind the target, noted in the header")
    _import_parser(actions)
    check = add_command(
        actions, "check", help="read a capture file and summarise it; name the line of any "
                               "fault", epilog=EXIT_HELP)
    check.add_argument("capture", type=Path, help="capture file")


def _import_parser(actions: Any) -> None:
    imported = add_command(
        actions, "import", help="turn a tcpdump/Wireshark file (pcap, pcapng) into a capture",
        description="Read Modbus/TCP from a pcap or pcapng file: TCP streams are put back\n"
                    "together, frames cut and paired by transaction id. Exceptions,\n"
                    "malformed frames and unanswered requests are kept as such. A packet\n"
                    "that cannot be imported (file cut short or damaged, a link type\n"
                    "without IP) is named on stderr: packet number and byte offset.",
        epilog=CAPTURE_EXAMPLES + EXIT_HELP)
    imported.add_argument("pcap", type=Path, help="the .pcap or .pcapng file")
    imported.add_argument("--out", type=Path, required=True, metavar="FILE",
                          help="capture file to write")
    imported.add_argument("--port", type=int, action="append", default=[], metavar="N",
                          help=f"TCP port of the Modbus devices (default {MODBUS_PORT}; "
                               "repeat for several)")
