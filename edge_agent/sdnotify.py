"""sd_notify(3) without libsystemd: one datagram of ``KEY=VALUE`` lines to the socket
systemd names in ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace).

Under ``Type=notify`` the service manager waits for ``READY=1`` before it calls the unit
started, expects ``WATCHDOG=1`` at least every ``WatchdogSec=`` (given to the process as
``$WATCHDOG_USEC``, in microseconds; it applies to us only when ``$WATCHDOG_PID`` is unset
or our pid), takes ``STOPPING=1`` as the start of a clean stop, and shows ``STATUS=`` in
``systemctl status``. What the agent sends when is decided in ``watchdog.py``.

Sending never raises and never blocks: a notification that cannot be delivered (no
service manager, its socket gone, its queue full) is dropped and logged at DEBUG. A
service manager that stops hearing keep-alives restarts us, which is the point; one that
never hears READY fails the start after ``TimeoutStartSec=``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def socket_address(value: str) -> str | None:
    """The AF_UNIX address for a ``$NOTIFY_SOCKET`` value; None for what we cannot use
    (empty, or ``vsock:`` addresses of a VM's host manager)."""
    if value.startswith("@"):
        return "\0" + value[1:]  # Linux abstract namespace: a leading NUL byte
    if value.startswith("/"):
        return value
    return None


def watchdog_usec(environ: Mapping[str, str] | None = None) -> int | None:
    """``$WATCHDOG_USEC`` when the watchdog is meant for this process, else None."""
    env = os.environ if environ is None else environ
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec)


class Notifier:
    """A connectionless sender to the service manager; disabled when there is none."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        if address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        value = env.get("NOTIFY_SOCKET", "")
        address = socket_address(value)
        if value and address is None:
            log.warning("NOTIFY_SOCKET=%s is not a socket this agent can use; the service "
                        "manager will not hear from it", value)
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) as one datagram; True if it
        was handed to the service manager's socket."""
        if self._sock is None or self.address is None or not fields:
            return False
        data = "\n".join(field.replace("\n", " ") for field in fields).encode()
        try:
            self._sock.sendto(data, socket.MSG_DONTWAIT, self.address)
        except OSError as err:
            log.debug("service manager notification %r not delivered: %s", fields, err)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
