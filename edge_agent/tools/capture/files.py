"""Capture files on disk: read one whole, or write one line by line.

Reading is all or nothing: a capture with one bad line is refused with the file, the line
number and what is wrong (a replay from half a capture would pass or fail for the wrong
reason). A last line cut short, the mark of a recording interrupted by a power loss or a
kill, gets its own message that says how to keep the records before it.

Writing flushes after every line, so whatever stops the recorder loses at most the line it
was writing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

from edge_agent.tools.capture.format import (
    TEXT,
    FormatProblem,
    Frame,
    Header,
    Record,
    header_line,
    parse_header,
    parse_record,
    record_line,
)

T = TypeVar("T")


class CaptureError(Exception):
    """A capture file that cannot be used; says which file and line, and why."""

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


@dataclass(frozen=True)
class Capture:
    """A whole capture file, records in file order."""

    header: Header
    records: tuple[Record, ...]

    def frames(self, link: str | None = None) -> list[Frame]:
        return [r for r in self.records
                if isinstance(r, Frame) and (link is None or r.link == link)]


def read_capture(path: Path) -> Capture:
    """Read and check a whole capture file; CaptureError names the line at fault."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CaptureError(path, None, f"cannot read the capture: {err.strerror}") from err
    if not raw.strip():
        raise CaptureError(path, None, "the file is empty: not a capture")
    lines = raw.split(b"\n")
    cut_short = not raw.endswith(b"\n")
    header = _parse(path, 1, lines[0], parse_header, cut_short
                    and len(lines) == 1)
    records: list[Record] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        last = number == len(lines)
        records.append(_parse(path, number, line, lambda text: parse_record(text, header),
                              cut_short and last))
    return Capture(header, tuple(records))


def _parse(path: Path, number: int, line: bytes, parse: Callable[[str], T],
           maybe_cut: bool) -> T:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise CaptureError(path, number, "not UTF-8 text: is this a capture file?") from None
    try:
        return parse(text)
    except FormatProblem as problem:
        if maybe_cut:
            raise CaptureError(path, number, "the file ends in the middle of this record "
                               "(the recording was interrupted?); delete this last line to "
                               f"use the records before it ({problem})") from None
        raise CaptureError(path, number, str(problem)) from None


class CaptureWriter:
    """Appends records to a capture file as they happen, one flushed line each."""

    def __init__(self, stream: TextIO, header: Header) -> None:
        self._stream = stream
        self.header = header
        self._text_links = _text_links(header)

    @classmethod
    def create(cls, path: Path, header: Header) -> CaptureWriter:
        """A new capture file; refuses to overwrite one that exists."""
        try:
            stream = path.open("x", encoding="utf-8")
        except FileExistsError:
            raise CaptureError(path, None, "the file exists already: choose another name, "
                               "or delete it first") from None
        writer = cls(stream, header)
        writer._line(header_line(header))
        return writer

    @classmethod
    def append_to(cls, path: Path) -> CaptureWriter:
        """Continue an existing capture; new records count time from its header."""
        capture = read_capture(path)
        stream = path.open("a", encoding="utf-8")
        if not path.read_bytes().endswith(b"\n"):
            stream.write("\n")  # a whole last line without its newline: keep it whole
        return cls(stream, capture.header)

    def write(self, records: Iterable[Record]) -> None:
        for record in records:
            self._line(record_line(record, record.link in self._text_links))

    def _line(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()


def write_capture(path: Path, header: Header, records: Iterable[Record]) -> None:
    """A whole capture file at once (imports); replaces ``path`` only when complete."""
    partial = path.with_name(path.name + ".partial")
    text_links = _text_links(header)
    with partial.open("w", encoding="utf-8") as stream:
        stream.write(header_line(header) + "\n")
        for record in records:
            stream.write(record_line(record, record.link in text_links) + "\n")
    partial.replace(path)


def _text_links(header: Header) -> set[str]:
    """Links whose frames get a ``text`` rendering for people."""
    return {link.name for link in header.links if link.protocol == TEXT}
