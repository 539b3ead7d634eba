"""The command line of ``edge-agent replay tcp|rtu|text``: its options, help and exit
statuses, and nothing else. The exit statuses and option types are the capture command's
(edge_agent/tools/capture/arguments.py); what the command does is loaded when it runs:
``edge_agent.tools.capture.commands``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edge_agent.tools.capture.arguments import (
    EXIT_HELP,
    add_command,
    parse_address,
    parse_speed,
)

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


def add_replay_parser(sub: Any) -> None:
    """``replay`` with ``tcp``, ``rtu`` and ``text``."""
    replay = add_command(
        sub, "replay", help="play a capture back as a device (for tests and demos)",
        description="Answer a master with what a recorded device answered: a Modbus\n"
                    "device over TCP (tcp) or on a serial port (rtu), or a text-protocol\n"
                    "instrument on a serial port (text).\n"
                    "strict: only the recorded requests, in the recorded order; anything\n"
                    "else stops the replay (exit status 8). image (Modbus only): any read\n"
                    "inside the recorded ranges, with the values the device held at that\n"
                    "moment of the recording.",
        epilog=MODES + REPLAY_EXAMPLES + EXIT_HELP)
    actions = replay.add_subparsers(dest="replay_command", required=True, metavar="ACTION")
    tcp = add_command(actions, "tcp", parents=(_replay_options(),),
                      help="serve the capture as a Modbus TCP device",
                      description="Serve a capture as a Modbus TCP device; point the master "
                                  "at --listen.",
                      epilog=MODES + REPLAY_EXAMPLES + EXIT_HELP)
    tcp.add_argument("--listen", type=parse_address, default=("127.0.0.1", 1502),
                     metavar="HOST:PORT", help="where to listen (default 127.0.0.1:1502; "
                                               "port 0 picks a free one)")
    rtu = add_command(actions, "rtu", parents=(_replay_options(),),
                      help="serve the capture as a Modbus RTU device on a serial port",
                      description="Serve a capture as a Modbus RTU device on a serial port, "
                                  "or on a virtual one (--pty).",
                      epilog=MODES + REPLAY_EXAMPLES + EXIT_HELP)
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
    text = add_command(
        actions, "text", help="serve a capture as a serial text-protocol instrument",
        description="Serve the recording of a text-protocol instrument (an analyser with\n"
                    "its own ASCII protocol) on a serial port, or on a virtual one (--pty).\n"
                    "Strict: each request must be the next recorded one, byte for byte;\n"
                    "it gets the recorded answer, as late as it came (silence where the\n"
                    "instrument did not answer). Records the instrument sent on its own\n"
                    "(streaming) go out at their recorded times. A request that differs\n"
                    "stops the replay with exit status 8.",
        epilog=TEXT_EXAMPLES + EXIT_HELP)
    _capture_options(text, "text link", "how fast streamed records follow each other "
                     "(default 1: as recorded; 10: ten times as fast). Answers keep their "
                     "delays")
    _serial_port_options(text)
    text.add_argument("--bytesize", type=int, choices=[7, 8], default=8,
                      help="data bits (default 8)")


def _capture_options(parser: argparse.ArgumentParser, link: str, speed: str) -> None:
    """The capture file, which ``link`` of it, and ``--speed`` (what ``speed`` paces):
    every replay action has them."""
    parser.add_argument("capture", type=Path, help="capture file to replay")
    parser.add_argument("--link", metavar="NAME",
                        help=f"which {link} of the capture (needed when it holds several)")
    parser.add_argument("--speed", type=parse_speed, default=1.0, metavar="X", help=speed)


def _replay_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    _capture_options(options, "link", "image mode: how fast recorded time runs (default 1: "
                     "real time; 60: an hour of recording in a minute)")
    options.add_argument("--mode", choices=["strict", "image"], default="strict",
                         help="strict (default) or image, see modes below")
    options.add_argument("--loop", action="store_true",
                         help="image mode: start over at the end of the recording (default: "
                              "keep the last values)")
    return options


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
