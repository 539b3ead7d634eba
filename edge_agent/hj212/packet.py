"""One HJ 212 packet: build it exactly, parse it leniently, and say precisely what is wrong.

Frame (both versions): ``##`` + data-segment length (4 decimal digits) + data segment +
CRC16 (4 hex digits) + ``\\r\\n``. Data segment:
``QN=…;ST=…;CN=…;PW=…;MN=…;Flag=…;[PNUM=…;PNO=…;][RF=1;]CP=&&…&&``.

Flag bits are ``V5..V0`` then two bits whose positions both versions share: bit 1 = the
packet carries PNUM/PNO (2017 calls it D, 2025 A), bit 0 = the packet must be answered
(2017 A, 2025 D). V = 0 HJ/T 212-2005, 1 HJ 212-2017, 2 HJ 212-2025; so 4/5 and 8/9.

Strict on what we send (``encode``): 17-digit QN, Flag present, uppercase CRC, at most 1024
characters (longer data goes through ``split.py``). Lenient where real platforms are
(``parse``): a 13-digit millisecond QN, no QN or Flag (HJ/T 212-2005 style), lowercase CRC
hex, and the CRC variants of crc.py when the options allow them; every leniency used is
named in ``ParsedPacket.notes``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum

from edge_agent.hj212 import sm4
from edge_agent.hj212.crc import CrcVariant, crc_text, crc_variant_of, hj212_crc16

MAX_SEGMENT = 1024  # characters of the data segment (both versions)
HEADER_ORDER = ("QN", "ST", "CN", "PW", "MN", "Flag", "PNUM", "PNO", "RF")
_QN_17 = re.compile(r"\d{17}")
_QN_13 = re.compile(r"\d{13}")


class Version(IntEnum):
    """The standard a packet follows, as Flag bits V5..V0 give it."""

    HJT212_2005 = 0
    HJ212_2017 = 1
    HJ212_2025 = 2


class ErrorKind(StrEnum):
    """What part of a packet is wrong; the simulator counts by it."""

    FRAMING = "framing"
    LENGTH = "length"
    CRC = "crc"
    FIELD = "field"
    ENCRYPTION = "encryption"


class PacketError(ValueError):
    """A packet that cannot be built or accepted; the message says what was expected."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Flag:
    """The Flag field, decoded. ``ack``: the packet must be answered (9014/9013/9011);
    ``split``: it is one of several (PNUM/PNO present)."""

    version: Version
    ack: bool = False
    split: bool = False

    @property
    def value(self) -> int:
        return self.version << 2 | self.split << 1 | self.ack

    @classmethod
    def from_value(cls, value: int) -> Flag:
        """Decode a Flag number (0–255); an unknown version is refused."""
        if not 0 <= value <= 255:
            raise PacketError(ErrorKind.FIELD, f"Flag={value}: expected 0 to 255")
        version = value >> 2
        if version not in tuple(Version):
            raise PacketError(ErrorKind.FIELD,
                              f"Flag={value}: version bits {version:06b} name no known standard "
                              "(000000 2005, 000001 2017, 000010 2025)")
        return cls(Version(version), ack=bool(value & 1), split=bool(value & 2))


@dataclass(frozen=True)
class Packet:
    """A packet's fields; ``cp`` is the plaintext data region (between ``CP=&&`` and ``&&``).
    ``flag`` None and ``qn`` None only in HJ/T 212-2005-style packets we parse."""

    st: str
    cn: str
    pw: str
    mn: str
    cp: str = ""
    qn: str | None = None
    flag: Flag | None = None
    pnum: int | None = None
    pno: int | None = None
    rf: bool = False  # 2025: a re-sent packet (RF=1)
    extra: tuple[tuple[str, str], ...] = field(default=())  # header fields neither standard names

    def segment(self) -> str:
        """The plaintext data segment, fields in the standards' order."""
        parts = []
        if self.qn is not None:
            parts.append(f"QN={self.qn}")
        parts += [f"ST={self.st}", f"CN={self.cn}", f"PW={self.pw}", f"MN={self.mn}"]
        if self.flag is not None:
            parts.append(f"Flag={self.flag.value}")
        if self.pnum is not None:
            parts += [f"PNUM={self.pnum}", f"PNO={self.pno}"]
        if self.rf:
            parts.append("RF=1")
        parts += [f"{name}={value}" for name, value in self.extra]
        return ";".join(parts) + ";CP=&&" + self.cp + "&&"


@dataclass(frozen=True)
class ParsedPacket:
    """A packet accepted by ``parse``, with how it was sent."""

    packet: Packet
    raw: str
    crc_variant: CrcVariant
    encrypted: bool = False
    notes: tuple[str, ...] = ()  # leniencies used, in words


@dataclass(frozen=True)
class ParseOptions:
    """What a receiver tolerates beyond the standard. ``accept_crc``: CRC variants taken
    as valid (a variant outside it is refused, named); ``sm4_key``: to read encrypted
    regions."""

    accept_crc: frozenset[CrcVariant] = frozenset({CrcVariant.HJ212})
    sm4_key: bytes | None = None


def qn_for(moment: datetime) -> str:
    """The 17-digit QN ``YYYYMMDDhhmmsszzz`` of ``moment`` as given (the uplink passes the
    platform's local time)."""
    return moment.strftime("%Y%m%d%H%M%S") + f"{moment.microsecond // 1000:03d}"


class QnClock:
    """Gives each packet a QN from the time, strictly increasing: two packets in the same
    millisecond (or a clock stepped back) still get different QNs, since a platform pairs
    its 9014 with the upload by QN alone."""

    def __init__(self) -> None:
        self._last: datetime | None = None

    def next(self, now: datetime) -> str:
        now = now.replace(microsecond=now.microsecond - now.microsecond % 1000)
        if self._last is not None and now <= self._last:
            now = self._last + timedelta(milliseconds=1)
        self._last = now
        return qn_for(now)


def qn_time(qn: str) -> datetime:
    """The moment a 17-digit QN names (naive, as sent)."""
    if not _QN_17.fullmatch(qn):
        raise PacketError(ErrorKind.FIELD, f"QN={qn}: expected 17 digits YYYYMMDDhhmmsszzz")
    return datetime.strptime(qn[:14], "%Y%m%d%H%M%S").replace(microsecond=int(qn[14:]) * 1000)


def _check_header_value(name: str, value: str) -> None:
    if not value or any(mark in value for mark in (";", "=", "&&", "\r", "\n")):
        raise PacketError(ErrorKind.FIELD,
                          f"{name}={value!r}: expected a non-empty value without ; = && or CR/LF")


def encode(packet: Packet, sm4_key: bytes | None = None, *, echoed_qn: bool = False,
           crc: CrcVariant = CrcVariant.HJ212) -> str:
    """The packet as sent, CRLF included. ``sm4_key``: encrypt the region (HJ 212-2025; the
    caller decides with ``sm4.needs_encryption``). ``echoed_qn``: the QN is a platform's,
    echoed in an answer (9011/9012), so its 13-digit millisecond form is sent back as
    received (the platform pairs by it). ``crc``: the CRC variant a platform insists on
    (crc.py; Appendix A's unless the station file says otherwise). Raises PacketError for
    anything the standard
    does not allow, and for a segment over 1024 characters (split it first)."""
    echo_ok = echoed_qn and packet.qn is not None and _QN_13.fullmatch(packet.qn)
    if not echo_ok and (packet.qn is None or not _QN_17.fullmatch(packet.qn)):
        raise PacketError(ErrorKind.FIELD,
                          f"QN={packet.qn}: we send 17 digits YYYYMMDDhhmmsszzz (use qn_for)")
    if packet.flag is None:
        raise PacketError(ErrorKind.FIELD, "Flag missing: we always send one")
    for name, value in (("ST", packet.st), ("CN", packet.cn), ("PW", packet.pw),
                        ("MN", packet.mn), *packet.extra):
        _check_header_value(name, value)
    if packet.flag.split != (packet.pnum is not None):
        raise PacketError(ErrorKind.FIELD, "Flag split bit and PNUM/PNO must go together")
    if packet.pnum is not None and not (packet.pno and 1 <= packet.pno <= packet.pnum):
        raise PacketError(ErrorKind.FIELD,
                          f"PNO={packet.pno}: expected 1 to PNUM={packet.pnum}")
    if packet.rf and packet.flag.version != Version.HJ212_2025:
        raise PacketError(ErrorKind.FIELD, "RF=1 exists only in HJ 212-2025")
    if "&&" in packet.cp:
        raise PacketError(ErrorKind.FIELD, "CP region must not contain &&")
    plain = packet.segment()
    length = len(plain.encode("utf-8"))
    if length > MAX_SEGMENT:
        raise PacketError(ErrorKind.LENGTH, f"data segment is {length} characters, more than "
                          f"{MAX_SEGMENT}: split it (split.split_packet)")
    sent = plain
    if sm4_key is not None:
        region = sm4.encrypt_region(packet.cp, sm4_key)
        sent = plain[: len(plain) - len(packet.cp) - 2] + region + "&&"
    return f"##{length:04d}{sent}{crc_text(plain.encode('utf-8'), crc)}\r\n"


def parse(raw: str | bytes, options: ParseOptions | None = None) -> ParsedPacket:
    """Check and decode one packet (with or without its CRLF). Raises PacketError naming
    the first thing wrong: framing, length field, CRC (expected/got), a field."""
    options = options or ParseOptions()
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise PacketError(ErrorKind.FRAMING, f"not UTF-8 at byte {err.start}") from None
    notes: list[str] = []
    text = raw[:-2] if raw.endswith("\r\n") else raw
    if len(text) < 10 or not text.startswith("##"):
        raise PacketError(ErrorKind.FRAMING, "expected ## + 4-digit length + data segment + "
                          f"CRC, got {text[:12]!r}")
    length_text = text[2:6]
    if not (len(length_text) == 4 and length_text.isdigit()):
        raise PacketError(ErrorKind.FRAMING,
                          f"length field {length_text!r}: expected 4 decimal digits after ##")
    sent_segment, crc_given = text[6:-4], text[-4:]
    if "CP=&&{0x" not in sent_segment:  # plaintext: a wrong length is said first
        _check_length(int(length_text), sent_segment, sent_segment, notes)
    encrypted, plain_segment = _plaintext(sent_segment, options, notes)
    _check_length(int(length_text), sent_segment, plain_segment, notes)
    data = plain_segment.encode("utf-8")
    variant = crc_variant_of(data, crc_given)
    if variant is None:
        raise PacketError(ErrorKind.CRC, f"CRC expected {crc_text(data)}, got {crc_given}")
    if variant not in options.accept_crc:
        raise PacketError(ErrorKind.CRC, f"CRC {crc_given} is the {variant.value} variant, "
                          f"not HJ 212 Appendix A (expected {crc_text(data)}); accepted only "
                          "when the station file allows that variant")
    if variant != CrcVariant.HJ212:
        notes.append(f"CRC variant {variant.value}")
    if crc_given != crc_given.upper():
        notes.append("lowercase CRC hex")
    packet = _fields(plain_segment, notes)
    return ParsedPacket(packet, raw, variant, encrypted, tuple(notes))


def _plaintext(segment: str, options: ParseOptions, notes: list[str]) -> tuple[bool, str]:
    """(encrypted?, the plaintext segment) of a sent segment."""
    start = segment.find("CP=&&")
    if start < 0 or not segment.endswith("&&") or len(segment) < start + 7:
        raise PacketError(ErrorKind.FIELD, "missing field CP=&&…&& at the end of the segment")
    region = segment[start + 5:-2]
    if not sm4.is_encrypted(region):
        return False, segment
    if options.sm4_key is None:
        raise PacketError(ErrorKind.ENCRYPTION, "data region is SM4-encrypted and no key is set")
    try:
        plain = sm4.decrypt_region(region, options.sm4_key)
    except sm4.Sm4Error as err:
        raise PacketError(ErrorKind.ENCRYPTION, str(err)) from None
    notes.append("SM4-encrypted data region")
    return True, segment[: start + 5] + plain + "&&"


def _check_length(declared: int, sent: str, plain: str, notes: list[str]) -> None:
    """The length field counts the segment's characters (UTF-8 bytes where CP carries
    Chinese); for an encrypted segment the standard's examples count the plaintext."""
    counts = {len(sent), len(sent.encode("utf-8"))}
    if declared in counts:
        return
    if sent != plain and declared in (len(plain), len(plain.encode("utf-8"))):
        notes.append("length field counts the plaintext segment")
        return
    raise PacketError(ErrorKind.LENGTH, f"length field says {declared:04d}, data segment is "
                      f"{len(sent.encode('utf-8'))} characters")


def _fields(segment: str, notes: list[str]) -> Packet:
    start = segment.index("CP=&&")
    header, cp = segment[:start], segment[start + 5:-2]
    values: dict[str, str] = {}
    extra: list[tuple[str, str]] = []
    for item in header.split(";"):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise PacketError(ErrorKind.FIELD, f"header item {item!r}: expected Name=value")
        if name in values or any(name == seen for seen, _ in extra):
            raise PacketError(ErrorKind.FIELD, f"field {name} appears twice")
        if name in HEADER_ORDER:
            values[name] = value
        else:
            extra.append((name, value))
    for required in ("ST", "CN", "PW", "MN"):
        if required not in values:
            raise PacketError(ErrorKind.FIELD, f"missing field {required}")
    qn = values.get("QN")
    if qn is None:
        notes.append("no QN (HJ/T 212-2005 style)")
    elif _QN_13.fullmatch(qn):
        notes.append("13-digit millisecond QN")
    elif not _QN_17.fullmatch(qn):
        raise PacketError(ErrorKind.FIELD,
                          f"QN={qn}: expected 17 digits YYYYMMDDhhmmsszzz (or 13-digit ms)")
    flag = None
    if "Flag" in values:
        if not values["Flag"].isdigit():
            raise PacketError(ErrorKind.FIELD, f"Flag={values['Flag']}: expected a number")
        flag = Flag.from_value(int(values["Flag"]))
    else:
        notes.append("no Flag (HJ/T 212-2005 style)")
    pnum = _count(values, "PNUM")
    pno = _count(values, "PNO")
    if (pnum is None) != (pno is None):
        raise PacketError(ErrorKind.FIELD, "PNUM and PNO must come together")
    if flag is not None and flag.version >= Version.HJ212_2017 and flag.split != (pnum is not None):
        raise PacketError(ErrorKind.FIELD, f"Flag={flag.value} "
                          + ("says split but PNUM/PNO missing" if flag.split
                             else "does not say split but PNUM/PNO present"))
    if pnum is not None and pno is not None and not 1 <= pno <= pnum:
        raise PacketError(ErrorKind.FIELD, f"PNO={pno}: expected 1 to PNUM={pnum}")
    rf = values.get("RF")
    if rf is not None and rf != "1":
        raise PacketError(ErrorKind.FIELD,
                          f"RF={rf}: the only value is 1 (absent when not re-sent)")
    return Packet(st=values["ST"], cn=values["CN"], pw=values["PW"], mn=values["MN"], cp=cp,
                  qn=qn, flag=flag, pnum=pnum, pno=pno, rf=rf == "1", extra=tuple(extra))


def _count(values: dict[str, str], name: str) -> int | None:
    if name not in values:
        return None
    if not values[name].isdigit():
        raise PacketError(ErrorKind.FIELD, f"{name}={values[name]}: expected a number")
    return int(values[name])


def segment_crc(packet: Packet) -> int:
    """The Appendix A CRC of a packet's plaintext segment."""
    return hj212_crc16(packet.segment().encode("utf-8"))
