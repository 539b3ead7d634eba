"""Configuration problems as a technician reads them: file, line, field path, what to change.

The loader collects every problem before giving up, so one run of ``edge-agent check``
lists them all; ``ConfigError`` carries that list. Nothing here knows about YAML.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration file.

    ``line`` is 1-based and None when the problem has no single place (a missing file,
    a missing top-level section). ``path`` is the field path (``devices[1].link``, indexes
    0-based) or empty when the problem is with the file itself. ``message`` says what was
    found and what is expected, in words a field technician can act on.
    """

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.path:
            return visible(f"{where}: {self.path}: {self.message}")
        return visible(f"{where}: {self.message}")


def visible(text: str) -> str:
    """``text`` with every non-printable character (a control character, a lone surrogate
    from a ``\\ud800`` escape) written as an escape: a message quotes what the file
    holds, and must print on any terminal and journal without raising."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else char.encode(
        "unicode_escape", "backslashreplace").decode("ascii") for char in text)


def _line_key(issue: ConfigIssue) -> tuple[int, int]:
    """Sort key: file-level issues (no line) first, then by line; ties keep their order."""
    return (0, 0) if issue.line is None else (1, issue.line)


class ConfigError(Exception):
    """The configuration is not usable; ``issues`` lists every problem found, by line.

    Raised once per load, after all checks ran. ``str()`` is the text ``edge-agent check``
    prints: one issue per line.
    """

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        # A profile shared by several devices is checked once per device: same issue.
        unique = list(dict.fromkeys(issues))
        files = list(dict.fromkeys(issue.file for issue in unique))
        self.issues: list[ConfigIssue] = sorted(
            unique, key=lambda issue: (files.index(issue.file), *_line_key(issue)))
        super().__init__(self.issues)  # args must rebuild the error when unpickled

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)
