"""The signals ``edge-agent run`` answers, installed before anything slow happens.

They live apart from edge_agent/agent.py so that ``run`` can install them first and
import the agent (paho, pymodbus, asyncio, ssl, the outbox, the health server) only
after the station file is loaded: the memory the YAML load frees is then reused by those
imports instead of staying as holes beside them (docs/performance.md, Memory). The log
lines keep the agent's logger name, as before.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger("edge_agent.agent")


def install_stop_signals() -> threading.Event:
    """SIGTERM/SIGINT set the returned event. Install before slow start-up work, so a stop
    requested while the agent is still starting is honoured cleanly too."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    return stop


def install_reload_signal() -> threading.Event:
    """SIGHUP sets the returned event; ``run_until_signalled`` then reloads. Install early:
    SIGHUP's default action would end the process."""
    requested = threading.Event()
    signal.signal(signal.SIGHUP, lambda _signum, _frame: requested.set())
    return requested


HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def keep_signals_off_this_thread() -> None:
    """Block the signals ``run`` answers in the calling (worker) thread, so the kernel
    delivers them to the main thread, which runs Python's handlers anyway.

    Why: a wire's thread waits in blocking system calls with the kernel's own timeout
    (drivers/modbus/protocol/pymodbus_client.py). A signal delivered to that thread
    interrupts the call, and Python restarts it with the whole timeout again, so a
    device's timeout could be stretched by every signal. Called first by each thread
    that owns a link (pollers, alarm output writers)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
