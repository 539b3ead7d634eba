"""Each setting of the station file declared once, on its dataclass field.

A field made with ``setting(...)`` carries its YAML key(s), its kind, its range (from
config/limits.py), its choices and the hint shown in messages; its default is the
dataclass default and nowhere else. The section readers take allowed keys, defaults and
ranges from here (``allowed_keys``, ``read_declared``), and the JSON Schema of the station
file is generated from the same declarations (config/jsonschema.py). Only rules that tie
several fields together stay hand-written in the readers.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, dataclass
from typing import Any

from edge_agent.config.fields import REQUIRED, Section, describe_range, one_of
from edge_agent.i18n import _

_META = "edge_agent.setting"

# What a setting holds; config/jsonschema.py maps each kind to a JSON Schema type.
# "bytes": text with escapes such as <STX> or \x02, turned into bytes by the driver
# kind's own reader (the escapes belong to the kind).
# "custom": a value with its own reader (a list, a mapping); declared for its key, hint
# and default, the schema knows the key only.
# "inline": a dataclass whose settings are written at this field's level, not under a
# key of their own (a text block's record settings: ``of`` names the dataclass).
KINDS = ("integer", "number", "flag", "text", "choice", "path", "secret", "section",
         "limit", "bytes", "custom", "inline")


@dataclass(frozen=True)
class Setting:
    """How one field is written in the station file.

    ``keys``: the YAML key(s); a secret is written as one of two keys (password_env or
    password_file). ``lo``/``hi``: inclusive range (``above``: ``lo`` exclusive).
    ``choices``: accepted words (case-insensitive) and the value each gives. ``hint``:
    what is expected, as messages say it, when the range text is not enough. ``null_ok``:
    null is accepted as "not set" (the reader then applies the default). ``layered``: a
    device's profile may give it. ``other_words``: what manuals call a choice (``real``
    for float32), answered "did you mean 'float32'?" rather than accepted, because the
    same word means different widths in different manuals.
    """

    keys: tuple[str, ...]
    kind: str
    lo: float | None = None
    hi: float | None = None
    above: bool = False
    choices: Mapping[str, object] | None = None
    hint: str = ""
    null_ok: bool = False  # null is taken as "not set" although the default is not None
    of: type | None = None  # kind "inline": the dataclass whose keys are written here
    layered: bool = False  # a profile may give it; the station's device overrides it
    # a choice's other names (a manual's words), refused with what they may mean
    other_words: Mapping[str, tuple[str, ...]] | None = None

    @property
    def key(self) -> str:
        return self.keys[0]

    def expected(self) -> str:
        """'an integer 1..65535', or the hint: the 'expected ...' part of messages."""
        if self.hint:  # extracted for translation by scripts/translations (declared_hints)
            return _(self.hint)
        if self.kind == "integer":
            return describe_range(_("an integer"), self.lo, self.hi)
        if self.kind == "number":
            return describe_range(_("a number"), self.lo, self.hi, self.above)
        if self.kind == "choice" and self.choices:
            return one_of(self.choices)
        if self.kind == "flag":
            return _("true or false")
        if self.kind == "path":
            return _("a file path")
        if self.kind == "bytes":
            return _("text (<CR>, <STX>, \\r, \\x02 escapes)")
        return _("text")


def setting(
    kind: str,
    default: Any = MISSING,
    *,
    key: str | tuple[str, ...] | None = None,
    range: tuple[float | None, float | None] | None = None,  # noqa: A002 - reads as the docs say it
    above: bool = False,
    choices: Mapping[str, object] | None = None,
    hint: str = "",
    default_factory: Any = MISSING,
    null_ok: bool = False,
    of: type | None = None,
    layered: bool = False,
    other_words: Mapping[str, tuple[str, ...]] | None = None,
    kw_only: bool = False,
) -> Any:
    """A dataclass field declared as a station-file setting (see ``Setting``); the key
    defaults to the field's name (filled in by ``declared``). ``kw_only``: a default
    that stands before required fields (the keys keep the fields' order)."""
    if kind not in KINDS:
        raise ValueError(f"unknown setting kind {kind!r}")
    if (kind == "inline") != (of is not None):
        raise ValueError("an inline setting, and only one, names its dataclass (of=...)")
    keys = (key,) if isinstance(key, str) else tuple(key or ())
    lo, hi = range if range is not None else (None, None)
    meta = Setting(keys, kind, lo, hi, above, choices, hint, null_ok, of, layered,
                   other_words)
    # kw_only=False would override a class's own kw_only=True: pass it only when asked
    extra: dict[str, Any] = {"kw_only": True} if kw_only else {}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={_META: meta},
                                 **extra)
    return dataclasses.field(default=default, metadata={_META: meta}, **extra)


def declared(cls: type) -> dict[str, Setting]:
    """Field name -> its declaration, in field order (undeclared fields left out)."""
    found: dict[str, Setting] = {}
    for item in dataclasses.fields(cls):
        meta = item.metadata.get(_META)
        if meta is not None and meta.kind == "inline":
            found[item.name] = dataclasses.replace(meta, keys=allowed_keys(meta.of))
        elif meta is not None:
            found[item.name] = meta if meta.keys else dataclasses.replace(meta, keys=(item.name,))
    return found


def allowed_keys(cls: type) -> tuple[str, ...]:
    """Every YAML key of the section ``cls`` is read from, in the documented order (an
    inline field's keys where the field stands)."""
    return tuple(key for meta in declared(cls).values() for key in meta.keys)


def section_type(cls: type, name: str) -> type | None:
    """The declared dataclass field ``name`` of ``cls`` holds, found in its type hint
    (``Trigger | None`` -> Trigger, ``tuple[Channel, ...]`` -> Channel); None when it
    holds none."""
    found = _declared_in(_field_hint(cls, name))
    return next(found, None)


def _field_hint(cls: type, name: str) -> Any:
    """The type hint of ``cls``'s field ``name``, evaluated alone, as
    ``typing.get_type_hints`` evaluates each: that evaluates every field's hint, and a
    hint may name a class imported only for type checking (schema.Device's ``settings``:
    TextSettings loads with the first serial-text device, issue 11)."""
    for owner in cls.__mro__:
        hint = owner.__dict__.get("__annotations__", {}).get(name)
        if isinstance(hint, str):  # ``from __future__ import annotations``
            return eval(hint, vars(sys.modules[owner.__module__]), dict(vars(owner)))
        if hint is not None:
            return hint
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def _declared_in(hint: Any) -> Iterator[type]:
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if declared(hint):
            yield hint
        return
    for argument in typing.get_args(hint):
        yield from _declared_in(argument)


def sections(*roots: type) -> tuple[type, ...]:
    """``roots`` and every declared dataclass reachable from them through their
    declared fields (a section, a list of items, an inline part), each once, in the
    order met: what the readers, the JSON Schema and the tests walk."""
    seen: dict[type, None] = {}

    def visit(cls: type) -> None:
        if cls in seen:
            return
        seen[cls] = None
        for name in declared(cls):
            inner = section_type(cls, name)
            if inner is not None:
                visit(inner)

    for root in roots:
        visit(root)
    return tuple(seen)


def layered_keys(cls: type) -> tuple[str, ...]:
    """The keys of ``cls`` that a profile may give too (declared ``layered``)."""
    return tuple(key for meta in declared(cls).values() if meta.layered for key in meta.keys)


def default_of(cls: type, name: str) -> Any:
    """The dataclass default of field ``name``; MISSING when the setting is required."""
    item = next(item for item in dataclasses.fields(cls) if item.name == name)
    if item.default_factory is not MISSING:
        return item.default_factory()
    return item.default


def read_declared(sec: Section, cls: type, name: str, default: Any = MISSING, *,
                  choices: Mapping[str, object] | None = None, key: str | None = None
                  ) -> Any:
    """The value of field ``name`` of ``cls`` from ``sec``, checked as declared; the
    declared default when absent (``default`` overrides it where another setting decides,
    e.g. the MQTT port with TLS). ``choices`` gives a choice's words where they are only
    known at run time (a device's ``driver``: the registered kinds); ``key`` reads it
    from another key (``framing: stx-etx`` short for ``framing: {type: stx-etx}``). None
    after a reported problem."""
    meta = declared(cls)[name]
    if choices is not None:
        meta = dataclasses.replace(meta, choices=choices)
    if key is not None:
        meta = dataclasses.replace(meta, keys=(key,))
    if default is MISSING:
        default = default_of(cls, name)
    try:
        return read_setting(sec, meta, default)
    except ValueError:
        raise ValueError(f"{cls.__name__}.{name} ({meta.kind}) has its own reader") from None


def read_setting(sec: Section, meta: Setting, default: Any = MISSING) -> Any:
    """The value of one declared setting from ``sec`` (``read_declared`` without a
    dataclass: a setting whose range belongs to a kind, e.g. a Modbus unit id)."""
    if default is MISSING:
        default = REQUIRED
    key = meta.key
    if meta.kind == "integer":
        lo = None if meta.lo is None else int(meta.lo)
        hi = None if meta.hi is None else int(meta.hi)
        return sec.integer(key, default, lo, hi, expected=_(meta.hint) if meta.hint else None)
    if meta.kind == "number":
        return sec.number(key, default, meta.lo, meta.hi, above=meta.above)
    if meta.kind == "flag":
        return sec.flag(key, default)
    if meta.kind == "choice":
        return sec.choice(key, meta.choices or {}, default, _(meta.hint) if meta.hint else "",
                          meta.other_words)
    if meta.kind == "text":
        return sec.text(key, default, what=_(meta.hint) if meta.hint else "text")
    raise ValueError(f"a {meta.kind} setting has its own reader")


def filled(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with each None (a value already reported as wrong) replaced by the
    declared default, so a typed object can still be built while the loader goes on
    collecting issues; the loader raises before such an object is used."""
    return {name: default_of(cls, name) if value is None else value
            for name, value in values.items()}
