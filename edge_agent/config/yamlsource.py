"""Reading YAML for the configuration: the only module in the project that imports ``yaml``.

A file's bytes become a tree of located nodes (``MapNode``, ``SeqNode``, ``ScalarNode``),
each knowing its 1-based line, so the validator can say where a value is wrong. Every way a
file can be unreadable (encoding, syntax, tabs, duplicate keys) becomes a ``ConfigIssue``
in plain words, never a traceback.

Scalars are resolved with the YAML 1.2 core schema, not PyYAML's YAML 1.1 one: only
``true``/``false`` are booleans (``no``, ``off``, ``yes`` stay text: ``country: NO`` is
not False), ``0123`` is the integer 123 (not octal), ``12:30`` is text (not 750), and
``1e3`` is a number. Each scalar also keeps its source text and whether it was quoted, so
a text field can take ``id: 0042`` as ``"0042"`` and a number field can tell the
technician that ``"502"`` in quotes is text.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePath

import yaml

from edge_agent.config.errors import ConfigIssue
from edge_agent.config.limits import MAX_DEPTH, MAX_FILE_BYTES, size_text
from edge_agent.config.yamlsyntax import describe_syntax_error, tab_issues
from edge_agent.i18n import N_, _

Value = str | int | float | bool | None

_TAG = "tag:yaml.org,2002:"
_BOM_UTF8 = b"\xef\xbb\xbf"
_UTF16_MESSAGE = N_(
    "the file is saved as UTF-16 ('Unicode' in Notepad); save it as UTF-8 "
    "(Notepad: File > Save As > Encoding: UTF-8)"
)
_MAX_ENCODING_LINES = 10


@dataclass(frozen=True, eq=False)
class ScalarNode:
    """A single value. ``value`` is resolved (YAML 1.2 core); ``text`` is as written."""

    line: int
    column: int
    value: Value
    text: str
    plain: bool


@dataclass(frozen=True, eq=False)
class SeqNode:
    """A list (``- item`` lines or ``[a, b]``)."""

    line: int
    column: int
    items: tuple[Node, ...]


@dataclass(frozen=True, eq=False)
class Entry:
    """One ``key: value`` of a mapping; ``line`` is the key's line."""

    key: str
    line: int
    value: Node


@dataclass(frozen=True, eq=False)
class MapNode:
    """A mapping. Keys are kept as written, so ``on:`` is the key "on", not True."""

    line: int
    column: int
    entries: tuple[Entry, ...]

    def get(self, key: str) -> Entry | None:
        """The entry for ``key`` (the last one if the key was, wrongly, given twice)."""
        found = None
        for entry in self.entries:
            if entry.key == key:
                found = entry
        return found


Node = ScalarNode | SeqNode | MapNode


@dataclass(frozen=True)
class YamlDocument:
    """What reading a file produced: the root mapping (None if unusable) and the issues.

    Issues do not always mean ``root`` is None: a duplicate key is reported, and the rest
    of the file is still validated so the technician sees every problem in one run.
    """

    root: MapNode | None
    issues: tuple[ConfigIssue, ...]


class _CoreLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema implicit types instead of YAML 1.1's."""

    yaml_implicit_resolvers: dict = {}  # PyYAML's class-level registry, emptied for ours


_NUMBER_START = list("-+0123456789.")
for _tag, _pattern, _first in (
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("int", r"^(?:[-+]?[0-9](?:_?[0-9])*|0o[0-7]+|0x[0-9a-fA-F]+)$", _NUMBER_START),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        _NUMBER_START,
    ),
):
    _CoreLoader.add_implicit_resolver(_TAG + _tag, re.compile(_pattern), _first)


def _libyaml_loader() -> type | None:
    """libyaml's loader with our resolvers (YAML 1.2 core), or None if PyYAML was built
    without libyaml: then the pure-Python loader reads every file."""
    if not getattr(yaml, "__with_libyaml__", False):
        return None

    class _CCoreLoader(yaml.CSafeLoader):
        yaml_implicit_resolvers = _CoreLoader.yaml_implicit_resolvers

    return _CCoreLoader


_CCoreLoader = _libyaml_loader()


def read_yaml_file(path: Path, file: str) -> YamlDocument:
    """Read and parse ``path``; ``file`` is how issues name it (the path as the user gave it).

    At most ``MAX_FILE_BYTES`` are read: a larger file is refused before parsing, so a
    generated or wrong file (a log, a database) fails ``check`` at once, in bounded memory.
    """
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
            size = os.fstat(stream.fileno()).st_size
    except FileNotFoundError:
        message = _("file not found; check the path and the file name")
    except IsADirectoryError:
        message = _("this is a directory, not a configuration file")
    except PermissionError:
        message = _("permission denied: this user may not read the file (check its owner and "
                    "mode)")
    except OSError as err:
        message = _("cannot read the file: {error}").format(error=err.strerror or err)
    else:
        if len(data) <= MAX_FILE_BYTES:
            return parse_yaml_bytes(data, file)
        shown = _("{size}, more").format(size=size_text(size)) if size > MAX_FILE_BYTES \
            else _("more")  # /dev/zero
        message = _("the file is {size} than the {limit} (1 MiB) a configuration file may "
                    "have; is it the right file?").format(size=shown,
                                                          limit=size_text(MAX_FILE_BYTES))
    return YamlDocument(None, (ConfigIssue(file, None, "", message),))


def parse_yaml_bytes(data: bytes, file: str) -> YamlDocument:
    """Decode (UTF-8, optional BOM) and parse one YAML document whose top level is a mapping."""
    text, issues = _decode(data, file)
    if text is None:
        return YamlDocument(None, tuple(issues))
    try:
        raw = _compose(text)
    except _TooDeep as err:
        line = err.mark.line + 1
        message = _("the settings are nested more than {depth} levels deep here; a station "
                    "file needs far fewer: check the indentation and brackets").format(
                        depth=MAX_DEPTH)
        return YamlDocument(None, (ConfigIssue(file, line, "", message),))
    except yaml.MarkedYAMLError as err:
        found = tab_issues(err, text, file) or [describe_syntax_error(err, text, file)]
        return YamlDocument(None, tuple(found))
    except yaml.reader.ReaderError as err:
        return YamlDocument(None, (_reader_issue(err, text, file),))
    if raw is None:
        message = _("the file is empty or contains only comments (expected 'key: value' "
                    "settings)")
        return YamlDocument(None, (ConfigIssue(file, None, "", message),))
    converter = _Converter(file)
    root = converter.convert(raw, "")
    if not isinstance(root, MapNode):
        message = _("the top level must be 'key: value' settings (a mapping), found {found}"
                    ).format(found=kind(root))
        converter.issues.append(ConfigIssue(file, root.line, "", message))
        return YamlDocument(None, tuple(converter.issues))
    return YamlDocument(root, tuple(converter.issues))


class _TooDeep(Exception):
    """Nesting beyond ``MAX_DEPTH``; ``mark`` is where the level that is too deep starts."""

    def __init__(self, mark: yaml.Mark) -> None:
        super().__init__(mark)
        self.mark = mark


class _BoundedLoader(_CoreLoader):
    """Refuses nesting deeper than ``MAX_DEPTH`` while composing.

    PyYAML's composer recurses once per level: a 500-deep file raised RecursionError,
    which escaped ``check`` as a traceback and a reload as a crash of the agent.
    """

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


def _compose(text: str) -> yaml.Node | None:
    """The node tree of ``text``, from libyaml when PyYAML has it.

    libyaml's tree is smaller (1.9 against 3.4 MiB for the 64 KB W1 station), and what
    the load leaves behind in memory shrinks with it (issue 11, docs/performance.md).
    Anything but a clean, shallow file is parsed again by the pure-Python loader, so
    every syntax and depth message stays the one it gives (tests/config_cases).
    """
    if _CCoreLoader is not None:
        loader = _CCoreLoader(text)
        try:
            root = loader.get_single_node()
        except yaml.YAMLError:
            root = None  # re-parsed below for the pure-Python message
        else:
            if root is None or _within_depth(root, 1, {}):
                return root  # type: ignore[no-any-return]
        finally:
            loader.dispose()
    return _compose_pure(text)


def _compose_pure(text: str) -> yaml.Node | None:
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_node()  # type: ignore[no-any-return]
    finally:
        loader.dispose()


def _within_depth(node: yaml.Node, depth: int, seen: dict[int, int]) -> bool:
    """True if no node of the tree is deeper than ``MAX_DEPTH`` (root: depth 1), counted as
    ``_BoundedLoader`` counts. A node shared through aliases is checked again only when
    reached deeper than before (no blow-up on nested aliases); an alias that contains
    itself, or one that nests deeper than its events do, answers False, and the
    pure-Python loader decides. Recursion is bounded by ``MAX_DEPTH``."""
    if depth > MAX_DEPTH:
        return False
    if seen.get(id(node), MAX_DEPTH + 1) <= depth:
        return True
    seen[id(node)] = depth
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = node.value
    else:
        return True
    return all(_within_depth(child, depth + 1, seen) for child in children)


def kind(node: Node) -> str:
    """How a technician would describe what they wrote, for 'found ...' messages."""
    if isinstance(node, MapNode):
        return _("a mapping ('key: value' lines)")
    if isinstance(node, SeqNode):
        return _("a list ('- ' items)")
    if node.value is None:
        return _("nothing (empty value)")
    if isinstance(node.value, bool):
        return "true" if node.value else "false"
    if isinstance(node.value, int | float):
        return node.text
    return repr(node.value)


def _decode(data: bytes, file: str) -> tuple[str | None, list[ConfigIssue]]:
    """UTF-8 text of ``data``, accepting a BOM (Windows Notepad writes one) and nothing else."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or _looks_utf16(data):
        return None, [ConfigIssue(file, None, "", _(_UTF16_MESSAGE))]
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        message = _("the file contains NUL bytes: it is not a text file (or it is damaged)")
        return None, [ConfigIssue(file, line, "", message)]
    if data.startswith(_BOM_UTF8):
        data = data[len(_BOM_UTF8) :]
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError:
        return None, _encoding_issues(data, file)


def _looks_utf16(data: bytes) -> bool:
    """UTF-16 without a BOM: ASCII text with a NUL byte beside almost every character."""
    sample = data[:400]
    if len(sample) < 4:
        return False
    zeros = max(sample[0::2].count(0), sample[1::2].count(0))
    return zeros >= len(sample) // 2 * 0.7


def _encoding_issues(data: bytes, file: str) -> list[ConfigIssue]:
    """One issue per line holding non-UTF-8 bytes, naming the first bad byte of the line."""
    issues: list[ConfigIssue] = []
    bad_lines = 0
    for number, raw_line in enumerate(data.split(b"\n"), start=1):
        try:
            raw_line.decode("utf-8")
        except UnicodeDecodeError as err:
            bad_lines += 1
            if bad_lines > _MAX_ENCODING_LINES:
                continue
            message = (
                _("byte 0x{byte:02X} is not UTF-8 text: the file was saved in another encoding "
                  "(e.g. GBK or Latin-1); save the file as UTF-8").format(
                      byte=raw_line[err.start])
            )
            issues.append(ConfigIssue(file, number, "", message))
    if bad_lines > _MAX_ENCODING_LINES:
        more = bad_lines - _MAX_ENCODING_LINES
        issues.append(ConfigIssue(file, None, "", _("{count} more lines have non-UTF-8 bytes")
                                  .format(count=more)))
    return issues


def _reader_issue(err: yaml.reader.ReaderError, text: str, file: str) -> ConfigIssue:
    """A control character YAML refuses (e.g. pasted from a PDF or a terminal)."""
    position = err.position if isinstance(err.position, int) else 0
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    message = (
        _("invisible control character U+{code:04X} at column {column} is not allowed in a "
          "YAML file; delete it (retype the line if you cannot see it)").format(
              code=err.character, column=column)
    )
    return ConfigIssue(file, line, "", message)


class _Converter:
    """Turns PyYAML's composed nodes into ours, reporting what PyYAML lets through.

    PyYAML's composer accepts duplicate keys and unknown tags; a configuration must not.
    Aliases (``*name``) share one converted node; an alias that contains itself is refused.
    """

    def __init__(self, file: str) -> None:
        self.file = file
        self.issues: list[ConfigIssue] = []
        self._done: dict[int, Node] = {}
        self._active: set[int] = set()

    def convert(self, node: yaml.Node, path: str) -> Node:
        """Our node for ``node``; ``path`` is the field path used in issues."""
        if id(node) in self._done:
            return self._done[id(node)]
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        if id(node) in self._active:
            self._report(line, path, _("this alias ('*name') refers to itself; remove the loop"))
            return ScalarNode(line, column, None, "", True)
        if len(self._active) >= MAX_DEPTH:  # aliases nest what each anchor nests
            self._report(line, path, _("aliases ('*name') here nest the settings more than "
                                       "{depth} levels deep; write the settings out instead")
                         .format(depth=MAX_DEPTH))
            return ScalarNode(line, column, None, "", True)
        self._active.add(id(node))
        if isinstance(node, yaml.MappingNode):
            result: Node = self._mapping(node, path, line, column)
        elif isinstance(node, yaml.SequenceNode):
            self._check_tag(node, "seq", line, path)
            items = tuple(self.convert(item, f"{path}[{i}]") for i, item in enumerate(node.value))
            result = SeqNode(line, column, items)
        else:
            result = self._scalar(node, path, line, column)
        self._active.discard(id(node))
        self._done[id(node)] = result
        return result

    def _mapping(self, node: yaml.MappingNode, path: str, line: int, column: int) -> MapNode:
        self._check_tag(node, "map", line, path)
        entries: list[Entry] = []
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self._report(key_line, path,
                             _("a key must be a plain name, not a list or mapping"))
                continue
            key = key_node.value
            key_path = f"{path}.{key}" if path else key
            if key == "<<" and not key_node.style:
                message = _("merge keys ('<<') are not supported; write the settings out in full")
                self._report(key_line, key_path, message)
                continue
            if key in first_line:
                message = _("duplicate key '{key}' (first at line {line}); keep only one").format(
                    key=key, line=first_line[key])
                if first_line[key] == key_line:
                    message = _("duplicate key '{key}' (twice on this line); keep only one"
                                ).format(key=key)
                self._report(key_line, key_path, message)
            first_line.setdefault(key, key_line)
            entries.append(Entry(key, key_line, self.convert(value_node, key_path)))
        return MapNode(line, column, tuple(entries))

    def _scalar(self, node: yaml.ScalarNode, path: str, line: int, column: int) -> ScalarNode:
        text, tag = node.value, node.tag
        plain = not node.style  # None from PyYAML's parser, "" from libyaml's
        try:
            value = _construct(tag, text)
        except ValueError:
            name = _tag_name(tag)
            self._report(line, path, f"'{text}' is not a valid {name[2:]} (it is tagged '{name}')")
            value = text
        except KeyError:
            message = f"YAML tag '{_tag_name(tag)}' is not supported here; remove it"
            self._report(line, path, message)
            value = text
        return ScalarNode(line, column, value, text, plain)

    def _check_tag(self, node: yaml.Node, expected: str, line: int, path: str) -> None:
        if node.tag != _TAG + expected:
            message = f"YAML tag '{_tag_name(node.tag)}' is not supported here; remove it"
            self._report(line, path, message)

    def _report(self, line: int, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(self.file, line, path, message))


def _tag_name(tag: str) -> str:
    """A tag as written in the file: ``!!binary`` rather than ``tag:yaml.org,2002:binary``."""
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _construct(tag: str, text: str) -> Value:
    """The value of a scalar by its (implicit or explicit) tag; KeyError for unknown tags."""
    name = tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag
    if name == "str":
        # Interned: the same names and units repeat on every device (W1: 500 channels,
        # 25 names, one unit), and the running agent keeps them in its config objects
        # for months; one copy of each (issue 11, RSS).
        return sys.intern(text)
    if name == "null":
        if text not in ("", "~", "null", "Null", "NULL"):
            raise ValueError(text)
        return None
    if name == "bool":
        if text.lower() not in ("true", "false"):
            raise ValueError(text)
        return text.lower() == "true"
    if name == "int":
        cleaned = text.replace("_", "")
        return int(cleaned, 0) if cleaned[:2].lower() in ("0o", "0x") else int(cleaned)
    if name == "float":
        return float(text.replace("_", "").lower().replace(".inf", "inf").replace(".nan", "nan"))
    raise KeyError(tag)


class _Dumper(yaml.SafeDumper):
    """SafeDumper that also writes enums, paths and tuples as plain YAML."""


_Dumper.add_multi_representer(Enum, lambda d, v: d.represent_data(v.value))
_Dumper.add_multi_representer(PurePath, lambda d, v: d.represent_str(str(v)))
_Dumper.add_representer(tuple, lambda d, v: d.represent_list(list(v)))


def dump_yaml(data: object) -> str:
    """YAML text for plain data (dicts keep their order); for modules that write YAML.

    Strings that YAML 1.1 readers would take for booleans or numbers (``no``, ``0123``)
    are quoted, so any YAML reader reads back what was written.
    """
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
