"""The CP data region: ``name=value`` items, ``,`` between the items of one factor, ``;``
between factors (``DataTime=20160801085857;a25002-Rtd=1.2,a25002-Flag=N``).

An item named ``code-key`` (``a25002-Rtd``, ``SB1-RS``) belongs to a factor; an item without
``-`` (``DataTime``, ``QnRtn``, ``BeginTime``) is a plain field. Parsing keeps every item in
order (a stray ``;Flag=N`` not bound to a code stays a plain field); building formats
numbers one way, so what we send is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from edge_agent.hj212.packet import ErrorKind, PacketError

TIME_FORMAT = "%Y%m%d%H%M%S"  # DataTime, SystemTime, BeginTime, EndTime


@dataclass(frozen=True)
class Item:
    """One ``name=value`` of the region."""

    name: str
    value: str

    @property
    def code(self) -> str | None:
        """The factor's code (``a25002`` of ``a25002-Rtd``); None for a plain field."""
        code, sep, _ = self.name.partition("-")
        return code if sep else None

    @property
    def key(self) -> str:
        """``Rtd`` of ``a25002-Rtd``; the whole name for a plain field."""
        return self.name.partition("-")[2] or self.name


@dataclass(frozen=True)
class Factor:
    """The items of one pollutant (or device) code, in the order sent."""

    code: str
    values: tuple[tuple[str, str], ...]  # (key, text): ("Rtd", "1.2"), ("Flag", "N")

    def get(self, key: str) -> str | None:
        return next((text for name, text in self.values if name == key), None)

    def number(self, key: str) -> float | None:
        """The value of ``key`` as a number; None when absent. A value that is not a
        number raises PacketError naming the item."""
        text = self.get(key)
        if text is None:
            return None
        try:
            return float(text)
        except ValueError:
            raise PacketError(ErrorKind.FIELD,
                              f"{self.code}-{key}={text!r}: expected a number") from None


@dataclass(frozen=True)
class Region:
    """A parsed CP region: the ``;`` groups of items, as sent."""

    groups: tuple[tuple[Item, ...], ...]

    def items(self) -> tuple[Item, ...]:
        return tuple(item for group in self.groups for item in group)

    def get(self, name: str) -> str | None:
        """The first plain or full-named item ``name`` (``DataTime``, ``a25002-Rtd``)."""
        return next((item.value for item in self.items() if item.name == name), None)

    def time(self, name: str) -> datetime | None:
        """A time field (``DataTime``…) as naive local time; 17 digits (ms) tolerated."""
        text = self.get(name)
        if text is None:
            return None
        try:
            if len(text) == 17:
                return datetime.strptime(text[:14], TIME_FORMAT).replace(
                    microsecond=int(text[14:]) * 1000)
            return datetime.strptime(text, TIME_FORMAT)
        except ValueError:
            raise PacketError(ErrorKind.FIELD,
                              f"{name}={text!r}: expected YYYYMMDDhhmmss") from None

    def factors(self) -> tuple[Factor, ...]:
        """The factors in order of first appearance, each with all its items."""
        found: dict[str, list[tuple[str, str]]] = {}
        for item in self.items():
            if item.code is not None:
                found.setdefault(item.code, []).append((item.key, item.value))
        return tuple(Factor(code, tuple(values)) for code, values in found.items())


def parse_region(text: str) -> Region:
    """Split a plaintext region into items. An item without ``=`` raises PacketError."""
    groups = []
    for group_text in text.split(";") if text else []:
        items = []
        for part in group_text.split(","):
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep or not name:
                raise PacketError(ErrorKind.FIELD, f"CP item {part!r}: expected name=value")
            items.append(Item(name, value))
        if items:
            groups.append(tuple(items))
    return Region(tuple(groups))


def format_number(value: float, decimals: int | None = None) -> str:
    """A value as sent: ``decimals`` places when given (the code table's), else Python's
    shortest repr without exponent. Not finite raises ValueError (send a flag instead)."""
    if not math.isfinite(value):
        raise ValueError(f"{value} cannot be sent as an HJ 212 value")
    if decimals is not None:
        return f"{value:.{decimals}f}"
    text = repr(float(value))
    if "e" in text or "E" in text:
        text = f"{value:.10f}".rstrip("0").rstrip(".")
    return text[:-2] if text.endswith(".0") else text


COMPUTED_SIGNIFICANT = 6  # digits of an average or total when the code fixes no decimals


def format_computed(value: float, decimals: int | None = None) -> str:
    """A value the station computed (an average, a total): the code's decimals when the
    table gives them, else 6 significant digits. An average of readings carries no more
    precision than they do, and ``2233.3333333333335`` (17 digits) is longer than the
    numeric fields platforms store; 6 digits keep both 2233.33 and 0.000654 exact enough
    for any analyzer's resolution."""
    if decimals is not None or not math.isfinite(value) or value == 0:
        return format_number(value, decimals)
    places = max(0, COMPUTED_SIGNIFICANT - 1 - math.floor(math.log10(abs(value))))
    return format_number(float(f"{value:.{places}f}"))


def format_time(moment: datetime) -> str:
    """``YYYYMMDDhhmmss`` of ``moment`` as given (the platform's local time)."""
    return moment.strftime(TIME_FORMAT)


def build_region(fields: list[tuple[str, str]], factors: list[Factor]) -> str:
    """The region text: plain fields first (each its own group), then each factor's
    items joined with ``,``. ``fields``: ``[("DataTime", "20240520210600")]``."""
    groups = [f"{name}={value}" for name, value in fields]
    groups += [",".join(f"{factor.code}-{key}={text}" for key, text in factor.values)
               for factor in factors]
    return ";".join(groups)


def realtime_factor(code: str, value: float | None, flag: str,
                    decimals: int | None = None) -> Factor:
    """The items of one code in a 2011 record: ``-Rtd`` (left out when there is no value
    or it is not finite) and ``-Flag``."""
    if value is None or not math.isfinite(value):
        return Factor(code, (("Flag", flag),))
    return Factor(code, (("Rtd", format_number(value, decimals)), ("Flag", flag)))
