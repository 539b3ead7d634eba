"""``store.path`` that is not an outbox, and one agent per outbox (issue 9, items 4 and 7).

A file that is not an edge-agent outbox is refused by ``check`` and by ``run`` and left
exactly as it was (never renamed, written, or given a lock file or ``-wal`` beside it);
so are places no database can live in. A second agent on a running agent's outbox exits
with status 2 naming the first; a SIGKILLed agent never blocks its successor.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.station import AgentProcess, accepted_seqs, write_station
from support.waiting import wait_until

from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config
from edge_agent.config.schema import Retention
from edge_agent.store.lock import OutboxInUse
from edge_agent.store.outbox import Outbox
from edge_agent.store.pathcheck import APPLICATION_ID, StorePathRefused
from edge_agent.tools.sim.simserver import SimServer, SimUnit

UNLIMITED = Retention(max_rows=None, max_bytes=None, max_age_s=None)
EXAMPLE = "e.g. /var/lib/edge-agent/outbox.sqlite3"
NOT_OURS = ("; it is left as it is. Expected an edge-agent outbox or a path where a new one "
            "can be created: point store.path at a file of its own")
STATION = """\
station: {id: ST01}
links: {gw: {type: tcp, host: 127.0.0.1}}
devices:
  - {id: d1, link: gw, unit_id: 1, interval_s: 5, channels: [{name: a, address: 0}]}
mqtt: {host: 127.0.0.1}
store:
  path: PATH
"""


def station_file(folder: Path, store_path: str | Path) -> Path:
    path = folder / "station.yaml"
    path.write_text(STATION.replace("PATH", str(store_path)))
    return path


def check(config: Path, env: dict[str, str] | None = None) -> str:
    """What ``check`` reports about the file: its issues, or OK."""
    try:
        load_config(config, env=env or {})
    except ConfigError as err:
        return str(err)
    return "OK"


def edge_agent(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_agent", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def sqlite_file(path: Path, *statements: str) -> Path:
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()
    return path


def damaged_sqlite(path: Path) -> Path:
    """A SQLite header followed by garbage: SQLite calls it malformed."""
    sqlite_file(path, "CREATE TABLE t (x)", "INSERT INTO t VALUES (1)")
    data = bytearray(path.read_bytes())
    data[100:] = b"\xa5" * (len(data) - 100)
    path.write_bytes(bytes(data))
    return path


# -- check refuses every kind of path that is not an outbox or a place for one -----------

FOREIGN_FILES: dict[str, tuple[Callable[[Path], object], str]] = {
    "text file": (lambda p: p.write_text("127.0.0.1 localhost\n"),
                  "exists and is not an SQLite database, so not an edge-agent outbox"),
    "empty file": (lambda p: p.write_bytes(b""),
                   "exists and is an empty file, so not an edge-agent outbox"),
    "another program's database": (
        lambda p: sqlite_file(p, "CREATE TABLE readings (t REAL)"),
        "is a SQLite database of another program (tables: readings), not an edge-agent "
        "outbox"),
    "a meta table that is not ours": (
        lambda p: sqlite_file(p, "CREATE TABLE meta (name TEXT)"),
        "is a SQLite database of another program (tables: meta), not an edge-agent outbox"),
    "another program's application id": (
        lambda p: sqlite_file(p, "PRAGMA application_id = 1234"),
        "is a SQLite database of another program (application id 0x000004D2), not an "
        "edge-agent outbox"),
    "empty SQLite database": (
        lambda p: sqlite_file(p, "PRAGMA user_version = 1"),
        "is an empty SQLite database that edge-agent did not create"),
    "damaged SQLite database": (
        damaged_sqlite,
        "is a damaged SQLite database (database disk image is malformed) that nothing shows "
        "to be an edge-agent outbox (no hosts.lock beside it); if it is the agent's damaged "
        "outbox, move it aside by hand"),
}


@pytest.mark.parametrize("kind", FOREIGN_FILES, ids=list(FOREIGN_FILES))
def test_check_and_run_refuse_a_file_that_is_not_an_outbox_and_leave_it_byte_for_byte(
        tmp_path, kind):
    make, why = FOREIGN_FILES[kind]
    foreign = tmp_path / "hosts"
    make(foreign)
    before = foreign.read_bytes()
    config = station_file(tmp_path, foreign)
    assert check(config) == f"{config}:7: store.path: {foreign} {why}{NOT_OURS}"
    with pytest.raises(StorePathRefused):  # the outbox refuses it too, if ever asked
        Outbox(foreign, UNLIMITED)
    assert foreign.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hosts", "station.yaml"], \
        "nothing renamed, no lock file, -wal or -shm made beside it"


@pytest.mark.real_parts  # starts the agent
def test_run_on_its_own_station_file_exits_2_and_the_station_file_is_untouched(tmp_path):
    """The review's case: ``store: {path: station.yaml}`` renamed the station file."""
    config = station_file(tmp_path, "station.yaml")
    before = config.read_bytes()
    for command in ("check", "run"):
        result = edge_agent(command, config)
        assert result.returncode == 2, result.stderr
        assert (f"{config}:7: store.path: {config} exists and is not an SQLite database, so "
                f"not an edge-agent outbox{NOT_OURS}") in result.stderr.splitlines()
        assert "Traceback" not in result.stderr
    assert config.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["station.yaml"]


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


PLACES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "directory": (lambda d: d,
                  "{p} is a directory; expected the path of the outbox file, e.g. "
                  "{p}/outbox.sqlite3"),
    "/proc file": (lambda d: Path("/proc/version"),
                   "{p} is on the kernel's /proc file system, where no data can be kept; "
                   f"expected a file on a disk, {EXAMPLE}"),
    "/proc directory": (lambda d: Path("/proc/self/outbox.sqlite3"),
                        "{p} is on the kernel's /proc file system, where no data can be "
                        f"kept; expected a file on a disk, {EXAMPLE}"),
    "/sys": (lambda d: Path("/sys/outbox.sqlite3"),
             "{p} is on the kernel's /sys file system, where no data can be kept; "
             f"expected a file on a disk, {EXAMPLE}"),
    "/dev/null": (lambda d: Path("/dev/null"),
                  f"{{p}} is a character device, not a file; expected a file on a disk, "
                  f"{EXAMPLE}"),
    "link to /dev/null": (lambda d: _link(d / "outbox.sqlite3", Path("/dev/null")),
                          f"{{p}} is a character device, not a file; expected a file on a "
                          f"disk, {EXAMPLE}"),
    "named pipe": (lambda d: fifo(d / "outbox.sqlite3"),
                   f"{{p}} is a named pipe (FIFO), not a file; expected a file on a disk, "
                   f"{EXAMPLE}"),
    "dangling link": (lambda d: _link(d / "outbox.sqlite3", d / "gone" / "x.sqlite3"),
                      "{p} is a symbolic link to {d}/gone/x.sqlite3, which does not exist; "
                      "expected the outbox file itself, or a path where it can be created"),
    "file as directory": (lambda d: _touch(d / "notes.txt") / "outbox.sqlite3",
                          "{d}/notes.txt is a file, not a directory, so the outbox's "
                          "directory {d}/notes.txt cannot be made; expected a path in a "
                          f"directory, {EXAMPLE}"),
}


def _link(path: Path, target: Path) -> Path:
    path.symlink_to(target)
    return path


def _touch(path: Path) -> Path:
    path.write_text("notes\n")
    return path


@pytest.mark.parametrize("kind", PLACES, ids=list(PLACES))
def test_check_refuses_a_place_where_no_outbox_can_live(tmp_path, kind):
    where, message = PLACES[kind]
    folder = tmp_path / "data"
    folder.mkdir()
    store = where(folder)
    config = station_file(tmp_path, store)
    expected = message.format(p=store, d=folder)
    assert check(config) == f"{config}:7: store.path: {expected}"


@contextlib.contextmanager
def unwritable_directory(prepare: Callable[[Path], object] = lambda folder: None
                         ) -> Iterator[Path]:
    """A directory the agent's user cannot write, holding what ``prepare`` put there: a
    tmpfs remounted read-only for root (for whom permission bits do not count), a
    directory of mode 0555 otherwise."""
    folder = Path(tempfile.mkdtemp())
    mounted = os.geteuid() == 0
    try:
        if mounted:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                           check=True, capture_output=True)
        prepare(folder)
        if mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True,
                           capture_output=True)
        else:
            folder.chmod(0o555)
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)
        folder.chmod(0o755)
        shutil.rmtree(folder)


def user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


@pytest.mark.real_parts  # mount(8) for root
def test_check_refuses_a_directory_the_agent_cannot_write_unless_systemd_makes_it(tmp_path):
    with unwritable_directory() as locked:
        config = station_file(tmp_path, locked / "outbox.sqlite3")
        refused = check(config)
        state = station_file(tmp_path, "outbox.sqlite3")  # relative: in STATE_DIRECTORY
        by_systemd = check(state, env={"STATE_DIRECTORY": str(locked / "edge-agent")})
        below = check(station_file(tmp_path, locked / "sub" / "outbox.sqlite3"))
    assert refused.startswith(f"{config}:7: store.path: the directory {locked} cannot be "
                              f"written by the user {user()}: the outbox and its -wal, -shm "
                              "and .lock files are created there"), refused
    assert by_systemd == "OK", "systemd creates STATE_DIRECTORY for the service at start"
    assert f"the directory {locked} cannot be written by the user {user()} (to make " \
           f"{locked}/sub in it)" in below


@pytest.mark.real_parts  # mount(8) for root
def test_default_store_path_in_an_unwritable_station_folder_is_reported_without_a_line(
        tmp_path):
    text = STATION.replace("store:\n  path: PATH\n", "")
    with unwritable_directory(lambda d: (d / "station.yaml").write_text(text)) as locked:
        config = locked / "station.yaml"
        refused = check(config)
        accepted = check(config, env={"STATE_DIRECTORY": str(tmp_path)})
    assert refused.startswith(f"{config}: store.path: the directory {locked} cannot be "
                              "written"), refused
    assert accepted == "OK"


# -- what is accepted ---------------------------------------------------------------------

def test_an_outbox_of_an_older_release_is_recognised_and_given_the_application_id(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    Outbox(path, UNLIMITED).close()
    sqlite_file(path, "PRAGMA application_id = 0")  # as releases before it wrote them
    path.with_name("outbox.sqlite3.lock").unlink()  # and no lock file beside it
    config = station_file(tmp_path, path)
    assert check(config) == "OK"
    Outbox(path, UNLIMITED).close()
    assert int.from_bytes(path.read_bytes()[68:72], "big") == APPLICATION_ID


def test_a_new_outbox_carries_the_application_id_in_its_header_at_once(tmp_path):
    path = tmp_path / "new" / "outbox.sqlite3"
    assert check(station_file(tmp_path, path)) == "OK", "a missing directory is made"
    box = Outbox(path, UNLIMITED)
    try:
        assert int.from_bytes(path.read_bytes()[68:72], "big") == APPLICATION_ID
        assert check(station_file(tmp_path, path)) == "OK", "also while it is open"
    finally:
        box.close()


def test_a_damaged_outbox_is_vouched_for_by_the_lock_file_beside_it(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    Outbox(path, UNLIMITED).close()
    path.write_bytes(b"\x00" * 4096)  # header gone: only the lock file says whose it was
    assert check(station_file(tmp_path, path)) == "OK"
    box = Outbox(path, UNLIMITED)
    box.close()
    [aside] = box.set_aside
    assert aside.read_bytes() == b"\x00" * 4096


# -- one agent per outbox -----------------------------------------------------------------

def test_a_second_outbox_on_the_same_file_is_refused_until_the_first_closes(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    first = Outbox(path, UNLIMITED)
    try:
        with pytest.raises(OutboxInUse) as refused:
            Outbox(path, UNLIMITED)
    finally:
        first.close()
    assert f"outbox {path} is in use by another edge-agent (pid {os.getpid()}, running " \
           "since 20" in str(refused.value)
    Outbox(path, UNLIMITED).close()


@pytest.fixture
def detector():
    server = SimServer([SimUnit(1, holding={0: 50})]).start()
    yield server
    server.stop()


def test_second_agent_on_a_running_agents_outbox_exits_2_and_a_sigkilled_ones_successor_starts(
        tmp_path, broker, detector):
    outbox = tmp_path / "outbox.sqlite3"
    config = write_station(
        tmp_path / "station.yaml", broker_port=broker.port,
        links={"gw": {"type": "tcp", "host": "127.0.0.1", "port": detector.tcp_port}},
        devices=[{"id": "det", "link": "gw", "unit_id": 1, "interval_s": 0.05,
                  "channels": [{"name": "h2s", "address": 0, "type": "uint16"}]}])
    first = AgentProcess(config, tmp_path / "first.log").start().wait_running()
    try:
        wait_until(lambda: accepted_seqs(outbox).get("det", 0) >= 3, 60, "first samples")
        second = edge_agent("run", config)
        export = edge_agent("export", config, "--out", tmp_path / "now.jsonl")
        status = edge_agent("status", config)
        assert first.alive(), "the first agent runs on"
    finally:
        first.kill()  # SIGKILL: the kernel drops its lock
    assert second.returncode == 2, second.stderr
    assert f"{outbox}: cannot open the outbox: outbox {outbox} is in use by another " \
           f"edge-agent (pid {first.process.pid}, running since 20" in second.stderr
    assert "edge-agent running" not in second.stderr and "Traceback" not in second.stderr
    assert export.returncode == 0 and status.returncode == 0, (export.stderr, status.stderr)
    killed_at = accepted_seqs(outbox)["det"]
    successor = AgentProcess(config, tmp_path / "successor.log").start().wait_running()
    try:
        wait_until(lambda: accepted_seqs(outbox)["det"] > killed_at, 60,
                   "the successor to store samples")
    finally:
        assert successor.terminate() == 0, successor.log()[-3000:]


@pytest.mark.real_parts  # mount(8) for root
def test_status_and_export_do_not_need_to_write_where_the_outbox_is(tmp_path):
    """A technician's user runs them against the service's directory: reading only."""
    with unwritable_directory() as locked:
        config = station_file(tmp_path, locked / "outbox.sqlite3")
        try:
            load_config(config, env={}, for_agent=False)
        except ConfigError as err:
            pytest.fail(f"refused for reading: {err}")
        assert "cannot be written" in check(config)


@pytest.mark.parametrize("left", [b"", "header only"], ids=["zero bytes", "header only"])
def test_an_outbox_cut_short_in_its_first_moments_is_taken_up_not_refused(tmp_path, left):
    """An agent killed between creating the file and its schema leaves an empty file or
    a bare SQLite header, and its lock file: the successor starts there, nothing lost."""
    path = tmp_path / "outbox.sqlite3"
    Outbox(path, UNLIMITED).close()
    path.unlink()
    if left == b"":
        path.write_bytes(b"")
    else:
        sqlite_file(path, "PRAGMA user_version = 0", "CREATE TABLE x (a)", "DROP TABLE x")
    assert check(station_file(tmp_path, path)) == "OK"
    box = Outbox(path, UNLIMITED)
    box.close()
    assert box.set_aside == [] and int.from_bytes(path.read_bytes()[68:72], "big") == \
        APPLICATION_ID
