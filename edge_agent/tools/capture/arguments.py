"""The command lines of ``edge-agent capture proxy|import|check``, ``edge-agent replay
tcp|rtu|text`` and ``edge-agent simulate``: their options, help and exit statuses, and
nothing else.

Imports nothing but argparse: ``edge-agent check`` and ``run`` build the whole parser at
start-up and must not load the capture package (or dpkt, which the pcap importer needs).
What the commands do is loaded when one of them runs: ``edge_agent.tools.capture.commands``.

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
MODES = """\
modes:
  strict  answer only the recorded requests, in the recorded order, with the recorded
          answers (silence where the device did not answer); any other request stops
          the replay with exit status 8. For tests: the master must do what it did.
  image   answer any read inside the recorded register ranges with the values the
          device held at that moment of the recording (time runs at --speed), and the
          recorded exceptions; exception 02 outside them. For demos and development.

"""
REPLAY_EXAMPLES = """\
examples:
  edge-agent replay tcp gc-1.capture.jsonl --listen 127.0.0.1:1502
  edge-agent replay tcp gc-1.capture.jsonl --mode image --speed 10
  edge-agent replay rtu h2s.capture.jsonl --pty
  edge-agent replay rtu h2s.capture.jsonl --port /dev/ttyUSB1 --baud 19200 --parity E
  edge-agent replay text nox.capture.jsonl --pty
      then point the station file's link at the address or port printed

"""


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


def _speed(text: str) -> float:
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
    capture = sub.add_parser(
        "capture", help="record device traffic, or import it from tcpdump/Wireshark",
        description="Record what a real instrument says into a capture file (one line of\n"
                    "JSON per frame, see docs/capture-format.md), for replay in tests.",
        epilog=CAPTURE_EXAMPLES + EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = capture.add_subparsers(dest="capture_command", required=True, metavar="ACTION")
    proxy = actions.add_parser(
        "proxy", help="record Modbus TCP between a master and a device, as a go-between",
        description="Listen for a Modbus master (the agent, a SCADA, a probe), forward\n"
                    "every byte to the device and back unchanged, and record both ways.\n"
                    "Point the master at the --listen address instead of the device.\n"
                    "Ctrl-C stops the recording; the file is complete up to that moment.",
        epilog=CAPTURE_EXAMPLES + EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    check = actions.add_parser(
        "check", help="read a capture file and summarise it; name the line of any fault",
        epilog=EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("capture", type=Path, help="capture file")


def _import_parser(actions: Any) -> None:
    imported = actions.add_parser(
        "import", help="turn a tcpdump/Wireshark file (pcap, pcapng) into a capture",
        description="Read Modbus/TCP from a pcap or pcapng file: TCP streams are put back\n"
                    "together, frames cut and paired by transaction id. Exceptions,\n"
                    "malformed frames and unanswered requests are kept as such. A packet\n"
                    "that cannot be imported (file cut short or damaged, a link type\n"
                    "without IP) is named on stderr: packet number and byte offset.",
        epilog=CAPTURE_EXAMPLES + EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    imported.add_argument("pcap", type=Path, help="the .pcap or .pcapng file")
    imported.add_argument("--out", type=Path, required=True, metavar="FILE",
                          help="capture file to write")
    imported.add_argument("--port", type=int, action="append", default=[], metavar="N",
                          help=f"TCP port of the Modbus devices (default {MODBUS_PORT}; "
                               "repeat for several)")


def add_replay_parser(sub: Any) -> None:
    """``replay`` with ``tcp``, ``rtu`` and ``text``."""
    replay = sub.add_parser(
        "replay", help="play a capture back as a device (for tests and demos)",
        description="Answer a master with what a recorded device answered: a Modbus\n"
                    "device over TCP (tcp) or on a serial port (rtu), or a text-protocol\n"
                    "instrument on a serial port (text).\n"
                    "strict: only the recorded requests, in the recorded order; anything\n"
                    "else stops the replay (exit status 8). image (Modbus only): any read\n"
                    "inside the recorded ranges, with the values the device held at that\n"
                    "moment of the recording.",
        epilog=MODES + REPLAY_EXAMPLES + EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = replay.add_subparsers(dest="replay_command", required=True, metavar="ACTION")
    tcp = actions.add_parser("tcp", parents=[_replay_options()],
                             help="serve the capture as a Modbus TCP device",
                             description="Serve a capture as a Modbus TCP device; point "
                                         "the master at --listen.",
                             epilog=MODES + REPLAY_EXAMPLES + EXIT_HELP,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    tcp.add_argument("--listen", type=parse_address, default=("127.0.0.1", 1502),
                     metavar="HOST:PORT", help="where to listen (default 127.0.0.1:1502; "
                                               "port 0 picks a free one)")
    rtu = actions.add_parser("rtu", parents=[_replay_options()],
                             help="serve the capture as a Modbus RTU device on a serial port",
                             description="Serve a capture as a Modbus RTU device on a "
                                         "serial port, or on a virtual one (--pty).",
                             epilog=MODES + REPLAY_EXAMPLES + EXIT_HELP,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    _serial_port_options(rtu)
    _text_replay_parser(actions)


TEXT_EXAMPLES = """\
examples:
  edge-agent replay text nox.capture.jsonl --pty
  edge-agent replay text h2s-stream.capture.jsonl --pty --speed 10
  edge-agent replay text nox.capture.jsonl --port /dev/ttyUSB1 --baud 19200 --bytesize 7

"""


def _text_replay_parser(actions: Any) -> None:
    """``replay text``: a text-protocol instrument (a capture's ``text`` link)."""
    text = actions.add_parser(
        "text", help="serve a capture as a serial text-protocol instrument",
        description="Serve the recording of a text-protocol instrument (an analyser with\n"
                    "its own ASCII protocol) on a serial port, or on a virtual one (--pty).\n"
                    "Strict: each request must be the next recorded one, byte for byte;\n"
                    "it gets the recorded answer, as late as it came (silence where the\n"
                    "instrument did not answer). Records the instrument sent on its own\n"
                    "(streaming) go out at their recorded times. A request that differs\n"
                    "stops the replay with exit status 8.",
        epilog=TEXT_EXAMPLES + EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    text.add_argument("capture", type=Path, help="capture file to replay")
    text.add_argument("--link", metavar="NAME",
                      help="which text link of the capture (needed when it holds several)")
    text.add_argument("--speed", type=_speed, default=1.0, metavar="X",
                      help="how fast streamed records follow each other (default 1: as "
                           "recorded; 10: ten times as fast). Answers keep their delays")
    _serial_port_options(text)
    text.add_argument("--bytesize", type=int, choices=[7, 8], default=8,
                      help="data bits (default 8)")


def _replay_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("capture", type=Path, help="capture file to replay")
    options.add_argument("--mode", choices=["strict", "image"], default="strict",
                         help="strict (default) or image, see modes below")
    options.add_argument("--link", metavar="NAME",
                         help="which link of the capture (needed when it holds several)")
    options.add_argument("--speed", type=_speed, default=1.0, metavar="X",
                         help="image mode: how fast recorded time runs (default 1: real "
                              "time; 60: an hour of recording in a minute)")
    options.add_argument("--loop", action="store_true",
                         help="image mode: start over at the end of the recording (default: "
                              "keep the last values)")
    return options


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
    simulate.add_argument("--speed", type=_speed, default=1.0, metavar="X",
                          help="how fast simulated time runs (default 1: real time; 60: "
                               "an hour in a minute); cycles, ramps and faults follow it")
    simulate.add_argument("--check", action="store_true",
                          help="only check the file and list every problem")


def _serial_port_options(parser: argparse.ArgumentParser) -> None:
    """Where a replayed serial device answers (a real port or a pty) and its line
    settings: the same for the RTU and the text replay."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", metavar="PATH", help="serial port to answer on, e.g. "
                       "/dev/ttyUSB1 (wired to the master's port with a null-modem cable)")
    where.add_argument("--pty", action="store_true", help="make a virtual serial port "
                       "pair and print the path the master should open")
    parser.add_argument("--baud", type=int, default=9600, help="baud rate (default 9600)")
    parser.add_argument("--parity", choices=["N", "E", "O"], default="N",
                        help="parity (default N)")
    parser.add_argument("--stopbits", type=int, choices=[1, 2], default=1)
