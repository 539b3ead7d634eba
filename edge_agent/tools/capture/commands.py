"""What ``edge-agent capture ...`` and ``edge-agent replay ...`` run once the command line
(``edge_agent.tools.capture.arguments``) is parsed. The work itself is in ``runners.py``."""

from __future__ import annotations

import argparse


def run_capture(args: argparse.Namespace) -> int:
    from edge_agent.tools.capture import runners

    command = {"proxy": runners.capture_proxy, "import": runners.capture_import,
               "check": runners.capture_check}[args.capture_command]
    return command(args)


def run_replay(args: argparse.Namespace) -> int:
    from edge_agent.tools.capture import runners

    return runners.replay(args)
