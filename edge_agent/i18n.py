"""The technician's language: English, or Simplified Chinese from a gettext catalog.

Every technician-facing sentence is written ``_("... {name} ...").format(name=...)``: the
translator sees the whole sentence with named placeholders, and ``format`` fills them in
after translation. English is the source text itself, so while English is chosen ``_``
returns its argument and no catalog is ever opened (``run`` pays nothing; no poll path
calls ``_`` anyway, its log lines stay English for journald).

The language is chosen once per command by ``choose`` (``--lang`` first, then the
environment as GNU gettext reads it: ``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``)
and set with ``use``. Catalogs: ``edge_agent/locale/<locale>/LC_MESSAGES/edge_agent.mo``,
compiled from the ``.po`` beside it by ``scripts/translations`` (docs/i18n.md).
"""

from __future__ import annotations

import gettext
from collections.abc import Callable, Mapping
from pathlib import Path

DOMAIN = "edge_agent"
LOCALE_DIR = Path(__file__).parent / "locale"
#: ``--lang`` word -> gettext locale of its catalog (None: the source text, English).
LANGUAGES: dict[str, str | None] = {"en": None, "zh": "zh_CN"}
ENV_ORDER = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


def _english(message: str) -> str:
    return message


def _english_plural(singular: str, plural: str, count: int) -> str:
    return singular if count == 1 else plural


_gettext: Callable[[str], str] = _english
_ngettext: Callable[[str, str, int], str] = _english_plural
_current = "en"


def _(message: str) -> str:
    """``message`` in the chosen language (itself in English, or with no translation)."""
    return _gettext(message)


def ngettext(singular: str, plural: str, count: int) -> str:
    """The singular or plural form for ``count`` in the chosen language (Chinese has one)."""
    return _ngettext(singular, plural, count)


def N_(message: str) -> str:
    """Marks ``message`` for extraction where it is defined (a table of texts); it is
    translated with ``_`` where it is shown, after the language is chosen."""
    return message


def choose(lang: str | None, env: Mapping[str, str]) -> str:
    """``en`` or ``zh``: ``lang`` (``--lang``) when given, else the first of LANGUAGE,
    LC_ALL, LC_MESSAGES, LANG that is set (``zh_CN.UTF-8``, ``zh_CN:en``, ``zh``: Chinese;
    ``C``, ``en_US.UTF-8`` or anything else: English)."""
    if lang:
        return lang
    for name in ENV_ORDER:
        value = env.get(name, "")
        if value:
            first = value.split(":")[0].strip().lower()
            return "zh" if first.startswith("zh") else "en"
    return "en"


def use(language: str) -> None:
    """Make ``language`` (a key of LANGUAGES) the one ``_`` answers in. Chinese opens its
    catalog here, once; a missing catalog is an error (a broken install), not English."""
    global _gettext, _ngettext, _current
    locale = LANGUAGES[language]
    if locale is None:
        _gettext, _ngettext = _english, _english_plural
    else:
        catalog = gettext.translation(DOMAIN, LOCALE_DIR, languages=[locale])
        _gettext, _ngettext = catalog.gettext, catalog.ngettext
    _current = language


def current() -> str:
    """The language ``_`` answers in now (``en`` or ``zh``): the page's default, say."""
    return _current
