"""Open the capture file a link records into: a new one, or the one an earlier run of the
agent left, continued.

The agent restarts (an update, a power cut, systemd after a crash) while a technician's
``record:`` setting stays, so a recording continues where the last run stopped rather
than refusing to start: records of the new run count time from the old header, and
exchange (``xid``) and connection (``conn``) numbers go on from the highest in the file,
so answers still pair with their own requests. A last line cut short (a power cut in the
middle of a write) is cut off before continuing; a file that is not a capture of this
link is left alone, and the link is not recorded.

A capture's one header describes the link (endpoint, serial settings) for every record
in the file, so a recording continues only under a header that still says the truth.
When the link's settings changed (a reload with a new baudrate or endpoint), the earlier
recording is moved aside, named after the time its header started
(``NAME.20260301T083000Z.capture.jsonl``), and a new file starts at the configured path.

Files are opened for appending (``O_APPEND``), a new one exclusively as well: whatever
else may still hold the file open, a line is always written at its end, never over
another (the recorder lets one writer at a time use a path: recorder.py).

A path that is not a regular file (``/dev/stdout``, a named pipe, ``/dev/full``) is
written from a new header.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TextIO

from edge_agent.tools.capture.files import CaptureWriter
from edge_agent.tools.capture.format import (
    FormatProblem,
    Header,
    LinkInfo,
    header_line,
    parse_header,
)

log = logging.getLogger(__name__)


class NotThisCapture(Exception):
    """The file exists and is not a capture this link can continue (the message says
    why, for the log)."""


@dataclass
class Opened:
    """A writer ready for the next record, and the numbers to continue from."""

    writer: CaptureWriter
    next_xid: int = 1
    next_conn: int = 1


def open_capture(path: Path, header: Header) -> Opened:
    """``path`` ready to take ``header``'s link's records. Raises OSError when the file
    cannot be opened or written, NotThisCapture when it holds something else."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return _new(_open_new(path), header)
    if not stat.S_ISREG(mode):
        return _new(path.open("w", encoding="utf-8"), header)
    if path.stat().st_size == 0:
        return _new(path.open("a", encoding="utf-8"), header)
    return _continued(path, header)


def _open_new(path: Path) -> TextIO:
    """A file that did not exist, for appending: created here, or OSError."""
    return open(path, "a", encoding="utf-8",  # noqa: SIM115 - the writer closes it
                opener=lambda name, flags: os.open(name, flags | os.O_EXCL, 0o666))


def _new(stream, header: Header) -> Opened:  # noqa: ANN001 - a text stream just opened
    try:
        stream.write(header_line(header) + "\n")
        stream.flush()
    except OSError:
        stream.close()
        raise
    return Opened(CaptureWriter(stream, header))


def _continued(path: Path, header: Header) -> Opened:
    with path.open("rb") as file:
        first = file.readline()
    try:
        existing = parse_header(first.decode("utf-8", errors="replace"))
    except FormatProblem as problem:
        raise NotThisCapture(f"it exists and is not a capture ({problem})") from None
    link = header.links[0]
    ours = next((known for known in existing.links if known.name == link.name), None)
    if ours is None:
        raise NotThisCapture(f"it is a capture of other links than {link.name!r} "
                             f"({link.protocol}); record into another file")
    if ours != link:
        kept = _move_aside(path, existing)
        log.warning("link %s is recorded with other settings than %s says (%s); the "
                    "earlier recording is kept as %s, a new one starts in %s", link.name,
                    path, _differences(ours, link), kept, path)
        return _new(_open_new(path), header)
    next_xid, next_conn = highest_numbers(path, link.name)
    _cut_unfinished_line(path)
    stream = path.open("a", encoding="utf-8")
    log.info("continuing the recording of link %s in %s", link.name, path)
    return Opened(CaptureWriter(stream, existing), next_xid + 1, next_conn + 1)


def _differences(old: LinkInfo, new: LinkInfo) -> str:
    return ", ".join(f"{name} {getattr(old, name)} -> {getattr(new, name)}"
                     for name in ("protocol", "endpoint", "listen", "baudrate", "bytesize",
                                  "parity", "stopbits")
                     if getattr(old, name) != getattr(new, name))


def _move_aside(path: Path, existing: Header) -> Path:
    """Rename the capture at ``path`` to a free name that says when it started."""
    stamp = existing.started.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    stem = path.name.removesuffix(".jsonl").removesuffix(".capture")
    for number in range(1, 1000):
        suffix = "" if number == 1 else f"-{number}"
        aside = path.with_name(f"{stem}.{stamp}{suffix}.capture.jsonl")
        if not aside.exists():
            path.rename(aside)
            return aside
    raise OSError(f"no free name to keep the earlier recording {path} under")


def highest_numbers(path: Path, link: str) -> tuple[int, int]:
    """The highest xid, and the highest conn of ``link``, in the file (0 when none)."""
    xid = conn = 0
    with path.open("rb") as file:
        file.readline()
        for line in file:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a cut-off last line; cut before continuing
            if isinstance(record, dict):
                xid = max(xid, _whole(record.get("xid")))
                if record.get("link") == link:
                    conn = max(conn, _whole(record.get("conn")))
    return xid, conn


def _whole(value: object) -> int:
    return value if type(value) is int else 0


def _cut_unfinished_line(path: Path) -> None:
    """Drop a last line without its newline: a record a power cut interrupted."""
    with path.open("rb+") as file:
        size = file.seek(0, os.SEEK_END)
        if size == 0:
            return
        file.seek(size - 1)
        if file.read(1) == b"\n":
            return
        position = size
        while position > 0:
            chunk_start = max(0, position - 4096)
            file.seek(chunk_start)
            chunk = file.read(position - chunk_start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                file.truncate(chunk_start + newline + 1)
                log.warning("%s: its last record was cut short (a power cut?); dropped it "
                            "before continuing the recording", path)
                return
            position = chunk_start
