"""How a station file writes protocol bytes: text with control characters spelt out.

Manuals write telegrams as ``<STX>DA<ETX>`` or ``RD<CR>``; programmers write ``\\x02`` and
``\\r``. Both work, in any YAML quoting, so a technician can copy the manual:

* ``<NAME>`` for an ASCII control character (``<STX>``, ``<ETX>``, ``<CR>``, ``<LF>``,
  ``<ACK>``, ...; any case). Text in angle brackets that is not such a name, like
  ``<5``, stays as written.
* ``\\r``, ``\\n``, ``\\t``, ``\\\\`` (one backslash), ``\\xHH`` (any byte). YAML double
  quotes already turn ``"\\r"`` into the character itself, which is the same thing.

Every character must be a single byte (code 0..255): the wire carries bytes, and text
protocols are ASCII.
"""

from __future__ import annotations

import re

from edge_agent.i18n import _

CONTROL_NAMES = (
    "NUL", "SOH", "STX", "ETX", "EOT", "ENQ", "ACK", "BEL", "BS", "HT", "LF", "VT", "FF",
    "CR", "SO", "SI", "DLE", "DC1", "DC2", "DC3", "DC4", "NAK", "SYN", "ETB", "CAN", "EM",
    "SUB", "ESC", "FS", "GS", "RS", "US",
)
_BY_NAME = {name: code for code, name in enumerate(CONTROL_NAMES)} | {"DEL": 0x7F}
_SIMPLE = {"r": "\r", "n": "\n", "t": "\t", "\\": "\\"}
_TOKEN = re.compile(r"<([A-Za-z][A-Za-z0-9]{1,2})>|\\(x[0-9A-Fa-f]{2}|.?)", re.DOTALL)
_SHOWN = {code: f"<{name}>" for name, code in _BY_NAME.items()}


class EscapeError(ValueError):
    """Text that cannot become bytes; the message says what to write instead."""


def to_bytes(text: str) -> bytes:
    """The bytes ``text`` stands for, with ``<NAME>`` and backslash escapes resolved."""
    out: list[str] = []
    position = 0
    for match in _TOKEN.finditer(text):
        out.append(text[position:match.start()])
        out.append(_resolve(match))
        position = match.end()
    out.append(text[position:])
    resolved = "".join(out)
    wide = [char for char in resolved if ord(char) > 0xFF]
    if wide:
        raise EscapeError(_("'{char}' is not a single byte; protocols here are ASCII (write "
                            "other bytes as \\xHH)").format(char=wide[0]))
    return resolved.encode("latin-1")


def _resolve(match: re.Match[str]) -> str:
    name, escape = match.group(1), match.group(2)
    if name is not None:
        code = _BY_NAME.get(name.upper())
        return match.group(0) if code is None else chr(code)
    if escape.startswith("x") and len(escape) == 3:
        return chr(int(escape[1:], 16))
    if escape in _SIMPLE:
        return _SIMPLE[escape]
    if escape == "x":
        raise EscapeError(_("\\x needs two hex digits, e.g. \\x02"))
    shown = f"\\{escape}" if escape else _("\\ at the end")
    raise EscapeError(_("unknown escape {escape}; use \\r, \\n, \\t, \\xHH, <CR>, <STX>... "
                        "or \\\\ for a backslash").format(escape=shown))


def show(data: bytes, limit: int = 80) -> str:
    """Bytes as a technician reads them in a log: ``<STX>MD,12.3<ETX>4F``."""
    text = "".join(_SHOWN.get(byte) or (chr(byte) if 0x20 <= byte < 0x7F else f"\\x{byte:02X}")
                   for byte in data[:limit])
    return text + ("..." if len(data) > limit else "")
