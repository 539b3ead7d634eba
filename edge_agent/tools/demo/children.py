"""Ending a demo's child process (the HJ 212 platform simulators, the Sparkplug host)."""

from __future__ import annotations

import signal
import subprocess


def stop_child(process: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM, so the child can say goodbye (a simulator's ``summary:`` line, a host's
    offline STATE); SIGKILL when it has not ended after ``timeout_s``. A child that has
    ended already is left alone."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
