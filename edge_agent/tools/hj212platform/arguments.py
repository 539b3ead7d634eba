"""The command line of ``edge-agent hj212-platform``. What it runs is loaded only when
it runs (``server.py``), so ``edge-agent run`` never imports it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

CRC_VARIANTS = ("modbus-high-first", "modbus-low-first")


def add_hj212_platform_parser(sub: Any) -> None:
    """``hj212-platform [--host H] [--port P] [--jsonl FILE] [--send CMD]… [misbehaviour]``."""
    parser = sub.add_parser(
        "hj212-platform", help="run a simulated HJ 212 platform that stations can feed",
        description="Listen for HJ 212 stations, check and log every packet, answer "
                    "9014/9013, and send commands (CN=1011, CN=1012, CN=2051...).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on "
                        "(default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0,
                        help="TCP port (default: a free one, printed at start)")
    parser.add_argument("--jsonl", type=Path, default=None, metavar="FILE",
                        help="also append every event as one JSON object per line")
    parser.add_argument("--send", action="append", default=[], metavar="CN=nnnn[;REGION]",
                        help="command to send to each station after its first packet "
                             "(repeatable), e.g. CN=1011 or "
                             "'CN=2051;BeginTime=20260101000000,EndTime=20260101010000'")
    parser.add_argument("--interactive", action="store_true",
                        help="read commands from stdin, one per line, for every station")
    parser.add_argument("--sm4-key", default=None, metavar="HEX",
                        help="SM4 key (32 hex digits) to read HJ 212-2025 encrypted data")
    parser.add_argument("--accept-crc", action="append", default=[], choices=CRC_VARIANTS,
                        help="also accept this CRC variant some devices send (repeatable)")
    parser.add_argument("--crc", default="hj212", choices=("hj212", *CRC_VARIANTS),
                        help="CRC variant this platform sends on its answers and commands "
                             "(and accepts); default hj212, the standard's Appendix A")
    parser.add_argument("--unanswered-pno", type=int, default=0, metavar="N",
                        help="never answer piece PNO=N of a split upload (0: answer all)")
    parser.add_argument("--no-ack", action="store_true",
                        help="never answer 9014/9013 (commands are still sent)")
    parser.add_argument("--blackhole", action="store_true",
                        help="accept and log, never send anything")
    parser.add_argument("--close-after", type=int, default=0, metavar="N",
                        help="close each connection after N packets from it")


def run_hj212_platform(args: argparse.Namespace) -> int:
    """Run the platform until Ctrl-C or SIGTERM; 2 for a bad option value."""
    import sys

    from edge_agent.hj212.packet import ParseOptions
    from edge_agent.tools.hj212platform.requests import CommandError, parse_command
    from edge_agent.tools.hj212platform.server import Behaviour, accepted_variants, run_platform

    try:
        commands = tuple(parse_command(text) for text in args.send)
        key = bytes.fromhex(args.sm4_key) if args.sm4_key else None
        if key is not None and len(key) != 16:
            raise ValueError(f"--sm4-key: expected 32 hex digits, got {len(key) * 2}")
        if args.close_after < 0:
            raise ValueError("--close-after: expected 0 or more packets")
        if args.unanswered_pno < 0:
            raise ValueError("--unanswered-pno: expected 0 or a piece number")
    except (CommandError, ValueError) as err:
        print(f"edge-agent hj212-platform: {err}", file=sys.stderr)
        return 2
    from edge_agent.hj212.crc import CrcVariant

    crc = CrcVariant(args.crc)
    options = ParseOptions(accept_crc=accepted_variants([*args.accept_crc, crc.value]),
                           sm4_key=key)
    behaviour = Behaviour(ack=not args.no_ack, blackhole=args.blackhole,
                          close_after=args.close_after, commands=commands, options=options,
                          crc=crc, unanswered_pno=args.unanswered_pno)
    return run_platform(args.host, args.port, behaviour, args.jsonl, args.interactive)
