"""Why a link could not be opened, in words a technician can act on.

The Modbus client only reports that it could not connect (pymodbus logs the reason and
returns False). When that happens the probe looks again, with the operating system's
own calls, to tell a missing port from a busy one or a permission problem, and a refused
connection from an unreachable host. Called only after a failure, so it never holds a
port or a connection slot the probe itself needs.
"""

from __future__ import annotations

import errno
import fcntl
import grp
import os
import socket

from edge_agent.config.schema import Link, SerialLink
from edge_agent.serialports import explain_missing


def link_problem(link: Link) -> str | None:
    """Why ``link`` cannot be used at all, or None if it seems usable now."""
    if isinstance(link, SerialLink):
        return serial_port_problem(link.port)
    return tcp_problem(link.host, link.port, link.timeout_ms / 1000)


def serial_port_problem(path: str) -> str | None:
    """What stops ``path`` from being opened as a serial port; None if nothing does."""
    missing = explain_missing(path)
    if missing:
        return missing
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except PermissionError:
        return (f"no permission to open serial port {path}: add this user to the group "
                f"'{_group_of(path)}' (sudo usermod -aG {_group_of(path)} $USER, then log "
                "in again) or run as that group")
    except OSError as err:
        if err.errno == errno.EBUSY:
            return _busy(path)
        return f"cannot open serial port {path}: {err.strerror}"
    try:
        if not os.isatty(fd):
            return f"{path} is not a serial port"
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _busy(path)
    finally:
        os.close(fd)  # also releases the lock taken just to test it
    return None


def _busy(path: str) -> str:
    return (f"serial port {path} is busy: another program has it open (a running "
            "edge-agent service? stop it first: sudo systemctl stop edge-agent)")


def _group_of(path: str) -> str:
    gid = os.stat(path).st_gid
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def tcp_problem(host: str, port: int, timeout_s: float) -> str | None:
    """What stops a TCP connection to ``host``:``port``; None if it connects now."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except ConnectionRefusedError:
        return (f"{host}:{port} refused the connection: nothing listens on port {port} "
                "there (is the port right? 502 is the standard; is Modbus TCP enabled on "
                "the device?)")
    except TimeoutError:
        return (f"no reply from {host}:{port} within {timeout_s * 1000:.0f} ms: the host "
                "is unreachable or a firewall drops the connection (check the address, "
                "the cable and the subnet)")
    except socket.gaierror:
        return f"unknown host name '{host}' (check the spelling, or use its IP address)"
    except OSError as err:
        return f"cannot connect to {host}:{port}: {err.strerror or err}"
