"""Whether a link can be used while the service may be running, asked without waiting.

A serial port is owned by one program: the agent's clients take an exclusive ``flock``
on it when they open it (pymodbus for RTU/ASCII, edge_agent/serialports.py for text).
``poll`` tests that lock with ``LOCK_NB`` before it opens the port, so it never steals
bytes from the service's poller and never hangs. Whether the holder is this station's
service is told by the outbox's own lock (edge_agent/store/lock.py), tested the same
way. A TCP device that accepts one connection only refuses or ignores a second one: the
hint for that is given after the connect fails (``tcp_hint``).
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from edge_agent.i18n import N_, _
from edge_agent.store.pathcheck import lock_path

# Technician-facing text of this module, in one place.
PORT_HELD_BY_SERVICE = N_(
    "serial port {port} is held by the running edge-agent service of this station (it "
    "keeps the port open while it runs); poll cannot share it. To poll: sudo systemctl "
    "stop edge-agent, run poll, then sudo systemctl start edge-agent")
PORT_HELD_BY_OTHER = N_(
    "serial port {port} is held by another program (a running edge-agent service, a "
    "terminal program, probe?); poll does not share a port. Close that program first")
TCP_SERVICE_RUNNING = N_(
    "the edge-agent service of this station is running: a device that accepts only one "
    "TCP connection gives it to the service and refuses or ignores poll's (stop the "
    "service to poll it: sudo systemctl stop edge-agent)")
TCP_ONE_CONNECTION = N_(
    "if another program is connected to it (an edge-agent service, a SCADA), a device "
    "that accepts only one TCP connection refuses or ignores a second one")


def serial_port_held(port: str) -> bool:
    """Whether another process holds ``port``'s exclusive lock (or it is opened in
    exclusive mode, EBUSY). A port that cannot be opened at all is not "held": the link
    client then says why (missing, permission)."""
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as err:
        return err.errno == errno.EBUSY
    return _locked_by_another(fd, fcntl.LOCK_EX)


def service_running(outbox: Path) -> bool:
    """Whether an agent holds ``outbox``'s lock now: this station's service runs. The
    lock file is opened read-only and never created."""
    try:
        fd = os.open(lock_path(outbox), os.O_RDONLY)
    except OSError:
        return False
    return _locked_by_another(fd, fcntl.LOCK_SH)


def _locked_by_another(fd: int, operation: int) -> bool:
    """Whether another process holds a lock on ``fd``'s file that ``operation``
    (``LOCK_EX`` or ``LOCK_SH``) conflicts with; asked with ``LOCK_NB``, so it never
    waits. Closes ``fd``, which also releases a lock taken just to ask."""
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def held_port_message(port: str, outbox: Path) -> str:
    """What to tell about ``port``, which another process holds."""
    template = PORT_HELD_BY_SERVICE if service_running(outbox) else PORT_HELD_BY_OTHER
    return _(template).format(port=port)


def tcp_hint(outbox: Path) -> str:
    """The one-connection hint after a Modbus TCP connect was refused or timed out."""
    return _(TCP_SERVICE_RUNNING) if service_running(outbox) else _(TCP_ONE_CONNECTION)
