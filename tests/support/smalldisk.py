"""A small file system for the outbox, filled up for real while the agent runs.

Where mounting is permitted (root), a tmpfs of a few MB is mounted in the test's folder:
``fill`` writes a filler file until the kernel answers ENOSPC, ``free`` deletes it, and
SQLite reports "database or disk is full". Elsewhere the agent's own file size limit
stands in (RLIMIT_FSIZE, changed on the running child with prlimit): writes past the
outbox file's current size fail with EFBIG, which SQLite reports as "disk I/O error".
The agent's log then goes through a pipe, since the limit applies to every regular file
the process writes. ``EDGE_AGENT_TEST_DISK=fsize`` forces the stand-in.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

from support.station import AgentProcess


class TmpfsDisk:
    """A tmpfs of ``size_mb`` mounted at ``dir`` until ``close``."""

    report = "database or disk is full"

    def __init__(self, root: Path, size_mb: int = 8) -> None:
        self.dir = root / "small-disk"
        self.dir.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs",
                        str(self.dir)], check=True, capture_output=True)
        self._filler = self.dir / "filler"

    def fill(self, _pid: int) -> None:
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while True:
                os.write(fd, b"\xff" * 65536)
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
        finally:
            os.close(fd)

    def free(self, _pid: int) -> None:
        self._filler.unlink()

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.dir)], check=False, capture_output=True)


class FileSizeLimit:
    """The agent may not write past the outbox file's size while 'full'."""

    report = "disk I/O error"

    def __init__(self, root: Path) -> None:
        self.dir = root / "small-disk"
        self.dir.mkdir()

    def fill(self, pid: int) -> None:
        size = (self.dir / "outbox.sqlite3").stat().st_size
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))

    def free(self, pid: int) -> None:
        resource.prlimit(pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    def close(self) -> None:
        pass


def small_disk(root: Path) -> TmpfsDisk | FileSizeLimit:
    if os.environ.get("EDGE_AGENT_TEST_DISK") != "fsize" and os.geteuid() == 0:
        with contextlib.suppress(subprocess.CalledProcessError):
            return TmpfsDisk(root)
    return FileSizeLimit(root)


class PipedAgentProcess(AgentProcess):
    """An AgentProcess whose output reaches its log file through a pipe (copied here), so
    a file size limit on the agent cannot cut its log short."""

    def start(self) -> PipedAgentProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.log_path.touch()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "--log-level", "debug", "run",
             str(self.config_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        threading.Thread(target=self._copy, daemon=True).start()
        return self

    def _copy(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with open(self.log_path, "ab") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
