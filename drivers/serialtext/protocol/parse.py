"""A frame's body to channel values, each with its quality, and the instrument's time.

The body is read as Latin-1 (every byte is one character, so no byte can fail to
decode) and stripped of spaces at both ends. A record that does not fit the configured
shape (too few fields, pattern not matching, a time that does not parse or lies outside
years 1..9999 in UTC) raises
``RecordError`` (reason ``bad_frame``): it is a garbled or foreign record, and none of
its values can be trusted. A single field that is not a number (``----``, ``OVR``, an
empty field) only makes that channel BAD (``not_a_number``, ``no_value``).

Numbers are strict decimal (``12``, ``-0.5``, ``+001.20``, ``1.2E-3``): ``nan``, ``inf``,
hex and thousands separators are not numbers. A number then goes through the value
pipeline every driver kind shares (``edge_agent.values``): a sentinel is BAD ``sentinel``,
``189`` scaled by 0.1 is ``18.9`` (no binary noise), a value that overflows is BAD
``infinite``, one outside ``valid_range`` gets ``out_of_range``. A whole number without
scaling stays an integer. The record's status fields only lower a channel's quality.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timezone

from edge_agent_drivers.serialtext.protocol.settings import (
    Locator,
    RecordFormat,
    StatusRule,
    TextChannel,
    TimeField,
)

from edge_agent.model import Quality
from edge_agent.values import Judged, NumberRules, flagged, judge_number

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_MAX_DIGITS = 64  # longer "numbers" are garbage (and int() refuses > 4300 digits)
_SEVERITY = {Quality.GOOD: 0, Quality.SUSPECT: 1, Quality.BAD: 2}
_GOOD = StatusRule(Quality.GOOD)


class RecordError(ValueError):
    """The record does not have the configured shape; no value in it is usable."""

    reason = "bad_frame"


@dataclass(frozen=True)
class ChannelValue:
    """One channel's outcome; ``value`` is None exactly when there is no number."""

    name: str
    value: float | int | None
    unit: str
    quality: Quality
    reason: str | None = None


@dataclass(frozen=True)
class Record:
    """What one record said, in channel order."""

    values: tuple[ChannelValue, ...]
    instrument_time: datetime | None = None


def record_text(body: bytes) -> str:
    """The body as text: Latin-1 (never fails), spaces around it removed."""
    return body.decode("latin-1").strip()


def accepts(body: bytes, fmt: RecordFormat) -> bool:
    """Whether the body is a record of the configured kind (``accept`` pattern)."""
    return fmt.accept is None or fmt.accept.search(record_text(body)) is not None


def parse_record(body: bytes, fmt: RecordFormat) -> Record:
    """Values, qualities and time of one record. Raises ``RecordError``."""
    fields = _Fields(record_text(body), fmt)
    rules = {channel.name: _GOOD for channel in fmt.channels}
    for status in fmt.status:
        rule = status.rule_for(fields.token(status.at, "the status") or "")
        for name in status.channels or tuple(rules):
            if _SEVERITY[rule.quality] > _SEVERITY[rules[name].quality]:
                rules[name] = rule
    values = tuple(_channel_value(channel, fields, rules[channel.name])
                   for channel in fmt.channels)
    time = _instrument_time(fmt.time, fields) if fmt.time else None
    return Record(values, time)


class _Fields:
    """The record cut into fields (delimiter) or matched against the pattern."""

    def __init__(self, text: str, fmt: RecordFormat) -> None:
        self._match: re.Match[str] | None = None
        self._parts: list[str] = []
        if fmt.pattern is not None:
            self._match = fmt.pattern.search(text)
            if self._match is None:
                raise RecordError(f"record does not match the pattern: {text[:80]!r}")
            return
        self._parts = text.split(fmt.delimiter) if fmt.delimiter is not None else text.split()
        if fmt.field_count is not None and len(self._parts) != fmt.field_count:
            raise RecordError(f"record has {len(self._parts)} fields, expected "
                              f"{fmt.field_count}: {text[:80]!r}")

    def token(self, at: Locator, what: str) -> str | None:
        """The text at ``at``; None for a pattern group that matched nothing."""
        if self._match is not None:
            value = self._match.group(at.group or "")
            return None if value is None else value.strip()
        missing = [index for index in at.fields if index > len(self._parts)]
        if missing:
            raise RecordError(f"{what} is field {missing[0]}, but the record has only "
                              f"{len(self._parts)} fields")
        return " ".join(self._parts[index - 1].strip() for index in at.fields)


def _channel_value(channel: TextChannel, fields: _Fields, rule: StatusRule) -> ChannelValue:
    token = fields.token(channel.at, f"channel '{channel.name}'")
    judged = judge_token(token, channel)
    value = _number(judged)
    if value is None:
        return ChannelValue(channel.name, None, channel.unit, Quality.BAD, judged.reason)
    quality, reason = flagged(judged.quality, judged.reason, [(rule.quality, rule.reason)])
    return ChannelValue(channel.name, value, channel.unit, quality, reason)


def judge_token(token: str | None, channel: NumberRules) -> Judged:
    """A field's text through the value pipeline every driver kind shares: a strict
    decimal number (else BAD ``no_value`` / ``not_a_number``), then non-finite values,
    sentinels, scale and offset and the valid range (``edge_agent.values``)."""
    if not token:
        return Judged(None, Quality.BAD, "no_value")
    if len(token) > _MAX_DIGITS or not _NUMBER.fullmatch(token):
        return Judged(None, Quality.BAD, "not_a_number")
    raw = int(token) if _INTEGER.fullmatch(token) else float(token)
    return judge_number(channel, raw)


def to_number(token: str | None, scale: float = 1.0, offset: float = 0.0
              ) -> tuple[float | int | None, str | None]:
    """``token * scale + offset``, or None and the reason it is not a usable number."""
    judged = judge_token(token, TextChannel("", Locator(), scale, offset))
    return _number(judged), judged.reason


def _number(judged: Judged) -> float | int | None:
    """The judged value as the number it is (a text field never gives text or a bool)."""
    value = judged.value
    return None if isinstance(value, bool | str) else value


def _instrument_time(spec: TimeField, fields: _Fields) -> datetime:
    """The record's timestamp in UTC; a %z in the format overrides ``utc_offset``."""
    token = fields.token(spec.at, "the time")
    try:
        moment = datetime.strptime(token or "", spec.format)
    except ValueError as err:
        raise RecordError(f"time {token!r} does not match format {spec.format!r}") from err
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone(spec.utc_offset))
    try:
        return moment.astimezone(UTC)
    except OverflowError as err:  # 0001-01-01 00:00 at +08:00 is before year 1 in UTC
        raise RecordError(f"time {token!r} is out of range in UTC") from err
