"""PyYAML's syntax errors retold in plain words, at the line a technician should edit.

PyYAML reports where its parser gave up, which is often a line after the mistake (an
unclosed quote is "found unexpected end of stream" at the end of the file). Here each known
error is mapped to the line that caused it and a sentence that says what to change.

This module only reads the error's attributes (``problem``, ``context``, marks), so
``yamlsource`` stays the one module that imports ``yaml``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from edge_agent.config.errors import ConfigIssue
from edge_agent.i18n import N_, _


class _Mark(Protocol):
    line: int
    column: int
    index: int


_MISSING_SPACE = re.compile(r"^\s*(?:-\s+)?([A-Za-z_][\w.-]*):([^\s:/].*?)\s*$")
_INDENTATION = N_(
    "this line's indentation does not line up with the lines above: settings of one "
    "mapping, and '- ' items of one list, must start in the same column"
)


def tab_issues(err: Any, text: str, file: str) -> list[ConfigIssue]:
    """Issues for tab characters, if the parser stopped at one; else an empty list.

    Every line with a tab in its indentation is listed, not only the first, so the
    technician can fix them all before running the check again.
    """
    mark = err.problem_mark
    if mark is None or not 0 <= mark.index < len(text) or text[mark.index] != "\t":
        return []
    issues = []
    for number, line in enumerate(text.split("\n"), start=1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            note = _(" (the line looks empty but holds a tab)") if not line.strip() else ""
            message = _("tab character at line {line}: YAML indentation must use spaces").format(
                line=number) + note
            issues.append(ConfigIssue(file, number, "", message))
    if not any(issue.line == mark.line + 1 for issue in issues):
        message = (
            _("tab character at line {line}, column {column}: YAML allows only spaces here; "
              "replace the tab with a space").format(line=mark.line + 1, column=mark.column + 1)
        )
        issues.append(ConfigIssue(file, mark.line + 1, "", message))
    return issues


def describe_syntax_error(err: Any, text: str, file: str) -> ConfigIssue:
    """One issue for a PyYAML ``MarkedYAMLError``: line, column and what to do."""
    lines = text.split("\n")
    mark, plain = _explain(err, lines)
    if mark is None:
        return ConfigIssue(file, None, "", _("YAML syntax error: {detail}").format(detail=plain))
    line, column = _clamp(mark, lines)
    return ConfigIssue(
        file, line, "", _("YAML syntax error at line {line}, column {column}: {detail}").format(
            line=line, column=column, detail=plain)
    )


def _clamp(mark: _Mark, lines: list[str]) -> tuple[int, int]:
    """1-based line and column, pulling an end-of-file mark back onto the last real line."""
    line = mark.line
    column = mark.column
    while line > 0 and (line >= len(lines) or not lines[line].strip()):
        line -= 1
        column = len(lines[line].rstrip()) if line < len(lines) else 0
    return line + 1, column + 1


def _explain(err: Any, lines: list[str]) -> tuple[_Mark | None, str]:
    """The mark to report and the plain-words explanation for one PyYAML error."""
    problem = err.problem or ""
    context = err.context or ""
    problem_mark, context_mark = err.problem_mark, err.context_mark
    for matches, explain in _RULES:
        if matches(problem, context):
            return explain(problem, problem_mark, context_mark, lines)
    detail = f"{problem} ({context})" if context else problem
    return problem_mark or context_mark, detail or str(err)


def _missing_space(lines: list[str], *indexes: int) -> tuple[_Mark, str] | None:
    """'port:502' (no space after ':') on one of the given 0-based lines, explained."""
    for index in indexes:
        line = lines[index] if 0 <= index < len(lines) else ""
        found = _MISSING_SPACE.match(line.split(" #")[0])
        if found:
            key, rest = found.groups()
            mark = _AtLine(index, len(line) - len(line.lstrip()))
            return mark, _("missing space after ':' in '{key}:{rest}'; write '{key}: {rest}'"
                           ).format(key=key, rest=rest)
    return None


def _colon(problem: str, pm: Any, cm: Any, lines: list[str]) -> tuple[_Mark | None, str]:
    """'mapping values are not allowed here': usually 'key:value' or bad indentation."""
    return _missing_space(lines, pm.line - 1, pm.line) or (
        pm,
        _("a ':' is not allowed here; check this line's indentation against the line above, "
          "and put a value that contains ': ' in quotes"),
    )


def _no_colon(problem: str, pm: Any, cm: Any, lines: list[str]) -> tuple[_Mark | None, str]:
    """'could not find expected ':'': a line that is not 'key: value' (or 'key:value')."""
    mark = cm or pm
    return _missing_space(lines, mark.line) or (
        mark,
        _("this line is not a 'key: value' setting (no ':' found); add the ':' or fix the "
          "indentation"),
    )


def _open_quote(problem: str, pm: Any, cm: Any, lines: list[str]) -> tuple[_Mark | None, str]:
    quote = lines[cm.line][cm.column] if cm.column < len(lines[cm.line]) else _("quote")
    return cm, _("the {quote} opened here is never closed; add the closing {quote}").format(
        quote=quote)


def _open_bracket(problem: str, pm: Any, cm: Any, lines: list[str]) -> tuple[_Mark | None, str]:
    opening = lines[cm.line][cm.column] if cm.column < len(lines[cm.line]) else "["
    closing = {"[": "]", "{": "}"}.get(opening, "]")
    return cm, (
        _("the '{opening}' opened here is not closed with '{closing}' (or a ',' between items "
          "is missing)").format(opening=opening, closing=closing)
    )


def _indent(problem: str, pm: Any, cm: Any, lines: list[str]) -> tuple[_Mark | None, str]:
    return pm, _(_INDENTATION)


def _bad_start(problem: str, pm: Any, cm: Any, lines: list[str]) -> tuple[_Mark | None, str]:
    found = re.search(r"found character '(.+?)'", problem)
    char = found.group(1) if found else _("this character")
    return pm, _("a value cannot start with '{char}'; put the whole value in quotes").format(
        char=char)


def _alias(problem: str, pm: Any, cm: Any, lines: list[str]) -> tuple[_Mark | None, str]:
    return cm or pm, (
        _("'*' and '&' at the start of a value have a special meaning in YAML; put the value "
          "in quotes")
    )


def _undefined(problem: str, pm: Any, cm: Any, lines: list[str]) -> tuple[_Mark | None, str]:
    name = problem.rsplit(" ", 1)[-1]
    return pm, (
        _("'*{name}' refers to an anchor '&{name}' that is not defined above; if this is text, "
          "put it in quotes").format(name=name.strip(chr(39)))
    )


def _two_documents(problem: str, pm: Any, cm: Any, lines: list[str]) -> tuple[_Mark | None, str]:
    return pm, _("a second YAML document starts here ('---'); the file must hold exactly one")


@dataclass(frozen=True)
class _AtLine:
    """A mark of our own, for explanations that blame another line than PyYAML did."""

    line: int
    column: int
    index: int = 0


_RULES: tuple = (
    (lambda p, c: "cannot start any token" in p, _bad_start),
    (lambda p, c: "mapping values are not allowed" in p, _colon),
    (lambda p, c: "could not find expected ':'" in p, _no_colon),
    (lambda p, c: "quoted scalar" in c and "end of stream" in p, _open_quote),
    (lambda p, c: "flow sequence" in c or "flow mapping" in c, _open_bracket),
    (lambda p, c: "expected <block end>" in p or "did not find expected" in p, _indent),
    (lambda p, c: "undefined alias" in p, _undefined),
    (lambda p, c: "scanning an alias" in c or "scanning an anchor" in c, _alias),
    (lambda p, c: "single document" in c, _two_documents),
)
