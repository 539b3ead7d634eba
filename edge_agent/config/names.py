"""What ids, names, units and MQTT topics may contain: a safe set, not a list of bad ones.

Station, device and link ids become MQTT topic levels, log fields, file names
(``run --record``) and JSON keys. A forbidden-character list always misses one (a NUL made
Mosquitto drop the agent on every publish; a lone surrogate made the poller crash on
encoding), so ids are checked against what they may contain instead: ASCII letters,
digits, ``-``, ``_`` and ``.``, starting with a letter or digit, at most ``ID_MAX``
characters. Topic templates may hold the same characters plus ``/`` and the
placeholders. Channel names and units go into JSON only: any printable text, bounded.

Every expanded topic is also checked against MQTT's own rules (UTF-8 of at most 65,535
bytes, no NUL, no wildcards in a publish topic), so what ``check`` accepts the broker
accepts too. Documented in docs/configuration.md ("Names and ids").
"""

from __future__ import annotations

import re

from edge_agent.i18n import N_, _

ID_MAX = 64
LABEL_MAX = 64  # a channel's name
UNIT_MAX = 32
CONNECT_TEXT_MAX = 256  # mqtt.client_id and mqtt.username
TOPIC_TEMPLATE_MAX = 200
MQTT_TOPIC_MAX_BYTES = 65535  # MQTT 3.1.1 and 5: a UTF-8 string has a 2-byte length

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TEMPLATE_TEXT = re.compile(r"[A-Za-z0-9_./-]*")
ID_RULE = N_("ASCII letters, digits, '-', '_' and '.', starting with a letter or digit")
TEMPLATE_RULE = N_("ASCII letters, digits, '-', '_', '.', '/' and the placeholders")


def id_problem(value: str, what: str) -> str | None:
    """Why ``value`` cannot be a station, device or link id, or None."""
    if len(value) > ID_MAX:
        return _too_long(what, len(value), ID_MAX)
    if not _ID.fullmatch(value):
        bad = _first_outside(value, _ID_CHARS)
        where = _(" ({char} is not)").format(char=describe_char(bad)) if bad \
            else _(" (it starts with '{char}')").format(char=value[:1])
        return _("{what} '{value}' may contain only {rule}").format(
            what=what, value=value, rule=_(ID_RULE)) + where
    return None


def label_problem(value: str, what: str, limit: int) -> str | None:
    """Why ``value`` cannot be a channel name or unit (printable text, bounded), or None."""
    if len(value) > limit:
        return _too_long(what, len(value), limit)
    for char in value:
        if not char.isprintable():
            return _("{what} may contain only printable characters ({char} is not)").format(
                what=what, char=describe_char(char))
    return None


def template_text_problem(literal: str) -> str | None:
    """Why the fixed text of a topic template (placeholders removed) is not allowed."""
    if not _TEMPLATE_TEXT.fullmatch(literal):
        bad = _first_outside(literal, _TEMPLATE_CHARS)
        return _("a topic may contain only {rule} ({char} is not)").format(
            rule=_(TEMPLATE_RULE), char=describe_char(bad or "?"))
    return None


def mqtt_topic_problem(topic: str) -> str | None:
    """Why ``topic`` is not a valid MQTT publish topic, or None (MQTT 3.1.1 section 4.7)."""
    if not topic:
        return _("the topic is empty")
    if "\x00" in topic or any(0xD800 <= ord(char) <= 0xDFFF for char in topic):
        return _("the topic holds a NUL or an invalid character")
    if "+" in topic or "#" in topic:
        return _("'+' and '#' are MQTT wildcards and cannot be used in a topic")
    size = len(topic.encode("utf-8"))
    if size > MQTT_TOPIC_MAX_BYTES:
        return _("the topic is {size} bytes long; MQTT allows at most {limit}").format(
            size=size, limit=MQTT_TOPIC_MAX_BYTES)
    return None


def describe_char(char: str) -> str:
    """A character as a technician can find it: 'x' when visible, else its code point."""
    if char.isprintable() and char != " ":
        return f"'{char}'"
    if char == " ":
        return _("a space")
    return _("the invisible character U+{code:04X}").format(code=ord(char))


def _too_long(what: str, length: int, limit: int) -> str:
    return _("{what} is {length} characters long; at most {limit} are allowed").format(
        what=what, length=length, limit=limit)


_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_TEMPLATE_CHARS = _ID_CHARS | {"/"}


def _first_outside(value: str, allowed: frozenset[str]) -> str | None:
    return next((char for char in value if char not in allowed), None)
