"""One agent per outbox: an exclusive ``flock`` on ``<outbox>.lock``, held while open.

Two agents on one outbox would both poll the devices (a serial bus answers one master
only) and knock each other off the broker with the same client id. The outbox takes the
lock before it opens the database and gives it up at close; the kernel releases it when
the process ends in any way, SIGKILL included, so a dead agent never blocks its
successor and no stale lock needs cleaning up. The file stays, holding the pid and start
time of the agent that last took it, which the refusal quotes; its first line is
``pathcheck.LOCK_MARK``, which also says that an outbox lived at this path (pathcheck.py).

Only the agent locks: ``status`` and ``export`` read the database with their own
read-only connection (readonly.py) and work while the agent runs. ``flock`` is advisory
and independent of SQLite's own (POSIX) locks on the database file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.store.pathcheck import LOCK_MARK, lock_path


class OutboxInUse(Exception):
    """Another process holds the outbox's lock: this agent must not start."""


class OutboxLock:
    """The held lock on one outbox; ``release`` (or the process's end) gives it up."""

    def __init__(self, outbox: Path) -> None:
        """Take the lock for ``outbox`` without waiting. Raises ``OutboxInUse`` naming
        the holder, or OSError when the lock file cannot be made."""
        self.path = lock_path(outbox)
        self._fd = _open(self.path)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(self._fd)
            os.close(self._fd)
            raise OutboxInUse(
                f"outbox {outbox} is in use by another edge-agent ({holder}); one agent per "
                "outbox: stop that one first (systemctl stop edge-agent), or give this "
                "station file a store.path of its own") from None
        except BaseException:
            os.close(self._fd)
            raise
        self.since = datetime.now(UTC)
        _describe_holder(self._fd, self.since)

    def release(self) -> None:
        """Give the lock up (the file stays, as the marker pathcheck.py reads)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _open(path: Path) -> int:
    """The lock file, made if missing (never through a symbolic link). One left by root
    (``sudo edge-agent run``) may be read-only to the service's user: a read-only
    descriptor locks as well, only the holder's description is not updated."""
    flags = os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, os.O_RDWR | flags, 0o644)
    except PermissionError:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)


def _describe_holder(fd: int, since: datetime) -> None:
    text = f"{LOCK_MARK}\npid {os.getpid()}\nsince {since.isoformat(timespec='seconds')}\n"
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)


def _holder(fd: int) -> str:
    """'pid N, running since T' from the holder's lock file, as far as it says."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        text = ""
    fields = dict(line.split(" ", 1) for line in text.splitlines()[1:] if " " in line)
    pid, since = fields.get("pid", "unknown"), fields.get("since")
    return f"pid {pid}, running since {since}" if since else f"pid {pid}"
