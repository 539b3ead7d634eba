"""May the agent keep its outbox at ``store.path``? Checked by ``check`` (and so before
``run`` opens anything) and again by the outbox itself just before it opens the file.

A file that is there already is used, or set aside when damaged, only if it is an
edge-agent outbox. It is one if any of these holds:

1. its SQLite header carries the outbox's application id (``APPLICATION_ID``, bytes
   68-71; written when an outbox is created, and into older outboxes when opened);
2. it is a readable SQLite database whose ``meta`` table has the outbox's keys (an
   outbox written before application ids);
3. the lock file beside it (``<name>.lock``, lock.py) starts with ``LOCK_MARK``: an
   agent held an outbox at this path before. The lock file is only ever created beside
   an outbox or beside nothing, so it vouches for a file damaged beyond recognition
   (a garbage header, a truncated first page) and for one cut short in its first
   moments (zero bytes, or a header without tables yet).

Anything else is another program's file and is refused, left exactly as it is: a text
file, an empty file, another program's database (by its tables or its application id),
a damaged SQLite file nothing vouches for. Rule 3 never overrides a healthy foreign
database: readable tables of another program are never ours. A damaged outbox whose
lock file was deleted is refused too; the message says to move it aside by hand.

The place itself must suit a database: not in /proc, /sys or /dev (kernel file
systems), not a directory, device, FIFO or socket, not a dangling symbolic link, and in
a directory the agent's user can write (SQLite creates ``-wal`` and ``-shm`` there, the
agent its ``.lock``). A directory that does not exist yet must be creatable: its nearest
existing parent is writable, or it is systemd's ``STATE_DIRECTORY`` (or inside it), which
systemd creates for the service's user at start.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import sqlite3
import stat
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from edge_agent.i18n import _
from edge_agent.store.schema import APPLICATION_ID, SCHEMA_VERSION

LOCK_SUFFIX = ".lock"
LOCK_MARK = "edge-agent outbox lock"
KERNEL_FILE_SYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))
_SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER_BYTES = 100
_OUTBOX_META_KEYS = ("schema_version", "outbox_uuid")
_EXAMPLE = "/var/lib/edge-agent/outbox.sqlite3"


class StorePathRefused(Exception):
    """``store.path`` names a place the outbox may not use (``refusal`` says why)."""


class Kind(Enum):
    """What is at ``store.path``."""

    ABSENT = "nothing yet: a new outbox is created"
    OUTBOX = "an edge-agent outbox"
    DAMAGED_OUTBOX = "a damaged edge-agent outbox: set aside as corrupt when opened"
    FOREIGN = "another program's file: refused, left alone"


@dataclass(frozen=True)
class Finding:
    """The verdict on an existing file; ``reason``: why it is foreign (for FOREIGN)."""

    kind: Kind
    reason: str = ""


def lock_path(path: Path) -> Path:
    """The lock file beside the outbox ``path`` (lock.py)."""
    return path.with_name(path.name + LOCK_SUFFIX)


def was_an_outbox(path: Path) -> bool:
    """Rule 3: the lock file beside ``path`` says an agent held an outbox there."""
    try:
        with open(lock_path(path), "rb") as file:
            return file.read(len(LOCK_MARK)) == LOCK_MARK.encode()
    except OSError:
        return False


def refusal(path: Path, systemd_state_dir: Path | None = None) -> str | None:
    """Why the outbox cannot be kept at ``path``, in words for the station file's
    ``store.path`` message ("found ...; expected ..."); None when it can."""
    problem = place_problem(path, systemd_state_dir)
    if problem is not None:
        return problem
    finding = inspect(path)
    if finding.kind is Kind.FOREIGN:
        return _("{path} {reason}; it is left as it is. Expected an edge-agent outbox or a "
                 "path where a new one can be created: point store.path at a file of its "
                 "own").format(path=path, reason=finding.reason)
    return None


def newer_release(path: Path) -> str | None:
    """Why an outbox at ``path`` written by a newer release cannot be opened; None when
    it can, or when its version cannot be read without a lock (the outbox says so then).
    For ``check``: ``run`` would otherwise exit 1 and be restarted over and over."""
    if inspect(path).kind is not Kind.OUTBOX:
        return None
    try:
        uri = f"{path.absolute().as_uri()}?mode=ro&immutable=1"
        conn = sqlite3.connect(uri, uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        finally:
            conn.close()
        version = int(row[0]) if row else 0
    except (sqlite3.Error, ValueError):
        return None
    if version <= SCHEMA_VERSION:
        return None
    return _("{path} is an outbox written by a newer edge-agent (schema version {version}; "
             "this one reads up to {supported}); it is left as it is. Expected: upgrade "
             "edge-agent, or move the file aside").format(path=path, version=version,
                                                          supported=SCHEMA_VERSION)


def place_problem(path: Path, systemd_state_dir: Path | None = None) -> str | None:
    """What makes ``path`` unusable as a place for a database, whatever it holds."""
    absolute = Path(os.path.abspath(path))
    try:
        mode = absolute.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # the latter: a file as a parent
        mode = None
    except OSError as err:
        return _("{path} cannot be examined ({error}); expected a file path, e.g. "
                 "{example}").format(path=path, error=err.strerror, example=_EXAMPLE)
    if mode is not None and stat.S_ISLNK(mode):
        if not absolute.exists():
            return _("{path} is a symbolic link to {target}, which does not exist; "
                     "expected the outbox file itself, or a path where it can be "
                     "created").format(path=path, target=os.readlink(absolute))
        mode = absolute.stat().st_mode
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        return _("{path} is {kind}, not a file; expected a file on a disk, e.g. "
                 "{example}").format(path=path, kind=_file_type(mode), example=_EXAMPLE)
    for root in KERNEL_FILE_SYSTEMS:
        if _inside(absolute, root) or _inside(absolute.resolve(), root):
            return _("{path} is on the kernel's {root} file system, where no data can be "
                     "kept; expected a file on a disk, e.g. {example}").format(
                         path=path, root=root, example=_EXAMPLE)
    if mode is not None and stat.S_ISDIR(mode):
        return _("{path} is a directory; expected the path of the outbox file, e.g. "
                 "{example}").format(path=path, example=path / "outbox.sqlite3")
    if mode is not None and not os.access(absolute, os.R_OK | os.W_OK):
        return _("{path} cannot be read and written by the user {user}; expected a file "
                 "the agent's user owns (run check as the service runs: "
                 "docs/install.md)").format(path=path, user=_user())
    return _directory_problem(absolute.resolve().parent, systemd_state_dir)


def _directory_problem(directory: Path, systemd_state_dir: Path | None) -> str | None:
    """The outbox's directory, or the nearest existing parent of a missing one."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return _("{existing} is a file, not a directory, so the outbox's directory "
                 "{directory} cannot be made; expected a path in a directory, e.g. "
                 "{example}").format(existing=existing, directory=directory,
                                     example=_EXAMPLE)
    if existing != directory and systemd_state_dir is not None \
            and _inside(directory, Path(os.path.abspath(systemd_state_dir))):
        return None  # systemd makes STATE_DIRECTORY, owned by the service's user
    if not os.access(existing, os.W_OK | os.X_OK):
        made = "" if existing == directory else _(" (to make {directory} in it)").format(
            directory=directory)
        return _("the directory {existing} cannot be written by the user {user}{made}: the "
                 "outbox and its -wal, -shm and .lock files are created there; expected a "
                 "directory the agent's user can write (run check as the service runs, "
                 "with its environment: docs/install.md)").format(
                     existing=existing, user=_user(), made=made)
    return None


def inspect(path: Path) -> Finding:
    """Whether the file at ``path`` is an outbox (rules in the module docstring), read
    without changing it: no SQLite lock, no ``-wal``/``-shm`` created."""
    try:
        with open(path, "rb") as file:
            header = file.read(_HEADER_BYTES)
    except FileNotFoundError:
        return Finding(Kind.ABSENT)
    except OSError as err:
        return Finding(Kind.FOREIGN, _("cannot be read ({error})").format(error=err.strerror))
    vouched = was_an_outbox(path)
    if len(header) < _HEADER_BYTES or not header.startswith(_SQLITE_MAGIC):
        if vouched:
            return Finding(Kind.DAMAGED_OUTBOX)
        what = _("an empty file") if not header else _("not an SQLite database")
        return Finding(Kind.FOREIGN, _("exists and is {what}, so not an edge-agent "
                                       "outbox").format(what=what))
    application_id = int.from_bytes(header[68:72], "big")
    if application_id == APPLICATION_ID:
        return Finding(Kind.OUTBOX)
    if application_id != 0:
        return Finding(Kind.FOREIGN, _("is a SQLite database of another program "
                                       "(application id 0x{id}), not an edge-agent "
                                       "outbox").format(id=f"{application_id:08X}"))
    return _by_tables(path, vouched)


def _by_tables(path: Path, vouched: bool) -> Finding:
    """Rules 2 and 3 for a SQLite file without an application id."""
    try:
        tables, meta = _read_schema(path)
    except sqlite3.Error as err:
        if vouched:
            return Finding(Kind.DAMAGED_OUTBOX)
        return Finding(Kind.FOREIGN, _("is a damaged SQLite database ({error}) that "
                                       "nothing shows to be an edge-agent outbox (no {lock} "
                                       "beside it); if it is the agent's damaged outbox, "
                                       "move it aside by hand").format(
                                           error=err, lock=lock_path(path).name))
    if "meta" in tables and any(key in meta for key in _OUTBOX_META_KEYS):
        return Finding(Kind.OUTBOX)
    if tables:
        return Finding(Kind.FOREIGN, _("is a SQLite database of another program (tables: "
                                       "{tables}), not an edge-agent outbox").format(
                                           tables=", ".join(sorted(tables))))
    if vouched:
        return Finding(Kind.OUTBOX)  # created by an agent that stopped before its schema
    return Finding(Kind.FOREIGN, _("is an empty SQLite database that edge-agent did "
                                   "not create"))


def _read_schema(path: Path) -> tuple[set[str], set[str]]:
    """Table names and ``meta`` keys, read with ``immutable=1``: no locks taken, nothing
    created beside the file (what the main file holds; a WAL's newest pages are not
    needed to tell whose file it is)."""
    uri = f"{path.absolute().as_uri()}?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True)
    try:
        tables = {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        meta: set[str] = set()
        if "meta" in tables:
            # another program's "meta" table may lack our columns: then no keys
            with contextlib.suppress(sqlite3.OperationalError):
                meta = {str(key) for (key,) in conn.execute("SELECT key FROM meta")}
        return tables, meta
    finally:
        conn.close()


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _file_type(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return _("a character device")
    if stat.S_ISBLK(mode):
        return _("a block device")
    if stat.S_ISFIFO(mode):
        return _("a named pipe (FIFO)")
    if stat.S_ISSOCK(mode):
        return _("a socket")
    return _("a special file")


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
