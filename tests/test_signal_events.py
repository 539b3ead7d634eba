"""The events ``edge-agent run`` sets from its signal handlers (edge_agent/stopsignals.py).

Python runs a signal's handler in the main thread, between two of its bytecodes. A
``threading.Event`` set there deadlocked when the main thread was, at that moment, inside
``wait`` or ``clear`` of the same event, holding the event's lock: the agent logged
"received SIGTERM, stopping" and never stopped (seen twice in tests/test_capture_cli.py
under heavy load). Here a child process does what ``run_until_signalled`` does (short
waits on the stop event, clearing the reload event it finds set) while a stream of
SIGHUP and then SIGTERM arrives: it must see them and end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

CHILD = textwrap.dedent("""
    import sys
    from edge_agent.stopsignals import install_reload_signal, install_stop_signals
    stop = install_stop_signals()
    reload = install_reload_signal()
    print("ready", flush=True)
    reloads = 0
    while not stop.wait(0):  # busy: the main thread is inside the events' code nearly
        if reload.is_set():  # all the time, as it is for a moment at each real turn
            reloads += 1
        reload.clear()
    print("stopped after", reloads, "reloads", flush=True)
""")


@pytest.mark.real_parts
def test_a_stream_of_signals_never_deadlocks_the_main_thread():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        for _ in range(3000):
            os.kill(child.pid, signal.SIGHUP)
            time.sleep(0.0003)
        os.kill(child.pid, signal.SIGTERM)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    reloads = int(out.split()[2])
    assert reloads >= 1, out
