"""Freeze one thread of a running process, the way a thread blocked forever in the kernel
is frozen (a USB-serial ioctl that never returns, an fsync on a dead SD card): ptrace's
PTRACE_SEIZE and PTRACE_INTERRUPT stop exactly that thread, and the process's other
threads run on. Nothing in the process is patched or told. Linux only; the kernel lets a
parent trace its own children, which is what a test's agent process is.

A thread is frozen only at a moment it is inside a system call (waiting, reading): frozen
in the middle of Python code it could hold the interpreter lock, and the whole process
would stop with it, which proves nothing about the watchdog.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

_PTRACE_CONT, _PTRACE_DETACH = 7, 17
_PTRACE_SEIZE, _PTRACE_INTERRUPT = 0x4206, 0x4207
_WALL = 0x40000000
_ATTEMPTS = 200

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long


def _ptrace(request: int, tid: int) -> None:
    if _libc.ptrace(request, tid, None, None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"ptrace({request:#x}, {tid}): {os.strerror(errno)}")


def thread_named(pid: int, name: str) -> int | None:
    """The id of ``pid``'s thread whose OS name (/proc/.../comm) is ``name``."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == name:
                return int(task.name)
        except OSError:  # the thread ended meanwhile
            continue
    return None


class FrozenThread:
    """``freeze()`` stops thread ``tid`` of process ``pid``; ``thaw()`` lets it go on."""

    def __init__(self, pid: int, tid: int) -> None:
        self.pid, self.tid = pid, tid
        self.frozen_in: str | None = None  # /proc/.../syscall when it was frozen

    def freeze(self) -> None:
        _ptrace(_PTRACE_SEIZE, self.tid)
        for _ in range(_ATTEMPTS):
            _ptrace(_PTRACE_INTERRUPT, self.tid)
            os.waitpid(self.tid, _WALL)
            syscall = Path(f"/proc/{self.pid}/task/{self.tid}/syscall").read_text().strip()
            if syscall.split()[0] not in ("-1", "running"):
                self.frozen_in = syscall
                return
            _ptrace(_PTRACE_CONT, self.tid)  # caught in Python code: try again
        _ptrace(_PTRACE_INTERRUPT, self.tid)
        os.waitpid(self.tid, _WALL)
        self.thaw()
        raise AssertionError(f"thread {self.tid} was never caught inside a system call")

    def thaw(self) -> None:
        _ptrace(_PTRACE_DETACH, self.tid)
