"""``edge-agent`` as a technician runs it: a real process, started the way the installed
command starts, so argument parsing, exit statuses and printed lines are all under test."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

EDGE_AGENT = [sys.executable, "-m", "edge_agent"]


@contextmanager
def running(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``edge-agent ARGS`` in the background, and the first line it printed (a replay or a
    proxy says there where it serves). Killed at the end if it has not ended by itself,
    so a failing test leaves no process behind."""
    process = subprocess.Popen([*EDGE_AGENT, *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()
        assert first, process.stderr.read()
        yield process, first
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def served_at(line: str, pattern: str) -> str:
    """The first group of ``pattern`` in ``line`` (a port, a pty path); fails naming the
    line, so a changed wording says what was printed instead."""
    match = re.search(pattern, line)
    assert match, f"{pattern!r} not in {line!r}"
    return match.group(1)
