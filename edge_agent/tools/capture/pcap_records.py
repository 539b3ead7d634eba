"""Packet records of a classic libpcap file, read by us so that no damage goes unsaid.

dpkt's reader hands back a record cut inside its data without a word, and a record whose
length field is damaged throws the rest of the file out of step. Here every record's
captured length is compared with the bytes actually there: a record the file ends inside
is reported as the cut it is (``Damage.at_end``), and damage before the end (bytes lost
or overwritten in the middle of the file) is reported with the packet number and byte
offset, after which reading resumes at the next record that is whole, found by scanning
for a record header that fits (sane time stamp and lengths, followed by another one or by
the end of the file), as pcapfix does.

The types shared with the pcapng reader (``pcapng_records.py``) live here too.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", 1_000_000), b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
              b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
              b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000)}
MAX_RECORD = 262_144  # Wireshark's largest packet for ordinary link types
_FILE_HEADER, _RECORD_HEADER = 24, 16
_DAY_S = 86_400
_RESYNC_WINDOW_S = 366 * _DAY_S  # a record found after damage lies within a year


@dataclass(frozen=True)
class Interface:
    """Where packets were captured: the one link of a pcap file, or one pcapng interface
    (``number`` is its id in its section, as the packet blocks name it)."""

    number: int
    link_type: int
    name: str | None = None
    section: int = 0

    def describe(self) -> str:
        where = f"interface {self.number}" + (f" ({self.name})" if self.name else "")
        return where + (f" of section {self.section + 1}" if self.section else "")


@dataclass(frozen=True)
class PacketRecord:
    """One whole packet as captured. ``number`` counts packets from 1, as Wireshark does;
    ``offset`` is where its record starts in the file; ``t_us`` microseconds since the
    epoch (whole numbers, so a pcap and a pcapng of the same packets agree exactly)."""

    number: int
    offset: int
    interface: Interface
    t_us: int
    data: bytes
    original_length: int


@dataclass(frozen=True)
class Damage:
    """Bytes of the file that are not a whole packet record. ``number`` is the packet
    number the damaged record would have had, when its header could be read; ``at_end``
    when the file simply stops (a capture cut short), not damage before the end."""

    offset: int
    number: int | None
    what: str
    at_end: bool


def ticks_to_us(ticks: int, per_second: int) -> int:
    """``ticks`` of ``1/per_second`` s as whole microseconds, rounded half up, exactly."""
    return (ticks * 2_000_000 + per_second) // (2 * per_second)


def resync(data: bytes, start: int, fits: Callable[[int], bool], stop: int | None = None,
           zero_at: int | None = None) -> int | None:
    """The first offset from ``start`` (up to ``stop``) where ``fits`` finds a whole
    record, or None. ``zero_at``: where a record's header always holds a zero byte (the
    top byte of a length below 16 MiB); only offsets with one there are tried, which makes
    a scan over random bytes some hundred times faster."""
    stop = len(data) if stop is None else stop
    candidate = start
    while candidate < stop:
        if zero_at is not None:
            zero = data.find(b"\0", candidate + zero_at, stop + zero_at)
            if zero < 0:
                return None
            candidate = zero - zero_at
        if fits(candidate):
            return candidate
        candidate += 1
    return None


class ClassicPcap:
    """The records of a libpcap file (microsecond or nanosecond, either byte order)."""

    def __init__(self, data: bytes) -> None:
        """``data`` is the whole file, starting with one of ``PCAP_MAGIC``."""
        self._data = data
        self._endian, self._per_second = PCAP_MAGIC[bytes(data[:4])]
        if len(data) < _FILE_HEADER:
            raise ValueError(f"the file ends inside its {_FILE_HEADER}-byte header")
        snaplen, link = struct.unpack_from(self._endian + "II", data, 16)
        self._max = max(snaplen, MAX_RECORD)
        # the captured length's top byte, zero in any record when lengths stay below 16 MiB
        self._zero_at = (11 if self._endian == "<" else 8) if self._max < 1 << 24 else None
        # bits 16-31 carry the FCS length and flags, not the link type
        self.interfaces = (Interface(0, link & 0xFFFF),)
        self._header = struct.Struct(self._endian + "IIII")
        self._last_s: int | None = None

    def records(self, damage: list[Damage]) -> Iterator[PacketRecord]:
        """Every whole record in file order; whatever is not one goes to ``damage``.
        After damage, numbering counts the damaged stretch as one packet."""
        data, size, pos, number = self._data, len(self._data), _FILE_HEADER, 0
        trusted = True  # the header at pos follows a record that was checked whole
        while pos < size:
            if size - pos < _RECORD_HEADER:
                damage.append(Damage(pos, number + 1, f"packet {number + 1} at byte {pos}: "
                                     f"the file ends {size - pos} bytes into its "
                                     f"{_RECORD_HEADER}-byte record header", True))
                return
            seconds, fraction, captured, original = self._header.unpack_from(data, pos)
            number += 1
            # after a record whose follower looked wrong: damage, or a clock that jumped
            # (a logger set by NTP), when the record and the one after it look whole
            if not (self._sane(pos) if trusted else self._fits(pos, check_time=False)):
                found = resync(data, pos + 1, self._fits, zero_at=self._zero_at)
                damage.append(_garbage(number, pos, found, size))
                if found is None:
                    return
                pos, trusted = found, True
                continue
            end = pos + _RECORD_HEADER + captured
            trusted = end + _RECORD_HEADER > size or self._plausible(end, seconds)
            if end > size or not trusted:
                # Is the record shorter than it says (the next one starts inside it)?
                if self._last_s is None:  # the first record: its own time is the best guess
                    self._last_s = seconds
                found = resync(data, pos + _RECORD_HEADER, self._fits, min(end, size),
                               self._zero_at)
                if found is None and end > size:
                    damage.append(Damage(pos, number, f"packet {number} at byte {pos}: the "
                                         f"file ends after {size - pos - _RECORD_HEADER} of "
                                         f"its {captured} captured bytes", True))
                    return
                if found is not None:
                    damage.append(Damage(pos, number, f"packet {number} at byte {pos}: only "
                                         f"{found - pos - _RECORD_HEADER} of its {captured} "
                                         f"captured bytes before the next whole record (byte "
                                         f"{found}); skipped", False))
                    pos, trusted = found, True
                    continue
            self._last_s = seconds
            yield PacketRecord(number, pos, self.interfaces[0],
                               seconds * 1_000_000 + ticks_to_us(fraction, self._per_second),
                               bytes(data[pos + _RECORD_HEADER:end]), original)
            pos = end

    def _sane(self, pos: int) -> bool:
        """A record header that could be one: fraction under a second, length possible."""
        _seconds, fraction, captured, _original = self._header.unpack_from(self._data, pos)
        return fraction < self._per_second and captured <= self._max

    def _plausible(self, pos: int, reference: int | None = None,
                   check_time: bool = True) -> bool:
        """A sane header timed near the last whole record (or ``reference``): what
        follows a whole record."""
        if not self._sane(pos):
            return False
        seconds = self._header.unpack_from(self._data, pos)[0]
        last = self._last_s if reference is None else reference
        return not (check_time and last is not None
                    and not -_DAY_S <= seconds - last <= _RESYNC_WINDOW_S)

    def _fits(self, pos: int, check_time: bool = True) -> bool:
        """For finding the next record after damage: a plausible header of a record that
        is whole, followed by another sane header or by the end of the file."""
        size = len(self._data)
        if pos + _RECORD_HEADER > size or not self._plausible(pos, check_time=check_time):
            return False
        end = pos + _RECORD_HEADER + self._header.unpack_from(self._data, pos)[2]
        return end <= size and (end + _RECORD_HEADER > size or self._sane(end))


def _garbage(number: int, pos: int, found: int | None, size: int) -> Damage:
    """Bytes where packet ``number``'s record header should be and is not: counted as
    that one packet, though the damage may have taken more."""
    where = f"packet {number} at byte {pos}: its record header is damaged"
    if found is None:
        return Damage(pos, number, f"{where}, and no whole record follows in the "
                      f"{size - pos} bytes to the end", False)
    return Damage(pos, number, f"{where}; {found - pos} bytes skipped to the next whole "
                  f"record (byte {found})", False)
