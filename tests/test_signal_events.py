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


OTHER_THREAD = textwrap.dedent("""
    import signal, threading, time
    from edge_agent.stopsignals import install_stop_signals
    stop = install_stop_signals()
    other = threading.Thread(target=time.sleep, args=(30,), daemon=True)
    other.start()
    def send():
        time.sleep(0.2)
        signal.pthread_kill(other.ident, signal.SIGTERM)  # not to the waiting thread
    threading.Thread(target=send, daemon=True).start()
    started = time.monotonic()
    seen = stop.wait(20.0)
    print(seen, round(time.monotonic() - started, 2), flush=True)
""")


@pytest.mark.real_parts
def test_a_signal_handed_to_another_thread_ends_the_wait_soon():
    """The kernel may hand a process's signal to another thread (when the main thread
    has one pending already); select is then not interrupted and the handler runs in the
    main thread only when it runs bytecode again. The wait looks again every
    LOOK_AGAIN_S, so it ends within about that, not at its 20 s timeout (found in
    review: it ran to the timeout)."""
    done = subprocess.run([sys.executable, "-c", OTHER_THREAD], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen, took = done.stdout.split()
    assert seen == "True"
    assert float(took) < 5.0, f"the wait ended {took} s after it began"


def test_the_events_wait_as_threading_events_do_at_their_edges():
    """wait(0) and a negative timeout only look (a negative one raised ValueError from
    select: found in review); set, clear and is_set as threading.Event's."""
    from edge_agent.stopsignals import SignalEvent

    event = SignalEvent()
    assert event.wait(0) is False and event.wait(-1) is False
    started = time.monotonic()
    assert event.wait(0.05) is False
    assert time.monotonic() - started >= 0.04
    event.set()
    assert event.is_set() and event.wait(-1) is True and event.wait() is True
    event.clear()
    assert not event.is_set() and event.wait(0) is False
