"""Reading typed settings out of located YAML nodes, reporting every mismatch in one style.

Every getter either returns a value or records a ``ConfigIssue`` ("expected ..., found
...") and returns None, so validation carries on and the technician gets all problems in
one run. The loader raises only at the end, when any issue was recorded, so a None
returned after an issue never reaches a typed config object.

Rules shared by every section (and documented in docs/configuration.md):
- booleans are never numbers; an integer is accepted where a number is expected;
- a value in quotes is text, even if it looks like a number;
- an empty value (or ``null``) is accepted only where the default is "not set";
- choices are case-insensitive.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Final, TypeVar

from edge_agent.config.errors import ConfigIssue
from edge_agent.config.yamlsource import MapNode, Node, ScalarNode, kind
from edge_agent.i18n import _

T = TypeVar("T")


class _Required:
    """Marker default: the setting must be given."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()


class Mismatch(ValueError):
    """A value of the wrong type or range; ``hint`` is appended to the message."""

    def __init__(self, hint: str = "") -> None:
        super().__init__(hint)
        self.hint = hint


class Checker:
    """Collects the issues of one configuration file."""

    def __init__(self, file: str, issues: Iterable[ConfigIssue] = ()) -> None:
        self.file = file
        self.issues: list[ConfigIssue] = list(issues)
        self.warnings: list[ConfigIssue] = []  # settings that work but weaken the station

    def report(self, line: int | None, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(self.file, line, path, message))

    def warn(self, line: int | None, path: str, message: str) -> None:
        """Note a risky but valid setting: printed by ``check``, logged by ``run``."""
        self.warnings.append(ConfigIssue(self.file, line, path, message))


def join(path: str, key: str) -> str:
    """Field path of ``key`` inside ``path``: ``mqtt`` + ``port`` -> ``mqtt.port``."""
    return f"{path}.{key}" if path else key


def found(node: Node) -> str:
    """What the technician wrote, for 'found ...', with a hint for quoted numbers."""
    text = kind(node)
    if isinstance(node, ScalarNode) and not node.plain and _is_number(node.text):
        return _("{value} (in quotes, so it is text: remove the quotes)").format(value=text)
    return text


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a close match of a misspelt name, else ''. Every
    choice as close as the closest is offered: a swapped pair in a word order (CDBA)
    is as near to CDAB as to DCBA, and picking one would be a guess."""
    lowered = {choice.lower(): choice for choice in choices}
    scores = {choice: _similarity(word.lower(), low) for low, choice in lowered.items()}
    best = max(scores.values(), default=0.0)
    if best < 0.6:
        return ""
    return did_you_mean(tuple(choice for choice, score in scores.items() if score == best))


def did_you_mean(words: Iterable[str]) -> str:
    """`` (did you mean 'a' or 'b'?)``: the hint appended to a message."""
    quoted = [f"'{word}'" for word in words]
    return _(" (did you mean {choices}?)").format(choices=one_of(quoted))


def _similarity(word: str, choice: str) -> float:
    # as difflib.get_close_matches rates them. Imported here, not at the top: a valid
    # station needs no suggestion, and a running agent would keep difflib loaded for
    # nothing (issue 11, RSS; docs/performance.md, Memory).
    import difflib

    return difflib.SequenceMatcher(None, word, choice).ratio()


def one_of(names: Iterable[str]) -> str:
    """'a, b or c' for messages listing allowed values."""
    items = list(names)
    if len(items) == 1:
        return items[0]
    return _("{items} or {last}").format(items=_(", ").join(items[:-1]), last=items[-1])


def describe_range(noun: str, lo: float | None, hi: float | None, above: bool = False) -> str:
    """'an integer 1..65535', 'a number > 0', 'an integer >= 0' for messages."""
    if above:
        return f"{noun} > {_plain(lo)}"
    if lo is not None and hi is not None:
        return f"{noun} {_plain(lo)}..{_plain(hi)}"
    if lo is not None:
        return f"{noun} >= {_plain(lo)}"
    return noun if hi is None else f"{noun} <= {_plain(hi)}"


def _plain(number: float | None) -> str:
    """A bound as a technician writes it: 268435455, not 2.68435e+08; 0.5, not 0.500."""
    if number is None:
        return ""
    return str(int(number)) if float(number).is_integer() else repr(float(number))


class Section:
    """One YAML mapping read setting by setting; unknown keys are reported on creation.

    ``line`` is where a missing key is reported: the line of the key that holds this
    mapping (``mqtt:``), or the ``- `` line of a list item. ``hints`` replace the
    'unknown setting' message for keys that are known to be wrong here (e.g. a plain
    ``password``, or a serial setting on a TCP link).
    """

    def __init__(
        self,
        ck: Checker,
        node: MapNode,
        path: str,
        line: int | None,
        allowed: Iterable[str],
        hints: Mapping[str, str] | None = None,
    ) -> None:
        self.ck, self.node, self.path, self.line = ck, node, path, line
        self.allowed = tuple(allowed)
        self._suggested: set[str] = set()
        self._check_keys(hints or {})

    def _check_keys(self, hints: Mapping[str, str]) -> None:
        for entry in self.node.entries:
            if entry.key in self.allowed:
                continue
            if entry.key in hints:
                message = hints[entry.key]
            else:
                near = suggest(entry.key, self.allowed)
                listing = "" if near else _("; known settings here: {keys}").format(
                    keys=", ".join(self.allowed))
                message = _("unknown setting{hint}").format(hint=near + listing)
                if near:
                    self._suggested.add(near.split("'")[1])  # the hint quotes it, any language
            self.ck.report(entry.line, join(self.path, entry.key), message)

    def has(self, key: str) -> bool:
        return self.node.get(key) is not None

    def path_of(self, key: str) -> str:
        return join(self.path, key)

    def line_of(self, key: str) -> int | None:
        """The key's line, or this section's line when the key is absent."""
        entry = self.node.get(key)
        return self.line if entry is None else entry.line

    def value_line(self, key: str) -> int | None:
        """The value's line (where a wrong value is reported), or the section's line."""
        entry = self.node.get(key)
        return self.line if entry is None else entry.value.line

    def report(self, key: str, message: str, *, at_key: bool = False) -> None:
        """Record an issue about ``key`` at its value's line (or the key's line)."""
        line = self.line_of(key) if at_key else self.value_line(key)
        self.ck.report(line, self.path_of(key), message)

    def warn(self, key: str, message: str) -> None:
        """A warning about ``key``, at its value's line (see ``Checker.warn``)."""
        self.ck.warn(self.value_line(key), self.path_of(key), message)

    def missing(self, key: str, expected: str) -> None:
        """Report a required ``key`` as missing, unless a misspelling of it was reported.

        'intervall_s: unknown setting (did you mean 'interval_s'?)' already tells the
        technician what to fix; 'interval_s is missing' on top would be noise.
        """
        if key in self._suggested:
            return
        self.ck.report(self.line, self.path_of(key),
                       _("required setting is missing ({expected})").format(expected=expected))

    def get(
        self, key: str, default: object, expected: str, convert: Callable[[ScalarNode], T]
    ) -> T | None:
        """The converted value of ``key``; ``default`` when absent (or REQUIRED)."""
        entry = self.node.get(key)
        if entry is None:
            if default is REQUIRED:
                self.missing(key, _("expected {expected}").format(expected=expected))
                return None
            return default  # type: ignore[return-value]
        node = entry.value
        if isinstance(node, ScalarNode) and node.value is None and default is None:
            return None
        try:
            if not isinstance(node, ScalarNode):
                raise Mismatch()
            return convert(node)
        except Mismatch as err:
            self.report(key, _("expected {expected}, found {found}").format(
                expected=expected, found=found(node)) + err.hint)
            return None

    def text(
        self, key: str, default: object = REQUIRED, *, empty_ok: bool = False, what: str = "text"
    ) -> str | None:
        """Text; a plain number is taken as written (``id: 0042`` is "0042").

        ``what`` names the expected text in messages ("a host name or IP address"),
        already translated; the default, "text", is translated here.
        """
        what = _("text") if what == "text" else what
        return self.get(key, default, what, lambda node: _text(node, empty_ok))

    def integer(
        self, key: str, default: object = REQUIRED, lo: int | None = None, hi: int | None = None,
        expected: str | None = None,
    ) -> int | None:
        """An integer in lo..hi; ``expected`` overrides the range shown in messages."""
        expected = expected or describe_range(_("an integer"), lo, hi)
        return self.get(key, default, expected, lambda node: _integer(node, lo, hi))

    def number(
        self,
        key: str,
        default: object = REQUIRED,
        lo: float | None = None,
        hi: float | None = None,
        *,
        above: bool = False,
    ) -> float | None:
        """A finite number; ``above`` makes ``lo`` exclusive (``> 0``)."""
        expected = describe_range(_("a number"), lo, hi, above)
        return self.get(key, default, expected, lambda node: _number(node, lo, hi, above))

    def flag(self, key: str, default: object = REQUIRED) -> bool | None:
        return self.get(key, default, _("true or false"), _flag)

    def choice(
        self, key: str, options: Mapping[str, T], default: object = REQUIRED, shown: str = "",
        hints: Mapping[str, tuple[str, ...]] | None = None,
    ) -> T | None:
        """One of ``options`` (keys matched case-insensitively, as written for numbers).
        ``hints``: other words for the same thing (lower case, e.g. a manual's ``real``),
        refused with the option(s) they may mean, never taken as a guess."""
        names = {name.lower(): value for name, value in options.items()}
        shown = shown or one_of(options)

        def convert(node: ScalarNode) -> T:
            if isinstance(node.value, bool) or node.text.lower() not in names:
                if hints and node.text.lower() in hints:
                    raise Mismatch(did_you_mean(hints[node.text.lower()]))
                raise Mismatch(suggest(node.text, options) if node.text else "")
            return names[node.text.lower()]

        return self.get(key, default, shown, convert)

    def section(
        self, key: str, allowed: Iterable[str], hints: Mapping[str, str] | None = None
    ) -> Section | None:
        """The mapping under ``key``; None if absent, empty, or not a mapping (reported)."""
        entry = self.node.get(key)
        if entry is None or (isinstance(entry.value, ScalarNode) and entry.value.value is None):
            return None
        return as_section(self.ck, entry.value, self.path_of(key), entry.line, allowed, hints)


def as_section(
    ck: Checker,
    node: Node,
    path: str,
    line: int | None,
    allowed: Iterable[str],
    hints: Mapping[str, str] | None = None,
) -> Section | None:
    """A Section for ``node`` if it is a mapping; otherwise report what was found."""
    if isinstance(node, MapNode):
        return Section(ck, node, path, line, allowed, hints)
    ck.report(node.line, path,
              _("expected 'key: value' settings, found {found}").format(found=found(node)))
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _text(node: ScalarNode, empty_ok: bool) -> str:
    if isinstance(node.value, bool) or node.value is None:
        if node.value is None and empty_ok:
            return ""
        word = "" if node.value is None else _(' (write "{word}" in quotes for the word)').format(
            word=node.text)
        raise Mismatch(word)
    text = node.value if isinstance(node.value, str) else node.text
    if not text.strip() and not empty_ok:
        raise Mismatch(_(" (empty text)"))
    if any(0xD800 <= ord(char) <= 0xDFFF for char in text):
        raise Mismatch(_(" (it holds a lone surrogate escape such as \\ud800, which is not a "
                         "character and cannot be sent or stored; retype the value)"))
    return text


def _integer(node: ScalarNode, lo: int | None, hi: int | None) -> int:
    """An integer; a plain whole float (``1e6``) counts, a quoted number does not."""
    value = node.value
    if isinstance(value, float) and value.is_integer() and node.plain:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Mismatch()
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise Mismatch()
    return value


def _number(node: ScalarNode, lo: float | None, hi: float | None, above: bool) -> float:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Mismatch()
    too_low = lo is not None and (value <= lo if above else value < lo)
    if too_low or (hi is not None and value > hi):
        raise Mismatch()
    return float(value)


def _flag(node: ScalarNode) -> bool:
    if not isinstance(node.value, bool):
        raise Mismatch()
    return node.value


def read_path(sec: Section, key: str, base: Path, default: object = None) -> Path | None:
    """A file path setting; relative paths are taken relative to ``base``.

    ``~`` is refused rather than expanded: under systemd the service user's home is
    rarely what the technician had in mind.
    """
    text = sec.text(key, default)
    if text is None:
        return None
    if text.startswith("~"):
        sec.report(key, _("'~' is not expanded here; write the full path instead of '{path}'")
                   .format(path=text))
        return None
    if "\x00" in text:
        sec.report(key, _("a path cannot contain a NUL character; retype the path"))
        return None
    return base / text
