"""The signals ``edge-agent run`` answers, installed before anything slow happens.

They live apart from edge_agent/agent.py so that ``run`` can install them first and
import the agent (paho, pymodbus, asyncio, ssl, the outbox, the health server) only
after the station file is loaded: the memory the YAML load frees is then reused by those
imports instead of staying as holes beside them (docs/performance.md, Memory). The log
lines keep the agent's logger name, as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import time
from types import FrameType

log = logging.getLogger("edge_agent.agent")


LOOK_AGAIN_S = 0.25  # SignalEvent.wait looks at its flag at least this often


class SignalEvent:
    """A flag that signal handlers set and the main thread waits on, without a lock.

    Why not ``threading.Event``: Python runs a signal's handler in the main thread,
    between two of its bytecodes, and ``Event.set`` takes the lock that the main thread
    itself holds for a moment in every ``wait`` and ``clear`` of the same event. A
    signal landing in that moment deadlocked the main thread inside its own handler:
    the agent logged "received SIGTERM, stopping" and never stopped (twice under heavy
    load in tests/test_capture_cli.py; tests/test_signal_events.py provokes it). Here
    ``set`` writes a flag and one byte to a pipe, and ``wait`` waits in ``select`` on
    the pipe, in slices (``wait``).

    The interface is ``threading.Event``'s (``set``, ``is_set``, ``clear``, ``wait``);
    only the main thread waits.
    """

    def __init__(self) -> None:
        self._flag = False
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)

    def set(self) -> None:
        self._flag = True
        with contextlib.suppress(BlockingIOError):  # full: a wake-up is pending anyway
            os.write(self._wake_write, b"!")

    def is_set(self) -> bool:
        return self._flag

    def clear(self) -> None:
        self._flag = False
        self._drain()

    def wait(self, timeout: float | None = None) -> bool:
        """True once set; False when ``timeout`` (None: no limit; 0 or less: only look)
        passed first.

        It looks at the flag at least every ``LOOK_AGAIN_S``: a signal can set it without
        waking ``select`` (one landing just before the call; one the kernel hands to
        another thread, whose handler Python runs in the main thread only once that
        thread runs bytecode again), and a wait must not outlast it by more than that."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while not self._flag:
            left = LOOK_AGAIN_S if deadline is None \
                else min(LOOK_AGAIN_S, deadline - time.monotonic())
            if left <= 0:
                break
            select.select([self._wake_read], [], [], left)
            if not self._flag:
                self._drain()
        return self._flag

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_read, 512):
                pass


def install_stop_signals() -> SignalEvent:
    """SIGTERM/SIGINT set the returned event. Install before slow start-up work, so a stop
    requested while the agent is still starting is honoured cleanly too."""
    stop = SignalEvent()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()  # first: the log line below cannot keep the stop from being seen
        log.info("received %s, stopping", signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    return stop


def install_reload_signal() -> SignalEvent:
    """SIGHUP sets the returned event; ``run_until_signalled`` then reloads. Install early:
    SIGHUP's default action would end the process."""
    requested = SignalEvent()
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
