"""``poll``'s questions about a link, asked without waiting: is the serial port locked by
another program, and is that program this station's service (its outbox lock)? Real
files and real ``flock`` locks: a second open file description conflicts like another
process's would."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge_agent.store.pathcheck import lock_path
from edge_agent.tools.poll.access import serial_port_held, service_running


@contextmanager
def locked(path: Path, operation: int) -> Iterator[None]:
    """``path`` locked the way its owner locks it, until the block ends."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def test_a_port_is_held_only_while_another_program_has_it_locked(tmp_path):
    port = tmp_path / "ttyUSB0"
    port.write_bytes(b"")
    assert not serial_port_held(str(port))
    with locked(port, fcntl.LOCK_EX):
        assert serial_port_held(str(port))
    assert not serial_port_held(str(port))  # asking took no lock of its own


def test_a_port_that_cannot_be_opened_is_not_held(tmp_path):
    assert not serial_port_held(str(tmp_path / "missing"))


def test_the_service_runs_while_its_outbox_lock_is_held(tmp_path):
    outbox = tmp_path / "outbox.sqlite3"
    assert not service_running(outbox)  # no lock file: never created by asking
    assert not lock_path(outbox).exists()
    with locked(lock_path(outbox), fcntl.LOCK_EX):
        assert service_running(outbox)
    assert not service_running(outbox)
